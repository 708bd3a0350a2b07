"Training as a user runs it: hancross-train / hancross-evaluate end to end, a SIGKILLed run resumed, torchrun with gloo."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, yaml
from hancross.testing import tiny_dataset
from hancross.data.video import build_video_dataset

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT/'configs'/'hancross_cpu.yaml'
VIDEO_CFG = ROOT/'configs'/'video_cpu.yaml'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A tiny dataset at the CPU config's image size: 2 collections, 24x24 images, 24-bar windows"
    return tiny_dataset(tmp_path_factory.mktemp('d')/'tiny', n_sales=500, size=24)

def train_cmd(data, out, name, *extra, epochs=4):
    return [str(BIN/'hancross-train'), '--config', str(CFG), '--data_dir', str(data), '--experiment_name', name,
            '--out', str(out), '--epochs', str(epochs), '--quiet', *map(str, extra)]

def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    return r

def metrics(out, name): return json.loads((out/name/'metrics.json').read_text())

def test_train_evaluate_and_reproducible(data, tmp_path):
    run(train_cmd(data, tmp_path, 'a'))
    run(train_cmd(data, tmp_path, 'b'))
    exp = tmp_path/'a'
    assert sorted(p.name for p in exp.iterdir()) == ['.lock', 'best_model.pth', 'config.yaml', 'history.csv', 'last.pth', 'metrics.json',
                                                     'predictions_test.csv', 'predictions_val.csv']
    assert metrics(tmp_path, 'a')['test'] == metrics(tmp_path, 'b')['test']           # one seed, identical metrics
    r = run([str(BIN/'hancross-evaluate'), '--checkpoint', str(exp/'best_model.pth'), '--data_dir', str(data),
             '--out', str(tmp_path/'ev'), '--metrics', 'r2', 'mae', 'rmse', 'correlation'])
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert set(m) >= {'r2', 'mae', 'rmse', 'correlation'}
    assert abs(m['r2'] - metrics(tmp_path, 'a')['test']['r2']) < 1e-5               # evaluation needs only the checkpoint
    assert (tmp_path/'ev'/'predictions.csv').is_file()

def test_sigkill_then_resume_matches_uninterrupted(data, tmp_path):
    epochs = 6
    run(train_cmd(data, tmp_path, 'full', epochs=epochs))
    p = subprocess.Popen(train_cmd(data, tmp_path, 'killed', epochs=epochs), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last, t0 = tmp_path/'killed'/'last.pth', time.time()
    while not last.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path/'killed'/'metrics.json').exists()
    run(train_cmd(data, tmp_path, 'killed', '--resume', epochs=epochs))
    assert metrics(tmp_path, 'killed')['test'] == metrics(tmp_path, 'full')['test']
    import pandas as pd
    assert pd.read_csv(tmp_path/'killed'/'history.csv').epoch.tolist() == list(range(epochs))

def test_bad_input_is_one_line(data, tmp_path):
    bad = tmp_path/'bad.yaml'; bad.write_text("model:\n  name: hancross\ntraining:\n  learing_rate: 0.1\n")
    r = subprocess.run(train_cmd(data, tmp_path, 'x')[:2] + [str(bad)] + train_cmd(data, tmp_path, 'x')[3:], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: {bad}: unknown config key 'training.learing_rate' (did you mean 'learning_rate'?)"
    r = subprocess.run([str(BIN/'hancross-evaluate'), '--checkpoint', str(tmp_path/'none.pth'), '--data_dir', str(data)],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and 'checkpoint not found' in r.stderr and 'Traceback' not in r.stderr

def test_torchrun_gloo_two_processes(data, tmp_path):
    "2 CPU processes under DDP (gloo) with batch b each, against 1 process with batch 2b: same result within tolerance"
    run(train_cmd(data, tmp_path, 'single', '--bs', 32))
    torchrun = [str(BIN/'torchrun'), '--standalone', '--nproc_per_node=2', str(BIN/'hancross-train')]
    cmd = torchrun + train_cmd(data, tmp_path, 'ddp', '--bs', 16)[1:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s, d = metrics(tmp_path, 'single')['test'], metrics(tmp_path, 'ddp')['test']
    assert d['r2'] > 0.3 and abs(d['r2'] - s['r2']) < 0.15, (s, d)
    assert abs(d['rmse'] - s['rmse']) < 0.25 * s['rmse'], (s, d)

@pytest.fixture(scope='module')
def video(tmp_path_factory):
    "48 clips in the First Impressions layout (34 train, 7 val, 7 test)"
    return build_video_dataset(tmp_path_factory.mktemp('v')/'tiny', scale=dict(n_clips=48))

def video_cmd(cfg, data, out, *extra):
    return [str(BIN/'hancross-train'), '--config', str(cfg), '--data_dir', str(data), '--experiment_name', 'v', '--out', str(out),
            '--epochs', '1', '--quiet', *map(str, extra)]

def test_video_config_trains_through_hancross_train(video, tmp_path):
    r = run(video_cmd(VIDEO_CFG, video, tmp_path, '--bs', 8))
    exp = tmp_path/'v'
    assert sorted(p.name for p in exp.iterdir()) == ['.lock', 'best_model.pth', 'config.yaml', 'history.csv', 'last.pth', 'metrics.csv', 'metrics.json']
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['model'] == 'video' and out['experiment'] == 'v' and 0 < out['test']['accuracy'] <= 1
    ran, cfg = (yaml.safe_load(f.read_text())['training'] for f in (exp/'config.yaml', VIDEO_CFG))
    assert {k: float(ran[k]) for k in cfg} == {k: float(v) for k, v in {**cfg, 'num_epochs': 1, 'batch_size': 8}.items()}   # the flags won

def test_video_bad_config_is_one_line(video, tmp_path):
    bad = tmp_path/'bad.yaml'; bad.write_text(VIDEO_CFG.read_text().replace('fusion: xattn', 'fusion: late'))
    r = subprocess.run(video_cmd(bad, video, tmp_path), capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.splitlines() == [f"error: {bad}: model.fusion 'late' is not one of xattn, concat, static, dynamic, mean_frame"], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yaml']          # nothing written
