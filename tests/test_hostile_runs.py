"""Faults and hostile arguments at the training and deployment commands: a run killed after an epoch resumes to the
uninterrupted run's numbers; a full disk or a read-only folder is exit 2 and one line, the previous checkpoints and
exports intact and no partial file; of two runs into one experiment one is refused; a resume with another model's
config is refused with config.yaml as it was; data a model cannot train on is refused before any folder appears; a
killed dataset build leaves its marked temporary folder, which the next build removes; and every console script
refuses an obviously bad argument with exit 2 and one line. Every case builds its own input; full disks and
read-only folders are small tmpfs mounts (skipped, or a permission-less folder, where mounting is not allowed)."""
import configparser, hashlib, importlib, json, os, shutil, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
import pandas as pd, pytest
from hancross.testing import tiny_dataset
from hancross.data.video import build_video_dataset, load_clips
from hancross.data.trimodal import build_trimodal, TrimodalConfig
from hancross.train.core import load_checkpoint
from hancross.deploy.export import export_checkpoint
import onnxruntime as ort

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT/'configs'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
EPOCHS = {'market': 4, 'video': 3}   # enough for a kill after the first epoch to land mid-run
SKIP = {}   # console scripts without a bad-argument case, and why
_ini = configparser.ConfigParser(interpolation=None); _ini.read(ROOT/'settings.ini')
ENTRY = {k.strip(): v.strip() for k, v in (l.split('=', 1) for l in _ini['DEFAULT']['console_scripts'].splitlines() if l.strip())}   # script -> module:function

def snapshot(*dirs):
    "Path -> sha256 of every file and '' for every folder under `dirs` (missing dirs count as empty)"
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else '' for d in dirs if Path(d).exists()
            for f in sorted(Path(d).rglob('*'))}

def run(args, **kw):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=ENV, timeout=600, **kw)

def start(args):
    return subprocess.Popen([str(BIN/args[0]), *map(str, args[1:])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)

def call(args, capsys):
    "Run console script `args[0]`'s entry point (settings.ini) in this process, argv as given: exit code, stdout, stderr"
    mod, fn = ENTRY[args[0]].split(':')
    argv, sys.argv = sys.argv, [args[0], *map(str, args[1:])]
    capsys.readouterr()
    try: getattr(importlib.import_module(mod), fn)(); code = 0
    except SystemExit as e: code = e.code
    finally: sys.argv = argv
    return subprocess.CompletedProcess(args, code, *capsys.readouterr())

def ok(args, **kw):
    r = run(args, **kw)
    assert r.returncode == 0, (args, r.stderr[-2000:])
    return r

def one_line(r, *contains):
    "Exit 2 and one stderr line holding every `contains`, no traceback"
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.args, r.returncode, r.stderr[-1500:])
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-1500:]
    for c in contains: assert c in lines[0], lines[0]
    return lines[0]

def refused(args, contains, *watch):
    "Run a command that must refuse: exit 2, one line, every `watch` folder unchanged"
    before = snapshot(*watch)
    line = one_line(run(args), *([contains] if isinstance(contains, str) else contains))
    assert snapshot(*watch) == before, f"{args}: something under {watch} changed"
    return line

def train_cmd(task, data, out, name='run', *extra, cfg=None):
    cfg = cfg or {'market': CFG/'hancross_cpu.yaml', 'video': CFG/'video_cpu.yaml'}[task]
    return ['hancross-train', '--config', cfg, '--data_dir', data, '--out', out, '--experiment_name', name,
            '--epochs', EPOCHS[task], '--quiet', *(['--bs', 8] if task == 'video' else []), *extra]

def partial_files(d): return sorted(p.name for p in Path(d).iterdir() if p.name.endswith('.tmp'))

