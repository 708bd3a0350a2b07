"""Real-browser tests of the attention inspector and the CMAN retrieval demo: JupyterLab on loopback, headless Debian Chromium driven by Playwright.

Needs /usr/bin/chromium (Debian's `chromium` package; Playwright never downloads a browser here). Without it the
test is skipped, or fails when HANCROSS_REQUIRE_BROWSER=1 (CI). Screenshots land in tests/artifacts/browser/.
"""
import os, socket, subprocess, sys, tempfile, time, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest
from chromium import CHROMIUM, FLAGS, need_browser

ARTIFACTS = Path(__file__).parent/'artifacts'/'browser'
TIMEOUT_S = 150   # the whole browser session: server start, kernel start, the notebook, two re-renders

NOTEBOOK_CELL = """\
from pathlib import Path
from hancross.core import seed_everything
from hancross.data.dataset import hancross_dls
from hancross.testing import tiny_dataset
from hancross.models.hancross import HANCross
from hancross.inspect.attention import inspect_attention, inspector_config
dls = hancross_dls(tiny_dataset(Path('tiny'), n_sales=120), bs=16)
seed_everything(0)
w = inspect_attention(HANCross(inspector_config(), dls.spec), dls, dpi=60)
w"""

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _wait_http(url:str, proc, timeout:float=60):
    "Poll `url` on loopback (no proxy) until it answers 200"
    opener, t0 = urllib.request.build_opener(urllib.request.ProxyHandler({})), time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with opener.open(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")

DEMO_CELL = """\
from pathlib import Path
from hancross.core import PROJECT_ROOT, seed_everything
from hancross.data.trimodal import TrimodalConfig, build_trimodal, read_retrieval
from hancross.models.cman import CMAN
from hancross.models.registry import load_config
from hancross.inspect.retrieval import retrieval_demo
data = read_retrieval(build_trimodal(Path('tri'), TrimodalConfig(n_items=16, val_frac=0.25, test_frac=0.25), force=True))
seed_everything(0)
w = retrieval_demo(CMAN(load_config(PROJECT_ROOT/'configs'/'cman_cpu.yaml').model), data, dpi=60)
w"""

def _write_notebook(root:Path, name:str, source:str):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
    nbformat.write(nb, root/name)

@pytest.fixture
def lab(tmp_path):
    "JupyterLab on 127.0.0.1 (free port, no token, no news/update checks) serving a root with the test notebook"
    need_browser()
    root = tmp_path/'root'; root.mkdir()
    _write_notebook(root, 'inspector.ipynb', NOTEBOOK_CELL); _write_notebook(root, 'retrieval_demo.ipynb', DEMO_CELL)
    port, home = _free_port(), tmp_path/'jupyter'
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(home/'config'), 'JUPYTER_RUNTIME_DIR': str(home/'runtime'),
           'JUPYTERLAB_WORKSPACES_DIR': str(home/'workspaces'), 'MPLBACKEND': 'Agg'}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', '--IdentityProvider.token=', '--ServerApp.password=', '--ServerApp.disable_check_xsrf=True',
           f'--ServerApp.root_dir={root}', '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           '--LabApp.extension_manager=readonly', '--ServerApp.allow_root=True']   # root in CI containers
    log = open(tmp_path/'jupyter.log', 'w')
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try: _wait_http(f'http://127.0.0.1:{port}/api/status', proc)
        except Exception as e: raise RuntimeError(f"{e}; jupyter log:\n{(tmp_path/'jupyter.log').read_text()[-3000:]}") from None
        yield f'http://127.0.0.1:{port}'
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

def _img_src(img) -> str: return img.evaluate("e => e.complete && e.naturalWidth > 0 ? e.src : ''")

def _next_render(page, img, old_src:str, timeout:float=60) -> str:
    "Wait until the widget's <img> shows a new, loaded PNG; return its src"
    t0 = time.time()
    while time.time() - t0 < timeout:
        src = _img_src(img)
        if src and src != old_src: return src
        page.wait_for_timeout(250)
    raise TimeoutError("the inspector image did not re-render")

def _accept_kernel(page, wait_ms:int=8000):
    "JupyterLab 4 may ask which kernel to start for a new session: take the preselected Python 3"
    dlg = page.locator('.jp-Dialog', has_text='Select Kernel')
    try: dlg.wait_for(state='visible', timeout=wait_ms)
    except Exception: return
    dlg.locator('button.jp-mod-accept').click()
    dlg.wait_for(state='hidden')

