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
             '--out_dir', tmp_path/'exp', *flags], msg, data, tmp_path)
    assert not (tmp_path/'exp').exists()                       # nothing left that a corrected rerun would refuse

@pytest.mark.parametrize('yaml,msg', [("training:\n  batch_size: 0\n", 'training.batch_size must be at least 1'),
                                      ("model:\n  name: hancross\n  attention: {num_heads: 0}\n", 'num_heads and head_dim must be at least 1')])
def test_train_refuses_bad_config_values(data, tmp_path, yaml, msg):
    (tmp_path/'c.yaml').write_text(yaml)
    refused(['hancross-train', '--config', tmp_path/'c.yaml', '--data_dir', data, '--out_dir', tmp_path/'exp'], msg, data)
    assert not (tmp_path/'exp').exists()

def test_zero_sample_dataset_is_invalid(data, tmp_path):
    d = tmp_path/'zero'; shutil.copytree(data, d)
    (d/'samples.csv').write_text((d/'samples.csv').read_text().splitlines()[0] + '\n')
    refused(['hancross-validate', d], 'no samples', d)

class _Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))

def test_a_checkpoint_that_runs_code_is_refused_and_never_runs(data, tmp_path):
    ck = tmp_path/'evil.pth'
    torch.save({'format': 'hancross-checkpoint/1', 'model_name': 'hancross', 'x': _Payload(tmp_path/'pwned')}, ck)
    for cmd in (['hancross-infer', '--model_path', ck, '--data_dir', data],
                ['hancross-evaluate', '--model_path', ck, '--data_dir', data, '--output_dir', tmp_path/'out'],
                ['hancross-export', '--model_path', ck, '--output_path', tmp_path/'m.onnx']):
        refused(cmd, 'refused: it holds objects that need code to load', data)
        assert not (tmp_path/'pwned').exists(), cmd
    assert not (tmp_path/'out').exists() and not (tmp_path/'m.onnx').exists()

def test_a_folder_that_is_not_a_dataset(data, tmp_path):
    d = tmp_path/'notds'; shutil.copytree(data, d)
    m = json.loads((d/'metadata.json').read_text()); del m['window']; (d/'metadata.json').write_text(json.dumps(m))
    refused(['hancross-train', '--config', ROOT/'configs'/'hancross_cpu.yaml', '--data_dir', d, '--out_dir', tmp_path/'exp'],
            'missing window', d)
