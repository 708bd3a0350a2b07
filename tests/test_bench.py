"hancross-bench --quick end to end, as CI runs it (about a minute on 2 cores)."
import json, os, subprocess, sys
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def test_bench_quick(tmp_path):
    r = subprocess.run([str(BIN/'hancross-bench'), '--quick', '--out', str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'bench.json').read_text())
    from hancross.models.registry import list_models
    assert {m['model'] for m in res['models']} == set(list_models())
    assert res['matmul']['flops'] > 0 and res['loader']['loader_over_training'] > 0
    assert [s['sales'] for s in res['scaling']] == [300, 600] and all(s['valid'] and s['epoch_s'] > 0 for s in res['scaling'])
    assert set(res['status']) == {'train_frac_of_peak', 'loader_over_training'}
    md = (tmp_path/'bench.md').read_text()
    assert '## Models' in md and '## Scaling' in md and '## Targets' in md

def test_bench_bad_model(tmp_path):
    r = subprocess.run([str(BIN/'hancross-bench'), '--models', 'hancros', '--out', str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown model 'hancros'" in r.stderr
