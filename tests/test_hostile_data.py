"""Hostile input and faults at the data commands of the retrieval and video tasks (`hancross-import-trimodal`,
`hancross-build-trimodal`, `hancross-generate-video`, and the labels every video command reads): each refusal is
exit 2 and one line naming the problem, with no traceback, no code run, nothing read or written outside the
command's folders, and nothing written, half-written or deleted. Every case builds its own input; full disks and
read-only folders are small tmpfs mounts (skipped where mounting is not allowed)."""
import hashlib, json, os, pickle, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from scipy.io import wavfile
from hancross.data.video import build_video_dataset, load_clips

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def snapshot(*dirs):
    "Path -> sha256 of every file and '' for every folder under `dirs` (missing dirs count as empty)"
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else '' for d in dirs if Path(d).exists()
            for f in sorted(Path(d).rglob('*'))}

def run(args, **kw):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env={**ENV, **kw.pop('env', {})}, **kw)

def ok(args, **kw):
    r = run(args, **kw)
    assert r.returncode == 0, (args, r.stderr[-2000:])
    return r

def refused(args, contains, *watch, env=None):
    "Run a command that must refuse: exit 2, one line containing `contains`, no traceback, every `watch` folder unchanged"
    before = snapshot(*watch)
    r = run(args, env=env or {})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (args, r.returncode, r.stderr[-1500:])
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-1500:]
    assert contains in lines[0], lines[0]
    assert snapshot(*watch) == before, f"{args}: something under {watch} changed"
    return lines[0]