@contextmanager
def _browser(tmp_path, outside:list):
    "Headless Chromium whose requests beyond loopback are aborted (and listed in `outside`)"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path/'chromium-profile'), executable_path=str(CHROMIUM), headless=True,
                                                   args=FLAGS, viewport={'width': 1500, 'height': 1100})
        ctx.set_default_timeout(TIMEOUT_S * 1000)
        def _route(route):
            host = route.request.url.split('/')[2].split(':')[0] if '://' in route.request.url else ''
            if host in ('127.0.0.1', 'localhost', ''): route.continue_()
            else: outside.append(route.request.url); route.abort()
        ctx.route('**/*', _route)
        try: yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally: ctx.close()

def _run_all(page, url:str):
    "Open a notebook, run all its cells, return the first widget image once it shows a PNG"
    page.goto(url)
    page.wait_for_selector('.jp-Notebook .jp-Cell')
    _accept_kernel(page)
    page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
    _accept_kernel(page)
    img = page.locator('.jp-OutputArea-output .widget-image').first
    img.wait_for(state='visible')
    return img, _next_render(page, img, '', timeout=TIMEOUT_S)

def _dropdown(page, label:str): return page.locator('.widget-dropdown', has=page.locator('label', has_text=label)).locator('select')

def _select(page, label:str, index:int): _dropdown(page, label).select_option(index=index)

def _selected_text(page, label:str) -> str:
    "The chosen option's label (ipywidgets renders its spaces as non-breaking ones)"
    return _dropdown(page, label).evaluate("e => e.options[e.selectedIndex].text").replace('\xa0', ' ')

def test_inspector_in_jupyterlab(lab, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside, t0 = [], time.time()   # requests the page tried beyond loopback (aborted)
    with _browser(tmp_path, outside) as page:
        try:
            img, src0 = _run_all(page, f'{lab}/lab/tree/inspector.ipynb')
            shots = [ARTIFACTS/'1_initial.png', ARTIFACTS/'2_level.png', ARTIFACTS/'3_head.png']
            img.screenshot(path=str(shots[0]))
            levels = [_selected_text(page, 'level')]
            _select(page, 'level', 2)
            src1 = _next_render(page, img, src0); img.screenshot(path=str(shots[1]))
            levels.append(_selected_text(page, 'level'))
            _select(page, 'head', 1)
            _next_render(page, img, src1); img.screenshot(path=str(shots[2]))
            page.screenshot(path=str(ARTIFACTS/'page.png'), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'failure.png'), full_page=True)
            raise
    a, b, c = (f.read_bytes() for f in shots)
    assert a != b, "changing the pyramid level did not change the rendered view"
    assert levels == ['0: 8x8 tokens', '2: 2x2 tokens'], f"the level control should move between grids of different resolution: {levels}"
    assert b != c, "changing the attention head did not change the rendered view"
    assert not outside, f"the page tried to reach beyond loopback: {outside[:3]}"
    (ARTIFACTS/'duration.txt').write_text(f"{time.time() - t0:.1f} s in the browser\n")

def test_retrieval_demo_in_jupyterlab(lab, tmp_path):
    "The CMAN demo: a typed caption, a spoken caption and an image each re-render the matches"
    out = ARTIFACTS/'retrieval'; out.mkdir(parents=True, exist_ok=True)
    outside = []
    with _browser(tmp_path, outside) as page:
        try:
            img, src0 = _run_all(page, f'{lab}/lab/tree/retrieval_demo.ipynb')
            img.screenshot(path=str(out/'1_caption.png'))
            box = page.locator('.widget-text', has=page.locator('label', has_text='caption')).locator('input')
            box.fill('an alien punk wearing a cap'); box.press('Enter')
            src1 = _next_render(page, img, src0); img.screenshot(path=str(out/'2_typed.png'))
            _select(page, 'spoken', 3)
            src2 = _next_render(page, img, src1); img.screenshot(path=str(out/'3_spoken.png'))
            _select(page, 'image', 2)
            _next_render(page, img, src2); img.screenshot(path=str(out/'4_image.png'))
            page.screenshot(path=str(out/'page.png'), full_page=True)
        except Exception:
            page.screenshot(path=str(out/'failure.png'), full_page=True)
            raise
    shots = [(out/f).read_bytes() for f in ('1_caption.png', '2_typed.png', '3_spoken.png', '4_image.png')]
    assert len(set(shots)) == 4, "a new query did not change the rendered matches"
    assert not outside, f"the page tried to reach beyond loopback: {outside[:3]}"
