"hancross-reproduce end to end on a tiny dataset: manifest hashes, resume, --force reproducing identical tables, failures."
import json, os, subprocess, sys, time, hashlib
from pathlib import Path
import pytest
from hancross.testing import tiny_dataset

BIN = Path(sys.executable).parent

def sha(f): return hashlib.sha256(Path(f).read_bytes()).hexdigest()

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('repro')
    data = tiny_dataset(root/'data'/'tiny', n_sales=300, size=24)
    env = {**os.environ, 'HANCROSS_OUTPUT_ROOT': str(root/'out'), 'HANCROSS_CACHE': str(root/'cache'), 'OMP_NUM_THREADS': '1'}
    return root, data, env

def reproduce(setup, *extra):
    root, data, env = setup
    t = time.time()
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--profile', 'smoke', '--data_dir', str(data), '--only', '00_tuning', '01_main', '02_sig', *extra],
                       capture_output=True, text=True, env=env)
    return r, time.time() - t

def test_no_model_is_reported_without_its_tuning_record(setup, tmp_path):
    "In a tuned profile a notebook that trains a model fails, naming the missing record, unless 00_tuning made it"
    root, data, env = setup
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--profile', 'smoke', '--data_dir', str(data), '--only', '02_sig'],
                       capture_output=True, text=True, env={**env, 'HANCROSS_OUTPUT_ROOT': str(tmp_path/'out')})
    assert r.returncode == 1 and "no tuning record" in r.stderr and "tune it first" in r.stderr, r.stderr[-1500:]

def test_reproduce_manifest_resume_force(setup):
    root, data, env = setup
    r, _ = reproduce(setup)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = root/'out'/'results'/'smoke-tiny'
    m = json.loads((res/'manifest.json').read_text())
    assert set(m['notebooks']) == {'00_tuning', '01_main_results', '02_significance'}
    assert {p.name for p in (res/'tuning').iterdir()} >= {'hancross', 'hedonic', 'lightgbm'}   # the records the others trained from
    listed = {f for e in m['notebooks'].values() for f in e['outputs']}
    for e in m['notebooks'].values():
        assert e['status'] == 'ok' and e['git_commit'] and e['seeds'] == [0, 1] and e['wall_seconds'] > 0
        for f, h in e['outputs'].items(): assert not Path(f).is_absolute() and sha(root/'out'/f) == h, f"hash mismatch {f}"
    made = {str(f.relative_to(root/'out')) for d in [res, root/'out'/'figures'/'smoke-tiny'] for f in d.rglob('*') if f.is_file() and f.name not in ('manifest.json', 'REPORT.md')}
    assert made == listed, f"files the manifest does not explain: {made - listed}"
    assert {'csv', 'tex', 'md'} <= {Path(f).suffix[1:] for f in listed} and {'png', 'pdf'} <= {Path(f).suffix[1:] for f in listed}
    rep = (res/'REPORT.md').read_text()
    assert '## 01_main_results' in rep and '## 02_significance' in rep and 'main_results.png' in rep
    assert (root/'out'/'runs'/'smoke-tiny'/'01_main_results.ipynb').is_file()
    tables = {f: h for f, h in json.loads((res/'manifest.json').read_text())['notebooks']['01_main_results']['outputs'].items() if f.endswith('.csv')}
    r2, dt = reproduce(setup)                                   # nothing changed: everything skipped
    assert r2.returncode == 0 and r2.stdout.count('skipped') == 3, r2.stdout[-1000:]
    assert dt < 60, f"a run with nothing to do took {dt:.0f} s"
    r3, _ = reproduce(setup, '--force')                         # same seed: identical tables
    assert r3.returncode == 0
    for f, h in tables.items(): assert sha(root/'out'/f) == h, f"--force changed {f}"

def test_failing_notebook_is_reported(setup, tmp_path):
    root, data, env = setup
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--profile', 'smoke', '--data_dir', str(tmp_path/'missing')],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and 'dataset directory not found' in r.stderr and 'Traceback' not in r.stderr
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--profile', 'nope', '--data_dir', str(data)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "profile 'nope'" in r.stderr

def _nb(path, *cells):
    import nbformat
    nb = nbformat.v4.new_notebook(); nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata['tags'] = ['parameters']
    nbformat.write(nb, path)

def test_a_failing_notebook_does_not_stop_the_others(setup, tmp_path):
    root, data, env = setup
    paper = tmp_path/'paper'; paper.mkdir()
    params = "profile = 'smoke'\ndata_dir = ''\nfig_dir = ''\nout_dir = ''\ncache_dir = ''\nseeds = [0]\nmodels = []"
    _nb(paper/'01_breaks.ipynb', params, "x = 1", "raise ValueError('cell three is broken')")
    _nb(paper/'02_works.ipynb', params, "from pathlib import Path; Path(out_dir, 'ok.csv').write_text('a\\n1\\n')")
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--profile', 'smoke', '--data_dir', str(data)],
                       capture_output=True, text=True, env={**env, 'HANCROSS_PAPER_DIR': str(paper), 'HANCROSS_OUTPUT_ROOT': str(tmp_path/'out')})
    assert r.returncode == 1
    assert "FAILED 01_breaks: cell 3 (raise ValueError('cell three is broken')): ValueError: cell three is broken" in r.stderr, r.stderr[-1500:]
    m = json.loads((tmp_path/'out'/'results'/'smoke-tiny'/'manifest.json').read_text())
    assert m['notebooks']['01_breaks']['status'] == 'failed' and m['notebooks']['02_works']['status'] == 'ok'
    assert any(f.endswith('ok.csv') for f in m['notebooks']['02_works']['outputs'])
