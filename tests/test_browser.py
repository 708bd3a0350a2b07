"""Real-browser test of the attention inspector: JupyterLab on loopback, headless Debian Chromium driven by Playwright.

Needs /usr/bin/chromium (Debian's `chromium` package; Playwright never downloads a browser here). Without it the
test is skipped, or fails when HANCROSS_REQUIRE_BROWSER=1 (CI). Screenshots land in tests/artifacts/browser/.
"""
import os, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import pytest

CHROMIUM  = Path('/usr/bin/chromium')
ARTIFACTS = Path(__file__).parent/'artifacts'/'browser'
FLAGS     = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--no-proxy-server']
TIMEOUT_S = 150   # the whole browser session: server start, kernel start, the notebook, two re-renders

NOTEBOOK_CELL = """\
from pathlib import Path
from hancross.core import seed_everything
from hancross.data.dataset import hancross_dls
from hancross.testing import tiny_dataset
from hancross.models.hancross import HANCross, HANCrossConfig
from hancross.inspect.attention import inspect_attention
dls = hancross_dls(tiny_dataset(Path('tiny'), n_sales=120), bs=16)
seed_everything(0)
w = inspect_attention(HANCross(HANCrossConfig.cpu(), dls.spec), dls, dpi=60)
w"""

def _need_browser():
    "Skip (or fail, when CI sets HANCROSS_REQUIRE_BROWSER=1) without Debian's Chromium or the playwright package"
    why = None
    if not CHROMIUM.exists(): why = f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    else:
        try: import playwright.sync_api  # noqa: F401
        except ImportError: why = "the playwright Python package is missing (pip install playwright; no browser download needed)"
    if why is None: return
    if os.environ.get('HANCROSS_REQUIRE_BROWSER') == '1': pytest.fail(f"browser test required but {why}")
    pytest.skip(why)

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

def _write_notebook(root:Path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
    nbformat.write(nb, root/'inspector.ipynb')

@pytest.fixture
def lab(tmp_path):
    "JupyterLab on 127.0.0.1 (free port, no token, no news/update checks) serving a root with the test notebook"
    _need_browser()
    root = tmp_path/'root'; root.mkdir(); _write_notebook(root)
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

def test_inspector_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside = []   # requests the page tried beyond loopback (aborted)
    t0 = time.time()
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path/'chromium-profile'), executable_path=str(CHROMIUM), headless=True,
                                                   args=FLAGS, viewport={'width': 1500, 'height': 1100})
        ctx.set_default_timeout(TIMEOUT_S * 1000)
        def _route(route):
            host = route.request.url.split('/')[2].split(':')[0] if '://' in route.request.url else ''
            if host in ('127.0.0.1', 'localhost', ''): route.continue_()
            else: outside.append(route.request.url); route.abort()
        ctx.route('**/*', _route)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            page.goto(f'{lab}/lab/tree/inspector.ipynb')
            page.wait_for_selector('.jp-Notebook .jp-Cell')
            _accept_kernel(page)
            page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
            page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
            _accept_kernel(page)
            img = page.locator('.jp-OutputArea-output .widget-image').first
            img.wait_for(state='visible')
            src0 = _next_render(page, img, '', timeout=TIMEOUT_S)
            shots = [ARTIFACTS/'1_initial.png', ARTIFACTS/'2_level.png', ARTIFACTS/'3_head.png']
            img.screenshot(path=str(shots[0]))
            level = page.locator('.widget-dropdown', has=page.locator('label', has_text='level')).locator('select')
            level.select_option(index=2)
            src1 = _next_render(page, img, src0); img.screenshot(path=str(shots[1]))
            head = page.locator('.widget-dropdown', has=page.locator('label', has_text='head')).locator('select')
            head.select_option(index=1)
            _next_render(page, img, src1); img.screenshot(path=str(shots[2]))
            page.screenshot(path=str(ARTIFACTS/'page.png'), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'failure.png'), full_page=True)
            raise
        finally: ctx.close()
    a, b, c = (f.read_bytes() for f in shots)
    assert a != b, "changing the pyramid level did not change the rendered view"
    assert b != c, "changing the attention head did not change the rendered view"
    assert not outside, f"the page tried to reach beyond loopback: {outside[:3]}"
    (ARTIFACTS/'duration.txt').write_text(f"{time.time() - t0:.1f} s in the browser\n")
