"""Hostile input at the command lines: each case gets exit 2, one line naming the problem, no traceback, and leaves the
inputs and the output places exactly as they were. Every case builds its own input."""
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from hancross.testing import tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def snapshot(*dirs):
    "Path -> sha256 of every file under `dirs` (missing dirs count as empty)"
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for d in dirs if Path(d).exists() for f in sorted(Path(d).rglob('*')) if f.is_file()}

def refused(args, contains, *watch, cwd=None):
    "Run a command that must refuse its input: exit 2, one line containing `contains`, `watch` folders unchanged"
    before = snapshot(*watch)
    r = subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=ENV, cwd=cwd)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (args, r.returncode, r.stderr[-1500:])
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-1500:]
    assert contains in lines[0], lines[0]
    assert snapshot(*watch) == before, f"{args}: something under {watch} changed"
    return lines[0]

@pytest.fixture(scope='module')
def data(tmp_path_factory): return tiny_dataset(tmp_path_factory.mktemp('hostile')/'tiny', n_sales=160)

@pytest.mark.parametrize('flags,msg', [(['--bs', '0'], 'batch_size must be at least 1'),
                                       (['--lr', '-0.001'], 'learning_rate must be a finite positive number'),
                                       (['--lr', 'nan'], 'learning_rate must be a finite positive number'),
                                       (['--epochs', '0'], '--epochs must be at least 1')])
def test_train_refuses_bad_hyperparameters(data, tmp_path, flags, msg):
    refused(['hancross-train', '--config', ROOT/'configs'/'hancross_cpu.yaml', '--data_dir', data, '--experiment_name', 'x',
             '--out', tmp_path/'exp', *flags], msg, data, tmp_path)
    assert not (tmp_path/'exp').exists()                       # nothing left that a corrected rerun would refuse

@pytest.mark.parametrize('yaml,msg', [("training:\n  batch_size: 0\n", 'training.batch_size must be at least 1'),
                                      ("model:\n  name: hancross\n  attention: {num_heads: 0}\n", 'num_heads and head_dim must be at least 1')])
def test_train_refuses_bad_config_values(data, tmp_path, yaml, msg):
    (tmp_path/'c.yaml').write_text(yaml)
    refused(['hancross-train', '--config', tmp_path/'c.yaml', '--data_dir', data, '--out', tmp_path/'exp'], msg, data)
    assert not (tmp_path/'exp').exists()

def test_zero_sample_dataset_is_invalid(data, tmp_path):
    d = tmp_path/'zero'; shutil.copytree(data, d)
    (d/'samples.csv').write_text((d/'samples.csv').read_text().splitlines()[0] + '\n')
    refused(['hancross-validate', '--data_dir', d], 'no samples', d)

class _Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))

def test_a_checkpoint_that_runs_code_is_refused_and_never_runs(data, tmp_path):
    ck = tmp_path/'evil.pth'
    torch.save({'format': 'hancross-checkpoint/1', 'model_name': 'hancross', 'x': _Payload(tmp_path/'pwned')}, ck)
    for cmd in (['hancross-infer', '--checkpoint', ck, '--data_dir', data],
                ['hancross-evaluate', '--checkpoint', ck, '--data_dir', data, '--out', tmp_path/'out'],
                ['hancross-export', '--checkpoint', ck, '--out', tmp_path/'m.onnx']):
        refused(cmd, 'refused: it holds objects that need code to load', data)
        assert not (tmp_path/'pwned').exists(), cmd
    assert not (tmp_path/'out').exists() and not (tmp_path/'m.onnx').exists()

def test_a_folder_that_is_not_a_dataset(data, tmp_path):
    d = tmp_path/'notds'; shutil.copytree(data, d)
    m = json.loads((d/'metadata.json').read_text()); del m['window']; (d/'metadata.json').write_text(json.dumps(m))
    refused(['hancross-train', '--config', ROOT/'configs'/'hancross_cpu.yaml', '--data_dir', d, '--out', tmp_path/'exp'],
            'missing window', d)

# --- importers: real-world histories that used to import as garbage with exit 0 ----------------------------------
import numpy as np, pandas as pd
from PIL import Image
from hancross.testing import tiny_collection

def raw_collection(tmp_path, edit=None, name='raw'):
    "A tiny raw collection (HiViFAN layout), its transactions.csv changed by `edit(df) -> df`"
    src = tiny_collection(tmp_path/name/'tiny_apes')
    if edit is not None:
        df = pd.read_csv(src/'transactions.csv', dtype=str); edit(df).to_csv(src/'transactions.csv', index=False)
    return src

def _set(col, i, v):
    def e(df): df.loc[i, col] = v; return df
    return e

@pytest.mark.parametrize('edit,msg', [
    (_set('timestamp', 3, '24/03/2021 10:00'), "date '24/03/2021 10:00' is written unlike row 1"),          # day-first among ISO
    (lambda df: df.assign(timestamp=[str(int(pd.Timestamp(t).timestamp()) * (1000 if i == 5 else 1)) for i, t in enumerate(df.timestamp)]),
     'is in ms, row 1'),                                                                                       # seconds mixed with ms
    (lambda df: df.assign(timestamp=[str(i * 3600) for i in range(len(df))]), 'before Ethereum'),             # 1970
    (lambda df: df.assign(price_eth=[str(int(float(p) * 1e18)) for p in df.price_eth]), 'if the column holds wei, name it price_wei'),
])
def test_importer_refuses_garbage_times_and_prices(tmp_path, edit, msg):
    src = raw_collection(tmp_path, edit)
    refused(['hancross-import-collection', '--src', src, '--out', tmp_path/'out', '--window', '24'], msg, src)
    assert not (tmp_path/'out').exists()