# --- fixtures: tiny data, small disks --------------------------------------------------------------------------------
@pytest.fixture(scope='module', autouse=True)
def cache(tmp_path_factory):
    "The video flow cache of every command here (in this process too) in a folder of its own"
    old = os.environ.get('HANCROSS_CACHE')
    ENV['HANCROSS_CACHE'] = os.environ['HANCROSS_CACHE'] = str(tmp_path_factory.mktemp('cache'))
    yield Path(ENV['HANCROSS_CACHE'])
    ENV.pop('HANCROSS_CACHE')
    if old is None: os.environ.pop('HANCROSS_CACHE')
    else: os.environ['HANCROSS_CACHE'] = old

@pytest.fixture(scope='module')
def data(tmp_path_factory, cache):
    "A market set (160 sales a collection), a video set (24 clips, its flow cached) and a retrieval set (24 punks)"
    root = tmp_path_factory.mktemp('data')
    v = build_video_dataset(root/'video', scale='tiny')
    load_clips(v, size=32, cache=cache/'flow')
    tri = build_trimodal(root/'tri', TrimodalConfig(n_items=24, captions_per_item=2, val_frac=0.25, test_frac=0.25, chunk=200))
    return SimpleNamespace(market=tiny_dataset(root/'market', n_sales=160), video=v, tri=tri)

def _mount(p, size, ro=False):
    "Mount a tmpfs of `size` at `p` (False where not allowed)"
    p.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0: return False
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', f"size={size}", 'tmpfs', str(p)], capture_output=True).returncode: return False
    if ro: subprocess.run(['mount', '-o', 'remount,ro', str(p)], check=True)
    return True

@pytest.fixture
def disk(tmp_path):
    "disk(name, size) -> a fresh tmpfs of `size` (skipped where mounting is not allowed); disk.resize(p, size)"
    mounted = []
    def mount(name, size):
        p = tmp_path/name
        if not _mount(p, size): pytest.skip('mounting a small tmpfs needs root')
        mounted.append(p); return p
    mount.resize = lambda p, size: subprocess.run(['mount', '-o', f"remount,size={size}", str(p)], check=True)
    yield mount
    for p in reversed(mounted): subprocess.run(['umount', '-l', str(p)], capture_output=True)

@pytest.fixture
def read_only(tmp_path):
    "A read-only folder (a read-only tmpfs as root, else a folder without write permission) and the words its refusal uses"
    p = tmp_path/'ro'
    if _mount(p, '1m', ro=True):
        yield p, 'read-only'
        subprocess.run(['umount', '-l', str(p)], capture_output=True)
    else:
        p.chmod(0o555)
        yield p, 'permission denied'
        p.chmod(0o755)

# --- training: two runs at once (the reference), a kill, a full disk, the wrong config -------------------------------
@pytest.fixture(scope='module')
def pair(tmp_path_factory, data):
    "task -> two `hancross-train` runs started at once into one experiment: (their results, the experiment, its metrics)"
    roots = {task: tmp_path_factory.mktemp(f"pair_{task}") for task in ('market', 'video')}
    ps = {task: [start(train_cmd(task, getattr(data, task), root)) for _ in range(2)] for task, root in roots.items()}
    out = {}
    for task, root in roots.items():
        outs = [p.communicate(timeout=600) for p in ps[task]]
        res = [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(ps[task], outs)]
        m = root/'run'/'metrics.json'
        out[task] = SimpleNamespace(res=res, exp=root/'run', metrics=json.loads(m.read_text()) if m.is_file() else None)
    return out

@pytest.mark.parametrize('task', ['market', 'video'])
def test_two_runs_into_one_experiment(pair, task):
    p = pair[task]
    won = [r for r in p.res if r.returncode == 0]
    assert len(won) == 1, [(r.returncode, r.stderr[-500:]) for r in p.res]
    lost = next(r for r in p.res if r.returncode != 0)
    line = one_line(lost)
    assert 'another run is training into this experiment' in line or 'experiment exists' in line, line
    assert pd.read_csv(p.exp/'history.csv').epoch.tolist() == list(range(EPOCHS[task]))    # one run's rows, not two
    assert partial_files(p.exp) == [] and p.metrics['epochs'] == EPOCHS[task]

