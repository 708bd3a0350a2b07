"""The documentation site, built offline: every internal link and anchor resolves, nothing points outside the site, and
in headless Chromium its front page, one API page and the CLI reference show a sidebar, rendered maths and a figure
without a single request beyond loopback.

The site is `$HANCROSS_DOCS_DIR` when set (`make test-docs` builds `_docs/` and points here), else a small site built
into a temporary folder from three notebooks (the front page, `core`, `data.synthetic` with its examples executed) and
the project's figures and tables. The browser part needs /usr/bin/chromium and the playwright package, as
tests/test_browser.py: skipped without them, a failure when HANCROSS_REQUIRE_BROWSER=1 (CI). Screenshots land in
tests/artifacts/docs/.
"""
import functools, http.server, os, re, shutil, threading, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from chromium import CHROMIUM, FLAGS, need_browser

ROOT      = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).parent/'artifacts'/'docs'
API_PAGE  = '03_data.synthetic.html'   # the simulator's equations, its API and its executed market figure
LOCAL     = ('127.0.0.1', 'localhost', '')

@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    "The built site: $HANCROSS_DOCS_DIR, else a small one built here"
    if os.environ.get('HANCROSS_DOCS_DIR'):
        d = Path(os.environ['HANCROSS_DOCS_DIR'])
        if not (d/'index.html').exists(): pytest.fail(f"HANCROSS_DOCS_DIR={d} holds no index.html: build it with `make docs`")
        return d
    from hancross.docs import build_docs
    tmp = tmp_path_factory.mktemp('docs')
    nbs = tmp/'nbs'; nbs.mkdir()
    for n in ('index', '00_core', '03_data.synthetic'): shutil.copy(ROOT/'nbs'/f'{n}.ipynb', nbs)
    return build_docs(nbs, tmp/'site', root=ROOT, timeout=240, budget=240, log=lambda s: None)

class _Links(HTMLParser):
    "Every id, and every URL-valued attribute, of one HTML page"
    def __init__(self):
        super().__init__(); self.ids, self.urls, self.styles = set(), [], []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if v is None: continue
            if k in ('id', 'name'): self.ids.add(v)
            if k in ('href', 'src', 'action', 'poster', 'data') or (k == 'content' and re.match(r'\s*\w+://', v)): self.urls.append((tag, k, v))
            if k == 'srcset': self.urls += [(tag, k, u.split()[0]) for u in v.split(',') if u.strip()]
            if k == 'style': self.styles.append(v)
    def handle_data(self, data):
        if self.lasttag == 'style': self.styles.append(data)

def _outside(url:str) -> bool:
    "Does `url` point to a host outside the site?"
    u = urlsplit(url.strip())
    if u.scheme in ('data', 'blob', 'about', 'javascript', 'mailto'): return False
    return bool(u.netloc) and u.hostname not in LOCAL or u.scheme not in ('', 'file', 'http', 'https')

def _css_urls(text:str) -> list:
    return re.findall(r'url\(\s*["\']?([^"\')]+)', text) + re.findall(r'@import\s+(?:url\()?\s*["\']([^"\']+)', text)

def test_crawl_links_and_outside_requests(site):
    pages = {p: _Links() for p in site.rglob('*.html')}
    for p, links in pages.items(): links.feed(p.read_text(errors='replace'))
    broken, outside, n = [], [], 0
    for p, links in pages.items():
        rel = p.relative_to(site)
        for tag, attr, url in links.urls:
            n += 1
            if _outside(url):
                if not (tag == 'a' and attr == 'href'): outside.append(f"{rel}: <{tag} {attr}={url}>")
                else: outside.append(f"{rel}: link to {url}")
                continue
            u = urlsplit(url)
            if u.scheme or u.netloc: continue
            target = (site/unquote(u.path).lstrip('/') if u.path.startswith('/') else p.parent/unquote(u.path)).resolve() if u.path else p
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f"{rel}: {url} (no such file)"); continue
            if u.fragment and target.suffix == '.html' and target in pages and unquote(u.fragment) not in pages[target].ids:
                broken.append(f"{rel}: {url} (no such anchor)")
        outside += [f"{rel}: {x}" for s in links.styles for x in _css_urls(s) if _outside(x)]
    for css in site.rglob('*.css'):
        outside += [f"{css.relative_to(site)}: {x}" for x in _css_urls(css.read_text(errors='replace')) if _outside(x)]
    assert len(pages) >= 4 and n > 100, (len(pages), n)
    assert not broken, f"{len(broken)} broken internal links, e.g.:\n" + '\n'.join(broken[:40])
    assert not outside, f"{len(outside)} references outside the site, e.g.:\n" + '\n'.join(outside[:15])