def test_importer_drops_repeated_rows_and_states_which_events_are_sales(tmp_path):
    def edit(df):
        df = pd.concat([df, df]).reset_index(drop=True)                                     # every row twice
        df['event_type'] = ['Sold'] * (len(df) - 30) + ['Sale Cancelled'] * 10 + ['Offered for sale'] * 10 + ['Bid'] * 10
        return df
    src = raw_collection(tmp_path, edit)
    n = len(pd.read_csv(src/'transactions.csv'))
    r = subprocess.run([str(BIN/'hancross-import-collection'), '--src', str(src), '--out', str(tmp_path/'out'), '--window', '24'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    prov = json.loads((tmp_path/'out'/'metadata.json').read_text())['provenance']['collections']['tiny_apes']
    assert prov['sales'] <= (n - 30) // 2 + 15 and prov['duplicate_tx'] >= (n - 30) // 2 - 15, prov   # the copies went, the cancels were never sales
    assert 'repeated transactions' in line and 'Sold: ' in line and 'ignored: ' in line and 'Sale Cancelled 10' in line, line

def test_importer_keeps_16_bit_greys(tmp_path):
    src = raw_collection(tmp_path)
    g = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(g).save(src/'images'/'0002.png')
    r = subprocess.run([str(BIN/'hancross-import-collection'), '--src', str(src), '--out', str(tmp_path/'out'), '--window', '24'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    im = np.asarray(Image.open(tmp_path/'out'/'visual'/'tiny_apes'/'2.png'))
    assert im[..., 0].min() == 0 and 100 < im[..., 0].mean() < 160, im[..., 0]               # tones kept, not turned white

def test_infer_refuses_daily_bars(data, tmp_path):
    ck = tmp_path/'exp'
    r = subprocess.run([str(BIN/'hancross-train'), '--config', str(ROOT/'configs'/'hancross_cpu.yaml'), '--data_dir', str(data),
                        '--out', str(ck), '--experiment_name', 'h', '--epochs', '1'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    bars = pd.read_csv(data/'temporal'/'alpha.csv').tail(60).copy()
    bars['time'] = pd.date_range('2021-01-01', periods=len(bars), freq='D', tz='UTC').strftime('%Y-%m-%dT%H:%M:%SZ')
    bars.to_csv(tmp_path/'daily.csv', index=False)
    img = next((data/'visual').rglob('*.png'))
    refused(['hancross-infer', '--checkpoint', ck/'h'/'best_model.pth', '--visual_input', img, '--temporal_input', tmp_path/'daily.csv'],
            'the model reads consecutive hourly bars', data)

def test_importer_never_empties_a_folder_that_only_looks_like_a_dataset(tmp_path):
    src = raw_collection(tmp_path)
    mine = tmp_path/'mine'; mine.mkdir()
    for f in ('metadata.json', 'samples.csv', 'chapter1.tex'): (mine/f).write_text('my work')
    refused(['hancross-import-collection', '--src', src, '--out', mine, '--window', '24'], 'holds files a dataset does not (chapter1.tex)', mine, src)

def test_importer_refuses_to_replace_its_own_input(tmp_path):
    src = raw_collection(tmp_path)
    out = tmp_path/'out'
    r = subprocess.run([str(BIN/'hancross-import-collection'), '--src', str(src), '--out', str(out), '--window', '24'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    inside = out/'raw'; shutil.copytree(src, inside)          # the raw files kept inside the dataset folder
    refused(['hancross-import-collection', '--src', inside, '--out', out, '--window', '24'], 'overlap', out)
    refused(['hancross-import-collection', '--src', src, '--out', src/'ds', '--window', '24'], 'overlap', src)

@pytest.mark.parametrize('spoil,msg', [(lambda f: (f.unlink(), f.mkdir()), 'not a readable image'),
                                       (lambda f: f.write_bytes(b'xx'), 'not a readable image')])
def test_importer_names_an_unreadable_first_image(tmp_path, spoil, msg):
    src = raw_collection(tmp_path)
    spoil(src/'images'/'0.png')
    refused(['hancross-import-collection', '--src', src, '--out', tmp_path/'out', '--window', '24'], msg, src)
    assert not (tmp_path/'out').exists()

def test_output_paths_that_cannot_be_used(data, tmp_path):
    r = subprocess.run([str(BIN/'hancross-train'), '--config', str(ROOT/'configs'/'hancross_cpu.yaml'), '--data_dir', str(data),
                        '--out', str(tmp_path/'exp'), '--experiment_name', 'h', '--epochs', '1'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = tmp_path/'exp'/'h'/'best_model.pth'
    (tmp_path/'afile').write_text('x'); (tmp_path/'dir.onnx').mkdir()
    for args, msg in [(['hancross-evaluate', '--checkpoint', ck, '--data_dir', data, '--out', tmp_path/'afile'/'sub'], 'not a folder'),
                      (['hancross-export', '--checkpoint', ck, '--out', tmp_path/'dir.onnx'], 'is a folder where a file is needed'),
                      (['hancross-export', '--checkpoint', ck, '--out', tmp_path/'afile'/'m.onnx'], 'afile'),
                      (['hancross-train', '--config', ROOT/'configs'/'hancross_cpu.yaml', '--data_dir', data, '--out', tmp_path/'afile',
                        '--experiment_name', 'h', '--epochs', '1'], 'not a folder'),
                      (['hancross-generate', '--name', 'x', '--out', tmp_path/'afile'/'x', '--scale', 'tiny'], 'afile')]:
        refused(args, msg, data, tmp_path/'exp')
    assert (tmp_path/'afile').read_text() == 'x' and not any((tmp_path/'dir.onnx').iterdir())
