"""The importers against the real published layouts, as they unpack: a Flickr8k Audio copy (Harwath & Glass 2015, with
the Flickr8k text and image releases) imports with one `hancross-import-trimodal` and trains CMAN with one `hancross-train`;
a ChaLearn First Impressions V2 folder (nested clip folders, Python 2 annotation pickles) trains the video model with one
`hancross-train`. A broken layout is exit 2 and one line naming the file, with nothing written. The fixtures are tiny
copies of those layouts built here: spoken captions by eSpeak NG, images and clips from numpy."""
import json, os, pickle, shutil, struct, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from scipy.io import wavfile
from hancross.data.trimodal import read_retrieval, speak, trimodal_layout
from hancross.data.video import TRAITS, read_first_impressions, write_mp4

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
CMAN_CFG, VIDEO_CFG = ROOT/'configs'/'cman_cpu.yaml', ROOT/'configs'/'video_cpu.yaml'

def run(args, tmp, **kw):
    "A console script with the flow cache kept in `tmp`"
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OMP_WAIT_POLICY': 'PASSIVE', 'HANCROSS_CACHE': str(Path(tmp)/'cache')}
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=env, **kw)

def ok(args, tmp):
    r = run(args, tmp); assert r.returncode == 0, (args, r.stderr[-3000:]); return r

