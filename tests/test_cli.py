"Process-level tests: the console scripts end to end, as a user runs them."
import json, subprocess, sys
from pathlib import Path
import pytest
from hancross.testing import tiny_dataset

BIN = Path(sys.executable).parent

def run(*args):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True)

def test_validate_ok_and_bad(tmp_path):
    d = tiny_dataset(tmp_path/'tiny')
    r = run('hancross-validate', '--data_dir', d)
    assert r.returncode == 0 and 'valid' in r.stdout, r.stderr
    (d/'splits'/'val.json').write_text(json.dumps(json.loads((d/'splits'/'val.json').read_text()) + ['nobody']))
    r = run('hancross-validate', '--data_dir', d)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: " + str(d/'splits'/'val.json') + ": id 'nobody' is not in samples.csv"]

def test_validate_bad_arguments(tmp_path):
    r = run('hancross-validate', tmp_path/'nothing-here')
    assert r.returncode == 2 and 'not a directory' in r.stderr and 'Traceback' not in r.stderr
    r = run('hancross-validate')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
