"""The GPU check script (tests/gpu/check.sh), rehearsed on the CPU at tiny sizes: every step runs and writes its results."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_gpu_check_script_rehearses_on_cpu(tmp_path):
    env = {**os.environ, 'HANCROSS_GPU_CHECK_CPU': '1', 'HANCROSS_GPU_OUT': str(tmp_path/'out'), 'HANCROSS_GPU_DATA': str(tmp_path/'data'),
           'PY': sys.executable}
    r = subprocess.run(['bash', str(ROOT/'tests'/'gpu'/'check.sh')], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = tmp_path/'out'
    res = json.loads((out/'check.json').read_text())
    assert res['steps']['finite'] and res['steps']['last_mean'] < res['steps']['first_mean']
    assert res['parity']['devices'] == ['cpu', 'cpu'] and res['parity']['max_weight_diff'] == 0
    bench = json.loads((out/'bench.json').read_text())
    rows = {(r['model'], r['mode'], r['bs']) for r in bench['models']}
    assert {('hancross', 'inference', 1), ('hancross', 'train', 4), ('hivifan', 'inference', 4)} <= rows
    assert all(r['config'] == 'reference' for r in bench['models'])
    assert (out/'train_steps.png').is_file() and (out/'10_benchmark.ipynb').is_file() and (out/'benchmark.png').is_file()
