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
    assert set(res['status']) == {'train_frac_of_peak', 'loader_over_training', 'hancross_epoch_samples_per_s', 'step_over_epoch'}
    trained = {m['model'] for m in res['models'] if m['mode'] == 'train'}
    assert {e['model'] for e in res['epochs']} == trained                        # every trainable model: its epoch beside its bare step
    assert all(e['samples'] > 0 and e['step_samples_per_s'] > 0 and abs(sum(e[k] for k in e if k.endswith('_share')) - 1) < 1e-3
               for e in res['epochs'])                                          # the phases account for the whole epoch
    assert all(s['generate_peak_mb'] >= 0 and s['epoch_peak_mb'] >= 0 for s in res['scaling'])
    md = (tmp_path/'bench.md').read_text()
    assert '## Models' in md and '## Whole epoch' in md and '## Scaling' in md and '## Targets' in md

def test_bench_bad_model(tmp_path):
    r = subprocess.run([str(BIN/'hancross-bench'), '--models', 'hancros', '--out', str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown model 'hancros'" in r.stderr