def test_pages_hold_what_a_reader_needs(site):
    "Titles from the notebooks, API rendered once as `class`/`def`, no imports or test cells, maths as MathML, CLI flags"
    api = (site/API_PAGE).read_text()
    assert '<title>data.synthetic - hancross</title>' in api
    assert '<math' in api and 'arithmatex' not in api and '\\(' not in re.sub(r'<pre.*?</pre>', '', api, flags=re.S)
    assert 'id="generate_market"' in api and api.count('id="MarketConfig"') == 1
    assert re.search(r'class</span><span class="w"> </span><span class="nc">MarketConfig', api) or 'class MarketConfig' in api
    assert 'from fastcore.test import' not in api and 'test_eq(' not in api and '#|' not in api
    front = (site/'index.html').read_text()
    assert re.search(r'href="architecture.html"', front) or not (site/'architecture.html').exists()
    assert 'href="03_data.synthetic.html#generate_market"' in front or 'href="03_data.synthetic.html"' in front
    cli = (site/'cli_reference.html').read_text()
    assert 'hancross-generate' in cli and '--out' in cli and 'Call self as a function' not in cli

# ---- in a browser
@pytest.fixture(scope='module')
def served(site):
    "The site over HTTP on loopback (a free port)"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}'
    finally: srv.shutdown(); srv.server_close()

def test_site_in_chromium(served):
    need_browser()
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests, outside, report = [], [], {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        ctx = b.new_context(viewport={'width': 1400, 'height': 1000})
        def _route(route):
            url = route.request.url; requests.append(url)
            if urlsplit(url).hostname in LOCAL or url.startswith(('data:', 'blob:')): route.continue_()
            else: outside.append(url); route.abort()
        ctx.route('**/*', _route)
        page = ctx.new_page()
        try:
            for name, shot in [('index.html', 'front'), (API_PAGE, 'api'), ('cli_reference.html', 'cli')]:
                page.goto(f'{served}/{name}', wait_until='networkidle')
                page.evaluate("() => document.querySelectorAll('article img').forEach(i => { i.loading = 'eager'; })")
                page.wait_for_load_state('networkidle'); page.wait_for_timeout(300)
                report[shot] = page.evaluate("""() => ({
                    sidebar: [...document.querySelectorAll('.md-sidebar--primary .md-nav__link')].filter(a => a.offsetParent).length,
                    toc: document.querySelectorAll('.md-sidebar--secondary .md-nav__link').length,
                    maths: [...document.querySelectorAll('math')].filter(m => { const r = m.getBoundingClientRect(); return r.width > 5 && r.height > 5; }).length,
                    imgs: [...document.querySelectorAll('article img')].map(i => i.complete && i.naturalWidth > 0),
                    title: document.title })""")
                page.screenshot(path=str(ARTIFACTS/f'{shot}.png'), full_page=shot != 'api')
            page.goto(f'{served}/index.html', wait_until='networkidle')   # search: the worker answers from the shipped index
            page.keyboard.press('/'); page.keyboard.type('generate_market')
            page.wait_for_selector('.md-search-result__item', timeout=20000)
            report['search'] = page.locator('.md-search-result__item').count()
            page.screenshot(path=str(ARTIFACTS/'search.png'))
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'failure.png'), full_page=True)
            raise
        finally: b.close()
    (ARTIFACTS/'report.txt').write_text(f"{report}\n{len(requests)} requests, outside: {outside}\n")
    assert not outside, f"the site tried to reach beyond loopback: {outside[:5]}"
    for shot in ('front', 'api', 'cli'):
        assert report[shot]['sidebar'] >= 5, (shot, report[shot])
    assert report['api']['toc'] >= 5 and report['api']['maths'] >= 5, report['api']
    assert any(report['front']['imgs'] + report['api']['imgs']), report
    assert report['search'] >= 1