def another_config(task, d) -> Path:
    "A config of another model than the task's runs here: HiViFAN for the market, concat fusion for video"
    if task == 'market': return CFG/'hivifan_cpu.yaml'
    (d/'concat.yaml').write_text((CFG/'video_cpu.yaml').read_text().replace('fusion: xattn', 'fusion: concat'))
    return d/'concat.yaml'

def kill_after_first_epoch(cmd, exp):
    p = subprocess.Popen([str(BIN/cmd[0]), *map(str, cmd[1:])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while not (exp/'last.pth').exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, 'the run ended before it could be killed'

@pytest.mark.parametrize('task', ['market', 'video'])
def test_sigkill_then_resume_matches_the_uninterrupted_run(pair, data, tmp_path, capsys, task):
    exp = tmp_path/'run'
    kill_after_first_epoch(train_cmd(task, getattr(data, task), tmp_path), exp)
    assert not (exp/'metrics.json').exists()
    before, other = snapshot(exp), another_config(task, tmp_path)                             # resuming with another model's config
    one_line(call(train_cmd(task, getattr(data, task), tmp_path, 'run', '--resume', cfg=other), capsys), 'was trained as model')
    assert snapshot(exp) == before                                                  # config.yaml as it was
    ok(train_cmd(task, getattr(data, task), tmp_path, 'run', '--resume'))
    m = json.loads((exp/'metrics.json').read_text())
    assert (m['test'], m.get('valid'), m['best_epoch']) == (pair[task].metrics['test'], pair[task].metrics.get('valid'), pair[task].metrics['best_epoch'])
    assert pd.read_csv(exp/'history.csv').epoch.tolist() == list(range(EPOCHS[task])) and partial_files(exp) == []

@pytest.mark.parametrize('task', ['market', 'video'])
def test_full_disk_during_training_keeps_the_checkpoints_and_resumes(pair, data, disk, capsys, task):
    ref = pair[task].exp
    best, last = (ref/'best_model.pth').stat().st_size, (ref/'last.pth').stat().st_size
    d = disk('full', best * 3 // 2 + last + 128 * 1024)               # room for the first epoch's files, not for the second's
    exp = d/'run'
    one_line(run(train_cmd(task, getattr(data, task), d)), 'no space left on the device', 'not written')
    assert sorted(p.name for p in exp.iterdir()) == ['.lock', 'best_model.pth', 'config.yaml', 'history.csv', 'last.pth']   # nothing partial
    assert load_checkpoint(exp/'last.pth')['epoch'] == 0 and load_checkpoint(exp/'best_model.pth')['epoch'] == 0
    disk.resize(d, '64m')                                              # room again: the run resumes (here, in this process)
    assert call(train_cmd(task, getattr(data, task), d, 'run', '--resume'), capsys).returncode == 0
    assert pd.read_csv(exp/'history.csv').epoch.tolist() == list(range(EPOCHS[task])) and (exp/'metrics.json').is_file()

def test_read_only_out_dir(data, read_only, capsys):
    ro, words = read_only
    for task in ('market', 'video'):
        before = snapshot(ro, getattr(data, task))
        one_line(call(train_cmd(task, getattr(data, task), ro/'exp'), capsys), words)
        assert snapshot(ro, getattr(data, task)) == before

# --- export: atomic, a full disk keeps the previous export --------------------------------------------------------------
def test_reproduce_into_a_read_only_root(data, read_only):
    "hancross-reproduce whose output root cannot be written: one line, exit 2, nothing created"
    p, words = read_only
    r = subprocess.run([str(BIN/'hancross-reproduce'), '--only', '02_significance', '--data_dir', str(data.market)], capture_output=True,
                       text=True, env={**ENV, 'HANCROSS_OUTPUT_ROOT': str(p)}, timeout=600)
    one_line(r, words)
    assert not any(p.iterdir())

def test_export_on_a_full_disk_keeps_the_previous_export(pair, data, disk):
    ck = pair['market'].exp/'best_model.pth'
    d = disk('onnx', '64m')
    export_checkpoint(ck, d/'m.onnx', data_dir=data.market, n_samples=64)              # a valid export already there
    used = sum(f.stat().st_size for f in d.iterdir())
    disk.resize(d, used + 256 * 1024)                                                  # less room than one more .onnx
    refused(['hancross-export', '--checkpoint', ck, '--out', d/'m.onnx', '--data_dir', data.market, '--n_samples', 64],
            ['m.onnx: no space left on the device', 'not written'], d, data.market)
    ort.InferenceSession(str(d/'m.onnx'), providers=['CPUExecutionProvider'])          # still whole

def test_export_into_a_read_only_folder(pair, read_only, capsys):
    ro, _ = read_only
    one_line(call(['hancross-export', '--checkpoint', pair['market'].exp/'best_model.pth', '--out', ro/'m.onnx'], capsys), 'ro: read-only folder')
    assert not any(ro.iterdir())

# --- a killed dataset build: the old dataset intact, its marked debris removed by the next build ----------------------
def test_a_killed_generate_leaves_the_old_dataset_and_the_next_run_cleans_up(tmp_path):
    out = tiny_dataset(tmp_path/'g', n_sales=40)                                    # a dataset of ours, to be replaced
    before = snapshot(out)
    p = subprocess.Popen([str(BIN/'hancross-generate'), '--name', 'g', '--scale', 'tiny', '--out', str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while not list(tmp_path.glob('.g.tmp-*/new/*')) and p.poll() is None and time.time() - t0 < 120: time.sleep(0.002)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, 'the build ended before it could be killed'
    debris = list(tmp_path.glob('.g.tmp-*'))
    assert len(debris) == 1 and (debris[0]/'.hancross-tmp').is_file() and snapshot(out) == before
    (tmp_path/'.g.tmp-mine').mkdir(); (tmp_path/'.g.tmp-mine'/'notes.md').write_text('mine')   # unmarked: never touched
    ok(['hancross-generate', '--name', 'g', '--scale', 'tiny', '--out', out])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.g.tmp-mine', 'g'] and snapshot(out) != before

def test_generate_on_a_full_disk_leaves_nothing(disk, capsys):
    d = disk('full', '96k')
    one_line(call(['hancross-generate', '--name', 'g', '--scale', 'tiny', '--out', d/'g'], capsys), 'g: cannot write the dataset here')
    assert not any(d.iterdir())

# --- check before writing: data and arguments refused before any folder appears ---------------------------------
@pytest.fixture(scope='module')
def bad(tmp_path_factory, data):
    "Inputs that cannot be trained on: an empty folder, a set with no samples, sets with an empty val split, a CMAN config for other log-mels"
    t = tmp_path_factory.mktemp('bad')
    for name in ('zero', 'noval'): shutil.copytree(data.market, t/name)
    (t/'zero'/'samples.csv').write_text((t/'zero'/'samples.csv').read_text().splitlines()[0] + '\n')   # a header, no rows
    (t/'noval'/'splits'/'val.json').write_text('[]')
    shutil.copytree(data.tri, t/'trinoval'); (t/'trinoval'/'splits'/'val.json').write_text('[]')
    (t/'mels.yaml').write_text((CFG/'cman_cpu.yaml').read_text().replace('n_mels: 64', 'n_mels: 128')   # the AST reads log-mels
                             .replace('audio_encoder: whisper_tiny_en', 'audio_encoder: ast_scratch').replace('audio_mode: frozen', 'audio_mode: full'))
    (t/'empty').mkdir()
    return SimpleNamespace(t=t, empty=t/'empty', zero=t/'zero', noval=t/'noval', trinoval=t/'trinoval', mels=t/'mels.yaml',
                           market=data.market, video=data.video, tri=data.tri)

M, C = CFG/'hancross_cpu.yaml', CFG/'cman_cpu.yaml'
CHECKS = [   # id, command (P: the paths; P.out must never appear), what its one line holds
    ('not-a-dataset', lambda P: ['hancross-train', '--config', M, '--data_dir', P.empty, '--out', P.out], 'empty/metadata.json: missing'),
    ('zero-samples', lambda P: ['hancross-train', '--config', M, '--data_dir', P.zero, '--out', P.out], 'zero/samples.csv: no samples'),
    ('empty-val', lambda P: ['hancross-train', '--config', M, '--data_dir', P.noval, '--out', P.out], 'noval: the val split is empty'),
    ('negative-seed', lambda P: ['hancross-train', '--config', M, '--data_dir', P.market, '--seed', -1, '--out', P.out], 'seed must be >= 0, got -1'),
    ('start-level-0', lambda P: ['hancross-train', '--config', M, '--data_dir', P.market, '--start_level', 0, '--out', P.out], '--start_level must be at least 1'),
    ('cman-batch', lambda P: ['hancross-train', '--config', C, '--data_dir', P.tri, '--bs', 1000, '--out', P.out], 'fewer than one batch of 1000'),
    ('cman-empty-val', lambda P: ['hancross-train', '--config', C, '--data_dir', P.trinoval, '--bs', 8, '--out', P.out], 'trinoval: the val split is empty'),
    ('cman-video-set', lambda P: ['hancross-train', '--config', C, '--data_dir', P.video, '--bs', 8, '--out', P.out], "task is 'video_regression', not 'retrieval'"),
    ('cman-n-mels', lambda P: ['hancross-train', '--config', P.mels, '--data_dir', P.tri, '--bs', 8, '--out', P.out], ('n_mels 64', 'n_mels 128')),
    ('cman-lr', lambda P: ['hancross-train', '--config', C, '--data_dir', P.tri, '--lr', -0.001, '--out', P.out], 'learning_rate must be a finite positive number'),
    ('retrieval-epochs', lambda P: ['hancross-train-retrieval', '--config', C, '--data_dir', P.tri, '--epochs', 0, '--out', P.out/'x'], 'num_epochs must be at least 1'),
    ('infer-bs-negative', lambda P: ['hancross-infer', '--checkpoint', P.t/'none.pth', '--data_dir', P.market, '--bs', -3], '--bs must be at least 1, got -3'),
    ('export-opset', lambda P: ['hancross-export', '--checkpoint', P.t/'none.pth', '--out', P.out/'m.onnx', '--opset', 0], '--opset must be in 7..20'),
    ('export-tol', lambda P: ['hancross-export', '--checkpoint', P.t/'none.pth', '--out', P.out/'m.onnx', '--tol', -1], '--tol must be a finite number >= 0'),
]

@pytest.mark.parametrize('cid,cmd,contains', CHECKS, ids=[c[0] for c in CHECKS])
def test_checked_before_anything_is_written(bad, capsys, cid, cmd, contains):
    inputs = [bad.t, bad.market, bad.video, bad.tri]
    before = snapshot(*inputs)
    one_line(call(cmd(SimpleNamespace(**vars(bad), out=bad.t/'out')), capsys), *([contains] if isinstance(contains, str) else contains))
    assert snapshot(*inputs) == before and not (bad.t/'out').exists()

# --- every console script refuses an obviously bad argument: exit 2, one line, no traceback ----------------------------
SCRIPTS = {   # console script -> (an obviously bad command line, what its one line holds)
    'hancross-generate': (lambda P: ['--seed', -1, '--scale', 'tiny', '--out', P.out], 'seed must be a non-negative integer'),
    'hancross-validate': (lambda P: ['--data_dir', P.t/'nothere'], 'nothere: not a directory'),
    'hancross-import-collection': (lambda P: ['--src', P.t/'nothere', '--out', P.out, '--window', 24], 'nothere: not a folder'),
    'hancross-import-punks': (lambda P: ['--history', P.t/'nothere.jsonl', '--images', P.t/'noimages', '--out', P.out], 'nothere.jsonl: history file not found'),
    'hancross-build-cryptopunks': (lambda P: ['--sales', P.t/'nothere.csv', '--out', P.out], 'nothere.csv'),
    'hancross-train': (lambda P: ['--config', M, '--data_dir', P.zero, '--out', P.out], 'samples.csv: no samples'),
    'hancross-evaluate': (lambda P: ['--checkpoint', P.t/'none.pth', '--data_dir', P.market, '--out', P.out], 'none.pth: checkpoint not found'),
    'hancross-infer': (lambda P: ['--checkpoint', P.t/'none.pth', '--data_dir', P.market, '--bs', 0, '--out', P.out/'p.json'], '--bs must be at least 1, got 0'),
    'hancross-export': (lambda P: ['--checkpoint', P.t/'none.pth', '--out', P.out/'m.onnx', '--n_samples', 0], '--n_samples must be at least 1'),
    'hancross-bench': (lambda P: ['--threads', 0], '--threads must be >= 1'),
    'hancross-docs': (lambda P: ['--nbs', P.t/'nothere', '--out', P.out], 'nothere: no notebooks to document'),
    'hancross-build-trimodal': (lambda P: ['--n_items', 0, '--out', P.out], 'n_items must be in 1..10000'),
    'hancross-import-trimodal': (lambda P: ['--src', P.t/'nothere', '--out', P.out], 'nothere'),
    'hancross-train-retrieval': (lambda P: ['--config', C, '--data_dir', P.tri, '--bs', 0, '--out', P.out/'x'], 'batch_size must be at least 1'),
    'hancross-eval-retrieval': (lambda P: ['--checkpoint', P.t/'none.pth', '--data_dir', P.tri, '--out', P.out], 'none.pth: checkpoint not found'),
    'hancross-generate-video': (lambda P: ['--scale', 'tiny', '--seed', -1, '--out', P.out], 'seed must be a non-negative integer'),
    'hancross-train-video': (lambda P: ['--data_dir', P.video, '--seed', -1, '--out', P.out/'x'], 'seed must be >= 0, got -1'),
    'hancross-tune': (lambda P: ['--model', 'hedonic', '--trials', 0, '--data_dir', P.market, '--out', P.out], 'n_trials must be at least 1, got 0'),
    'hancross-reproduce': (lambda P: ['--profile', 'smoke', '--only', 'nothere', '--data_dir', P.market], '--only nothere matches no notebook'),
}

@pytest.fixture(scope='module')
def scripts(bad):
    "Every console script of settings.ini run once with its bad command line (two at a time), from an empty folder"
    (bad.t/'cwd').mkdir()
    inputs = [bad.t, bad.market, bad.video, bad.tri]
    before = snapshot(*inputs)
    def go(name): return name, run([name, *SCRIPTS[name][0](SimpleNamespace(**vars(bad), out=bad.t/'out'/name))], cwd=bad.t/'cwd')
    with ThreadPoolExecutor(2) as ex: res = dict(ex.map(go, [n for n in ENTRY if n in SCRIPTS]))
    return SimpleNamespace(res=res, changed=snapshot(*inputs) != before, t=bad.t)

def test_every_console_script_has_a_bad_argument_case():
    assert set(ENTRY) - set(SKIP) <= set(SCRIPTS), f"no bad-argument case for {sorted(set(ENTRY) - set(SKIP) - set(SCRIPTS))}"

@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_every_console_script_refuses_a_bad_argument(scripts, name):
    one_line(scripts.res[name], SCRIPTS[name][1])
    assert not (scripts.t/'out'/name).exists()

def test_the_refusals_changed_no_input_and_left_nothing(scripts):
    assert not scripts.changed and not any((scripts.t/'cwd').iterdir())