# --- fixtures: a CMAN-layout source, small disks -----------------------------------------------------------------
def seed_src(root:Path, sr:int=16000) -> Path:
    "A CMAN-layout source: images a, b (train) and c (test), two spoken captions (0.25 s of noise) each"
    rng = np.random.default_rng(0)
    for d in ('images', 'audio', 'metadata'): (root/d).mkdir(parents=True, exist_ok=True)
    for k, ims in [('train', ['a', 'b']), ('val', []), ('test', ['c'])]:
        recs = []
        for im in ims:
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root/'images'/f"{im}.png")
            for j in range(2):
                wavfile.write(root/'audio'/f"{im}_{j}.wav", sr, (rng.standard_normal(sr // 4) * 3000).astype(np.int16))
                recs.append(dict(id=f"{im}_{j}", caption=f"caption {j} of {im}", audio_filename=f"{im}_{j}.wav", image_filename=f"{im}.png"))
        (root/'metadata'/f"{k}_metadata.json").write_text(json.dumps(recs))
    return root

def edit(root:Path, split:str, f):
    p = root/'metadata'/f"{split}_metadata.json"; p.write_text(json.dumps(f(json.loads(p.read_text()))))

def set_row(root, n, **kw): edit(root, 'train', lambda d: [{**r, **kw} if i == n else r for i, r in enumerate(d)])

def imported(src, out, *flags):
    ok(['hancross-import-trimodal', '--src', src, '--out', out, '--image_size', 16, *flags])
    return out

@pytest.fixture
def disk(tmp_path):
    "disk(name, size, ro=False, fill=None) -> a fresh tmpfs of `size`, filled by `fill(path)` then made read-only if `ro`"
    mounted = []
    def mount(name, size='64m', ro=False, fill=None):
        p = tmp_path/name; p.mkdir()
        if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', f"size={size}", 'tmpfs', str(p)], capture_output=True).returncode:
            pytest.skip('mounting a small tmpfs needs root')
        mounted.append(p)
        if fill is not None: fill(p)
        if ro: subprocess.run(['mount', '-o', 'remount,ro', str(p)], check=True)
        return p
    yield mount
    for p in reversed(mounted): subprocess.run(['umount', '-l', str(p)], capture_output=True)

@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    "A tiny video dataset (24 clips)"
    return build_video_dataset(tmp_path_factory.mktemp('video')/'tiny', scale='tiny')

# --- 1. never run code from a file ---------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))

def test_pickled_labels_are_read_as_plain_data_and_never_run(clips, tmp_path):
    fi = tmp_path/'fi'; (fi/'train-1').mkdir(parents=True)
    shutil.copy(clips/'videos'/'clip_00000.mp4', fi/'train-1'/'Ab3.001.mp4')
    labels = {t: {'Ab3.001.mp4': np.float64(.5)} for t in ('openness', 'conscientiousness', 'extraversion', 'agreeableness', 'neuroticism')}
    marker = tmp_path/'pwned'
    for proto in (0, 2, 5):
        (fi/'annotation_training.pkl').write_bytes(pickle.dumps(labels, protocol=proto))             # the official format: read
        assert load_clips(fi, cache=tmp_path/'cache')['y'].tolist() == [[.5] * 5]
    (fi/'annotation_training.pkl').write_bytes(pickle.dumps({**labels, 'openness': _Payload(marker)}, protocol=2))
    probe = [sys.executable, '-c', 'import sys; from hancross.cli import quiet_warnings; quiet_warnings(); from hancross.core import cli_guard; '
             'from hancross.data.video import read_first_impressions; cli_guard(read_first_impressions)(sys.argv[1])', str(fi)]
    r = subprocess.run(probe, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-1500:]
    assert 'annotation_training.pkl: refused: it would build posix.system, not plain data' in r.stderr, r.stderr
    assert 'save its labels as annotation_training.json' in r.stderr
    refused(['hancross-train-video', '--data_dir', fi, '--epochs', 1], 'refused: it would build posix.system', fi)
    assert not marker.exists()

# --- 2. never read or write outside the dataset or the output ------------------------------------------------------
@pytest.mark.parametrize('key,name', [('image_filename', '../../../outside/secret.png'), ('audio_filename', '../../../outside/secret.wav'),
                                      ('image_filename', 'ABS/secret.png'), ('audio_filename', 'ABS/secret.wav')])
def test_import_refuses_file_names_that_leave_the_source(tmp_path, key, name):
    outside = tmp_path/'outside'; outside.mkdir()
    Image.new('RGB', (8, 8)).save(outside/'secret.png'); wavfile.write(outside/'secret.wav', 16000, np.zeros(4000, np.int16))
    src = seed_src(tmp_path/'src')                       # '../../../outside' from images/train/ is tmp_path/outside
    name = name.replace('ABS', str(outside))
    set_row(src, 0, **{key: name})
    refused(['hancross-import-trimodal', '--src', src, '--out', tmp_path/'out'], f"{name!r} is outside", src, outside)
    assert not (tmp_path/'out').exists()

def test_ids_never_become_paths(tmp_path):
    src = seed_src(tmp_path/'src')
    edit(src, 'train', lambda d: [{**r, 'id': i} for r, i in zip(d, ['../../../X', str(tmp_path/'abs'), 'a/b', 'a_b'])])
    out = imported(src, tmp_path/'work'/'out', '--keep_wav')
    assert sorted(p.name for p in (out/'audio').iterdir()) == sorted(['X.wav', f"{str(tmp_path/'abs').strip('/').replace('/', '_')}.wav",
                                                                      'a_b.wav', 'a_b-2.wav', 'c_0.wav', 'c_1.wav'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['src', 'work'] and sorted(p.name for p in (tmp_path/'work').iterdir()) == ['out']
    s = (out/'samples.csv').read_text()
    assert '../../../X' in s and 'a/b' in s                                   # the ids themselves are kept

# --- 3. never delete what the project did not write -----------------------------------------------------------------
def test_force_replaces_only_our_own_dataset(tmp_path):
    src = seed_src(tmp_path/'src')
    mine = tmp_path/'mine'; mine.mkdir(); (mine/'chapter1.tex').write_text('my work')
    for cmd in (['hancross-import-trimodal', '--src', src, '--out', mine, '--force'], ['hancross-build-trimodal', '--out', mine, '--n_items', 2, '--force']):
        refused(cmd, 'exists and is not a retrieval dataset; refusing to replace it', mine, src)
    out = imported(src, tmp_path/'out')
    (tmp_path/'out.tmp').mkdir(); (tmp_path/'out.tmp'/'notes.md').write_text('mine')    # a user's folder named like a temporary
    refused(['hancross-import-trimodal', '--src', src, '--out', out], 'already exists (pass --force to replace it)', out)
    imported(src, out, '--force')                                                      # ours: replaced
    assert (tmp_path/'out.tmp'/'notes.md').read_text() == 'mine' and not list(tmp_path.glob('.out.tmp-*'))
    (out/'notes.md').write_text('mine')
    refused(['hancross-import-trimodal', '--src', src, '--out', out, '--force'], 'holds files a retrieval dataset does not (notes.md)', out, src)

def test_force_never_touches_the_source_or_a_folder_around_it(tmp_path):
    src = seed_src(tmp_path/'parent'/'src')
    for out in (src, tmp_path/'parent', src/'ds'):
        refused(['hancross-import-trimodal', '--src', src, '--out', out, '--force'], 'overlap', tmp_path)

def test_an_output_that_is_a_symlink(tmp_path):
    src = seed_src(tmp_path/'src'); out = imported(src, tmp_path/'real')
    (tmp_path/'link').symlink_to(out)
    for cmd in (['hancross-import-trimodal', '--src', src, '--out', tmp_path/'link', '--force'], ['hancross-generate-video', '--scale', 'tiny', '--out', tmp_path/'link']):
        refused(cmd, 'link: is a symbolic link', tmp_path)

def test_a_killed_build_leaves_the_old_dataset_and_its_debris_goes_on_the_next_run(tmp_path):
    out = tmp_path/'v'
    ok(['hancross-generate-video', '--scale', 'tiny', '--out', out])
    before = snapshot(out)
    p = subprocess.Popen([str(BIN/'hancross-generate-video'), '--scale', 'tiny', '--seed', '1', '--out', str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while not list(tmp_path.glob('.v.tmp-*/new/videos/*.mp4')) and p.poll() is None and time.time() - t0 < 120: time.sleep(.005)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, 'the build ended before it could be killed'
    assert list(tmp_path.glob('.v.tmp-*')) and snapshot(out) == before    # debris, and the old dataset as it was
    ok(['hancross-generate-video', '--scale', 'tiny', '--seed', '1', '--out', out])
    assert not list(tmp_path.glob('.v.tmp-*')) and snapshot(out) != before

# --- 4. full disks and read-only folders -----------------------------------------------------------------------------
def test_read_only_output_folders(tmp_path, disk):
    src = seed_src(tmp_path/'src')
    ro = disk('ro', ro=True)
    for cmd in (['hancross-import-trimodal', '--src', src, '--out', ro/'x'], ['hancross-build-trimodal', '--out', ro/'x', '--n_items', 2],
                ['hancross-generate-video', '--scale', 'tiny', '--out', ro/'x']):
        refused(cmd, 'read-only folder; cannot write', src, ro)

def test_a_full_disk_leaves_no_half_built_dataset_and_keeps_the_old_one(tmp_path, disk):
    src = seed_src(tmp_path/'src')
    full = disk('full', size='96k')
    refused(['hancross-import-trimodal', '--src', src, '--out', full/'x'], 'x: cannot write the dataset here (No space left on device)', src, full)
    refused(['hancross-generate-video', '--scale', 'tiny', '--out', full/'v'], 'v: cannot write the dataset here', full)
    assert not list(full.iterdir())
    size = sum(f.stat().st_size for f in build_video_dataset(tmp_path/'ref', scale='tiny').rglob('*') if f.is_file())
    one = disk('one', size=f"{int(size * 1.6) // 1024}k")                     # room for one dataset, not for two
    ok(['hancross-generate-video', '--scale', 'tiny', '--out', one/'v'])
    refused(['hancross-generate-video', '--scale', 'tiny', '--seed', '1', '--out', one/'v'], 'v: cannot write the dataset here', one)

def test_a_read_only_video_dataset_can_be_read(tmp_path, disk, clips):
    ro = disk('ro', fill=lambda p: shutil.copytree(clips, p/'v'), ro=True)
    before = snapshot(ro)
    old = os.environ.get('HANCROSS_CACHE'); os.environ['HANCROSS_CACHE'] = str(tmp_path/'cache')
    try: arr = load_clips(ro/'v')
    finally:
        if old is None: del os.environ['HANCROSS_CACHE']
        else: os.environ['HANCROSS_CACHE'] = old
    assert arr['frames'].shape[0] == 24 and len(list((tmp_path/'cache'/'flow').glob('*.npz'))) == 24 and snapshot(ro) == before

# --- 5. correct decoding; crashes become refusals ----------------------------------------------------------------
def test_decoding_8_bit_waves_16_bit_greys_and_names_that_share_a_stem(tmp_path):
    src = seed_src(tmp_path/'src')
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    wavfile.write(src/'audio'/'a_0.wav', 16000, np.round(128 + 100 * tone).astype(np.uint8))            # 8-bit: unsigned around 128
    wavfile.write(src/'audio'/'a_1.wav', 16000, np.round(100 / 128 * 32767 * tone).astype(np.int16))   # the same wave in 16 bits
    Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 160).save(src/'images'/'g.png')  # 16-bit grey
    (src/'images'/'x').mkdir(); (src/'images'/'y').mkdir()
    shutil.copy(src/'images'/'a.png', src/'images'/'a.jpg')
    for d, c in (('x', (255, 0, 0)), ('y', (0, 0, 255))): Image.new('RGB', (20, 20), c).save(src/'images'/d/'s.png')
    edit(src, 'train', lambda d: d + [{**d[0], 'id': f"n{i}", 'image_filename': f} for i, f in enumerate(['g.png', 'a.jpg', 'x/s.png', 'y/s.png'])])
    out = imported(src, tmp_path/'out')
    meta = json.loads((out/'metadata.json').read_text())
    assert meta['n_items'] == 7, meta['n_items']                               # a.png, a.jpg, x/s.png, y/s.png stay four items
    mel = np.load(out/'features'/'logmel.npy').astype(np.float32)
    assert abs(mel[0].max() - mel[1].max()) < .1, (mel[0].max(), mel[1].max())  # not x129 (+9.7 in log power)
    s = pd.read_csv(out/'samples.csv').set_index('sample_id')
    g = np.asarray(Image.open(out/'visual'/s.loc['n0', 'image']))
    assert g.min() < 10 and 100 < g.mean() < 160, g.mean()                   # tones kept, not white
    assert s.loc['n2', 'item_id'] != s.loc['n3', 'item_id'] and s.loc['n2', 'image'] != s.loc['n3', 'image']

def _rate0(src):
    b = bytearray((src/'audio'/'a_1.wav').read_bytes()); b[24:32] = bytes(8); (src/'audio'/'a_1.wav').write_bytes(bytes(b))

@pytest.mark.parametrize('spoil,msg', [(_rate0, 'a_1.wav: its header says 0 samples per second'),
                                       (lambda s: set_row(s, 1, caption='caf\ud800'), 'row 1: caption is not valid text (a lone surrogate'),
                                       (lambda s: set_row(s, 1, id=''), 'row 1: empty id')])
def test_import_refuses_broken_rows_in_one_line(tmp_path, spoil, msg):
    src = seed_src(tmp_path/'src'); spoil(src)
    refused(['hancross-import-trimodal', '--src', src, '--out', tmp_path/'out'], msg, src, tmp_path)
    assert not (tmp_path/'out').exists()

@pytest.mark.parametrize('cmd,msg', [(['hancross-build-trimodal', '--n_items', 2, '--captions_per_item', 0], 'captions_per_item must be at least 1'),
                                     (['hancross-build-trimodal', '--n_items', 2, '--seed', -1], 'seed must be a non-negative integer'),
                                     (['hancross-generate-video', '--scale', 'tiny', '--seed', -1], 'seed must be a non-negative integer'),
                                     (['hancross-import-trimodal', '--src', 'SRC', '--image_size', 0], 'image_size must be 1..4096')])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, cmd, msg):
    src = seed_src(tmp_path/'src')
    refused([str(src) if c == 'SRC' else c for c in cmd] + ['--out', tmp_path/'out'], msg, tmp_path)

def test_generate_video_names_stay_plain(tmp_path):
    refused(['hancross-generate-video', '--scale', 'tiny', '--name', '../../../escape'], 'is not a plain folder name', tmp_path,
            env={'HANCROSS_DATA': str(tmp_path/'data')})
