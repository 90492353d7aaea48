"""The docs site builds offline and renders in a real browser (headless Chromium).

Builds the site with tools/build_docs.py from the executed notebook copies that
tests/test_notebooks.py leaves in _proc/executed/ (this file sorts after it, so a full
`pytest` run has them), then opens the home page, an API page and a page with a figure.
Needs Debian's `chromium` (.ci/run installs it).
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--site-dir", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; the docs-site test needs it: apt-get install -y chromium (README, Install)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page()
    outside = []
    page.on("request", lambda req: outside.append(req.url) if req.url.startswith("http") else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, outside


def test_home_page(site, browser):
    page, outside = _open(browser, site / "index.html")
    assert "clinical-bert" in page.title()
    body = page.inner_text("body")
    assert "pip install -e" in body and "pytest" in body
    assert page.locator("nav a").count() > 3, "navigation is missing"
    assert outside == [], f"the page requested outside hosts: {outside}"
    page.close()


def test_api_page_has_signature_table(site, browser):
    page, outside = _open(browser, site / "10a_reproduce" / "index.html")
    text = page.inner_text("body")
    assert "RunSpec" in text and "reproduce" in text
    assert page.locator("h3", has_text="RunSpec").count() == 1, "no show_doc entry for RunSpec"
    signatures = page.locator("pre", has_text="def RunSpec(")
    assert signatures.count() >= 1 and "preset" in signatures.first.inner_text(), "signature missing"
    assert outside == []
    page.close()


def test_page_with_figure(site, browser):
    pages = [p for p in site.rglob("index.html") if re.search(r'<img[^>]+src="data:image/png', p.read_text(errors="ignore"))]
    assert pages, "no page with a figure: run the notebook tests first (pytest tests/test_notebooks.py)"
    page, outside = _open(browser, pages[0])
    widths = page.eval_on_selector_all("img[src^='data:image/png']", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and min(widths) > 50, f"figures did not render on {pages[0]}: widths {widths}"
    assert outside == []
    page.close()