def refused(args, tmp, contains) -> str:
    "Exit 2, one line on stderr naming the problem, no traceback"
    r = run(args, tmp); lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (args, r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert contains in lines[0], lines[0]
    return lines[0]

def train_cmd(cfg, data, out, bs):
    return ['hancross-train', '--config', cfg, '--data_dir', data, '--experiment_name', 'run', '--out', out,
            '--epochs', 1, '--bs', bs, '--quiet']

# --- Flickr8k Audio as published ------------------------------------------------------------------------------------
SPLIT_IMAGES = {'trainImages': ['1000268201_693b08cb0e', '1001773457_577c3a7d70', '1002674143_1b742ab4b8', '1003163366_44323f5815'],
                'devImages': ['2090545563_a4e66ec76b', '2090386465_b6ebb7df2c'],
                'testImages': ['3385593926_d3e9c21170', '2677656448_6b7e7702af']}
OBJECTS = ['a dog', 'a child', 'two people', 'a red car', 'a bird', 'a boat', 'a man', 'a horse']

def flickr8k_audio(root:Path) -> Path:
    "A tiny Flickr8k Audio copy laid out as the four archives unpack: 8 images in the three published split lists, 5 spoken captions each"
    rng = np.random.default_rng(0)
    audio, images = root/'flickr_audio', root/'Flicker8k_Dataset'                      # the image release's own (misspelt) folder
    for d in (audio/'wavs', images, root/'__MACOSX'/'Flicker8k_Dataset'): d.mkdir(parents=True, exist_ok=True)
    stems = [s for v in SPLIT_IMAGES.values() for s in v] + ['2258277193_586949ec62']     # the last one: in no split list
    tokens, jobs = [], []
    for i, s in enumerate(stems):
        Image.fromarray(rng.integers(0, 255, (int(rng.integers(30, 50)), int(rng.integers(30, 50)), 3), dtype=np.uint8)).save(images/f"{s}.jpg")
        (root/'__MACOSX'/'Flicker8k_Dataset'/f"._{s}.jpg").write_bytes(b'\x00\x05\x16\x07')  # the zip's resource forks
        for k in range(5):
            tokens.append(f"{s}.jpg#{k}\t{OBJECTS[i % len(OBJECTS)].capitalize()} in picture {i} , caption {k} .")
            if s in SPLIT_IMAGES['trainImages'] + SPLIT_IMAGES['devImages'] + SPLIT_IMAGES['testImages']:
                jobs.append((f"{s}_{k}.wav", f"{s}.jpg", k, f"{OBJECTS[i % len(OBJECTS)]} in picture {i}"))
    tokens.insert(20, '2258277193_586949ec62.jpg.1#0\tThe stray entry the real token file has .')
    waves = speak([(text, 'en-us', 190, 50) for *_, text in jobs])
    for (wav, *_), w in zip(jobs, waves): wavfile.write(audio/'wavs'/wav, 16000, np.clip(np.rint(w * 32767), -32768, 32767).astype(np.int16))
    order = rng.permutation(len(jobs))                                                    # wav2capt.txt is in no particular order
    (audio/'wav2capt.txt').write_text(''.join(f"{jobs[j][0]} {jobs[j][1]} #{jobs[j][2]}\n" for j in order))
    (audio/'wav2spk.txt').write_text(''.join(f"{j[0]} {n % 7 + 1}\n" for n, j in enumerate(jobs)))
    (audio/'readme.txt').write_text('Flickr 8k Audio Caption Corpus\n')
    (root/'Flickr8k.token.txt').write_text('\n'.join(tokens) + '\n')
    (root/'Flickr8k.lemma.token.txt').write_text('\n'.join(tokens) + '\n')
    for name, ims in SPLIT_IMAGES.items(): (root/f"Flickr_8k.{name}.txt").write_text(''.join(f"{s}.jpg\n" for s in ims))
    return root

@pytest.fixture(scope='module')
def flickr(tmp_path_factory):
    return flickr8k_audio(tmp_path_factory.mktemp('f')/'Flickr8k')

def test_flickr8k_audio_imports_and_trains_with_one_command_each(flickr, tmp_path):
    assert trimodal_layout(flickr) == 'flickr8k_audio'
    out = tmp_path/'flickr8k_audio'
    ok(['hancross-import-trimodal', '--src', flickr, '--out', out, '--image_size', 64], tmp_path)
    ds = read_retrieval(out)                                                              # the retrieval reader's checks
    assert ds.meta['layout'] == 'flickr8k_audio' and ds.meta['n_samples'] == 40 and ds.meta['n_items'] == 8
    items = {k: list(dict.fromkeys(ds.samples.item_id.iloc[v])) for k, v in ds.splits.items()}
    assert items == {'train': SPLIT_IMAGES['trainImages'], 'val': SPLIT_IMAGES['devImages'], 'test': SPLIT_IMAGES['testImages']}
    row = ds.samples.set_index('sample_id').loc['1001773457_577c3a7d70_3']
    assert row.item_id == '1001773457_577c3a7d70' and row.caption == 'A child in picture 1 , caption 3 .'
    assert ds.meta['audio_features'] == ['logmel', 'whisper_tiny_en'] and (ds.audio('whisper_tiny_en')[1] > 5).all()
    assert ds.images['1000268201_693b08cb0e'].shape == (64, 64, 3)
    ok(train_cmd(CMAN_CFG, out, tmp_path/'exp', 8), tmp_path)
    m = json.loads((tmp_path/'exp'/'run'/'metrics.json').read_text())
    assert m['model'] == 'cman' and m['epochs'] == 1 and m['test']

def test_flickr8k_accepts_the_corrected_folder_name_and_text_in_a_folder(flickr, tmp_path):
    src = tmp_path/'copy'; shutil.copytree(flickr, src)
    (src/'Flicker8k_Dataset').rename(src/'Flickr8k_Dataset'); (src/'Flickr8k_text').mkdir()
    for f in src.glob('Flickr*.txt'): f.rename(src/'Flickr8k_text'/f.name)
    ok(['hancross-import-trimodal', '--src', src, '--out', tmp_path/'out', '--image_size', 16, '--layout', 'flickr8k_audio'], tmp_path)
    assert read_retrieval(tmp_path/'out').meta['n_samples'] == 40

def _drop_line(f:Path, has:str):
    f.write_text(''.join(l for l in f.read_text().splitlines(True) if has not in l))

@pytest.mark.parametrize('spoil,names', [
    (lambda s: (s/'Flickr8k.token.txt').unlink(), "Flickr8k.token.txt: missing"),
    (lambda s: (s/'flickr_audio'/'wavs'/'2090545563_a4e66ec76b_2.wav').unlink(), "wav2capt.txt line {n}: '2090545563_a4e66ec76b_2.wav' not found in"),
    (lambda s: (s/'Flickr_8k.testImages.txt').unlink(), "Flickr_8k.testImages.txt: missing"),
    (lambda s: (s/'Flicker8k_Dataset'/'3385593926_d3e9c21170.jpg').unlink(), "Flickr_8k.testImages.txt line 1: image '3385593926_d3e9c21170.jpg' not found in"),
    (lambda s: _drop_line(s/'Flickr8k.token.txt', '1003163366_44323f5815.jpg#4'), "wav2capt.txt line {m}: 1003163366_44323f5815.jpg#4 has no caption in"),
    (lambda s: (s/'flickr_audio'/'wavs'/'1000268201_693b08cb0e_0.wav').write_bytes(b'RIFF0000WAVE'), "1000268201_693b08cb0e_0.wav: not a readable WAV file")])
def test_a_broken_flickr8k_copy_is_one_line_naming_the_file(flickr, tmp_path, spoil, names):
    src = tmp_path/'copy'; shutil.copytree(flickr, src); spoil(src)
    lines = (src/'flickr_audio'/'wav2capt.txt').read_text().splitlines()
    n = next(i for i, l in enumerate(lines, 1) if l.startswith('2090545563_a4e66ec76b_2.wav'))
    m = next(i for i, l in enumerate(lines, 1) if l.startswith('1003163366_44323f5815_4.wav'))
    refused(['hancross-import-trimodal', '--src', src, '--out', tmp_path/'out'], tmp_path, names.format(n=n, m=m))
    assert not (tmp_path/'out').exists() and not [p for p in tmp_path.iterdir() if p.name.startswith('.out')]

# --- ChaLearn First Impressions V2 as published ---------------------------------------------------------------------
def py2_pickle(d:dict, protocol:int, numpy_scalars:bool) -> bytes:
    "`{trait: {video: score}}` pickled as Python 2's pickle/cPickle writes it: byte-string keys, numpy.float64 (or float) scores"
    if protocol == 0:
        s = lambda t: "S'" + ''.join(chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else f"\\x{b:02x}" for b in t.encode('latin1')) + "'\n"
        def num(x):
            if not numpy_scalars: return f"F{x!r}\n"
            return ("cnumpy.core.multiarray\nscalar\n(cnumpy\ndtype\n(" + s('f8') + "I0\nI1\ntR(I3\n" + s('<') + "NNNI-1\nI-1\nI0\ntb"
                    + s(struct.pack('<d', x).decode('latin1')) + "tR")
        out = '(d' + ''.join(s(t) + '(d' + ''.join(s(v) + num(x) + 's' for v, x in vs.items()) + 's' for t, vs in d.items()) + '.'
        return out.encode('latin1')
    u = lambda b: b'U' + bytes([len(b)]) + b
    def num(x):
        if not numpy_scalars: return b'G' + struct.pack('>d', x)
        return (b'cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\n' + u(b'f8') + b'K\x00K\x01\x87R(K\x03' + u(b'<')
                + b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb' + u(struct.pack('<d', x)) + b'\x86R')
    body = b''.join(u(t.encode()) + b'}(' + b''.join(u(v.encode()) + num(x) for v, x in vs.items()) + b'u' for t, vs in d.items())
    return b'\x80\x02}(' + body + b'u.'

FI_TRAITS = ('extraversion', 'neuroticism', 'agreeableness', 'conscientiousness', 'interview', 'openness')   # the pickles' key order
FI_CLIPS = {'train': [('train-1/training80_01', 'J4GQm9j0JZ0.003'), ('train-1/training80_01', 'zEyRyTnIw5I.005'),
                      ('train-1/training80_01', '-6otZ7M-Mro.002'), ('train-1/training80_02', 'nEm44UpCKmA.002'),
                      ('train-2/training80_09', 'eHcRre5XHR0.000'), ('train-2/training80_09', '_plk5k7PBEg.003'),
                      ('train-2/training80_10', 'V0TQCMk8-SA.001'), ('train-2/training80_10', 'qNE5Ad9KPkk.004')],
            'val': [('val-1/validation80_01', 'cLaZxEf1nE4.002'), ('val-1/validation80_01', 'm7ujRr8ZYJ8.000'),
                    ('val-2/validation80_05', 'SqpTiDxv6Xw.003')],
            'test': [('test-1/test80_01', 'RVs8HVkgQnw.001'), ('test-1/test80_01', 'L1uERpVq2Ps.005'), ('test-2/test80_10', '9QVp9MHq8zA.004')]}
PKL = {'train': 'annotation_training.pkl', 'val': 'annotation_validation.pkl', 'test': 'annotation_test.pkl'}

def first_impressions(root:Path) -> Path:
    "A tiny First Impressions V2 folder as it unpacks: clips in nested split folders, Python 2 annotation pickles (one in its own folder)"
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:48, :64]
    for n, (split, clips) in enumerate(FI_CLIPS.items()):
        scores = {t: {} for t in FI_TRAITS}
        for folder, vid in clips:
            (root/folder).mkdir(parents=True, exist_ok=True)
            speed, bg = rng.uniform(0.5, 3), rng.integers(0, 255, (48, 64, 3)).astype(np.float32)
            frames = [np.where(((xx - 20 - speed * f) ** 2 + (yy - 24) ** 2 < 80)[..., None], 230, bg * .5).astype(np.uint8) for f in range(10)]
            write_mp4(root/folder/f"{vid}.mp4", np.stack(frames), fps=8)
            for t in FI_TRAITS: scores[t][f"{vid}.mp4"] = float(np.round(rng.uniform(.2, .8), 6))
        (root/folder).with_suffix('.zip').write_bytes(b'PK\x05\x06' + bytes(18))          # the inner archive, kept after unzipping
        f = root/'train-annotation'/PKL[split] if split == 'train' else root/PKL[split]
        f.parent.mkdir(exist_ok=True); f.write_bytes(py2_pickle(scores, protocol=(2, 0, 2)[n], numpy_scalars=split != 'test'))
    return root

@pytest.fixture(scope='module')
def fi(tmp_path_factory):
    return first_impressions(tmp_path_factory.mktemp('v')/'ChaLearn2016')

def test_python2_pickles_read_as_they_load_in_python2(fi):
    for split, name in PKL.items():
        f = next(fi.rglob(name))
        d = pickle.loads(f.read_bytes(), encoding='latin1') if split == 'test' else None     # plain floats: safe to load directly
        if d is not None: assert set(d) == set(FI_TRAITS) and all(isinstance(x, float) for x in d['openness'].values())
    df = read_first_impressions(fi)
    assert df.groupby('split').size().to_dict() == {'train': 8, 'val': 3, 'test': 3}
    assert sorted(df.video_id) == sorted(v for c in FI_CLIPS.values() for _, v in c)
    assert list(df.columns) == ['video_id', 'path', 'split', *TRAITS]                     # interview is not a target
    assert df[list(TRAITS)].to_numpy().min() >= .2 and df[list(TRAITS)].to_numpy().max() <= .8

def test_first_impressions_trains_with_one_command(fi, tmp_path):
    r = ok(train_cmd(VIDEO_CFG, fi, tmp_path/'exp', 4), tmp_path)
    m = json.loads((tmp_path/'exp'/'run'/'metrics.json').read_text())
    assert m['model'] == 'video' and m['epochs'] == 1 and 0 < m['test']['accuracy'] <= 1
    assert json.loads(r.stdout.strip().splitlines()[-1])['test'] == m['test']
    assert set(pd.read_csv(tmp_path/'exp'/'run'/'metrics.csv', index_col=0).index) == {*TRAITS, 'mean'}

def _rewrite(fi, split, f):
    p = next(fi.rglob(PKL[split])); d = pickle.loads(p.read_bytes(), encoding='latin1') if split == 'test' else None
    if d is None:                                                                         # rebuild from our reader's view
        df = read_first_impressions(fi); df = df[df.split == split]
        d = {t: {f"{v}.mp4": float(x) for v, x in zip(df.video_id, df[t] if t in TRAITS else [.5] * len(df))} for t in FI_TRAITS}
    p.write_bytes(py2_pickle(f(d), protocol=2, numpy_scalars=True))
    return p

@pytest.mark.parametrize('spoil,says', [
    (lambda fi: _rewrite(fi, 'train', lambda d: {t: v for t, v in d.items() if t != 'neuroticism'}),
     "train-annotation/annotation_training.pkl: no 'neuroticism' scores"),
    (lambda fi: os.remove(next(fi.rglob('SqpTiDxv6Xw.003.mp4'))),
     "annotation_validation.pkl: video 'SqpTiDxv6Xw.003.mp4' not found under"),
    (lambda fi: _rewrite(fi, 'test', lambda d: {**d, 'openness': {**d['openness'], 'RVs8HVkgQnw.001.mp4': 1.7}}),
     "annotation_test.pkl: video 'RVs8HVkgQnw.001.mp4' has openness score 1.7")])
def test_a_broken_first_impressions_folder_is_one_line_naming_the_file(fi, tmp_path, spoil, says):
    src = tmp_path/'copy'; shutil.copytree(fi, src); spoil(src)
    refused(train_cmd(VIDEO_CFG, src, tmp_path/'exp', 4), tmp_path, says)
    assert not (tmp_path/'exp').exists()
