"""The docs site builds offline and reads well in a real browser (headless Chromium).

Builds the site with `tools/build_docs.py --no-executed`: from the notebooks alone, so the
test needs nothing that another test or a `reproduce` run writes (show_doc entries are
computed by the build; experiment pages show the committed figures/). Then opens every page:
no page requests an outside host or shows Quarto or notebook leftovers, the IMM page typesets
its equations with the site's own MathJax, and the Table 3 page shows its table and a figure.
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
LEAKS = {"Quarto link attributes": re.compile(r"\{target="), "a hide-input tag": re.compile(r"hide-input"),
         "an In/Out prompt": re.compile(r"\b(In|Out)\s*\[\s*\d*\s*\]:")}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--site-dir", str(out), "--no-executed"],
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
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside = []
    page.on("request", lambda req: outside.append(req.url) if req.url.startswith("http") else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, outside


def _pages(site: Path) -> list[Path]:
    "The notebook pages of the site (mkdocs writes <page>/index.html), home first."
    return [site / "index.html"] + sorted(p for p in site.rglob("*/index.html") if not {"assets", "search"} & set(p.parts))


def test_home_page(site, browser):
    page, outside = _open(browser, site / "index.html")
    assert "clinical-bert" in page.title()
    body = page.inner_text("body")
    assert "pip install -e" in body and "pytest" in body
    assert page.locator("nav a").count() > 3, "navigation is missing"
    assert outside == [], f"the page requested outside hosts: {outside}"
    page.close()


def test_every_notebook_has_a_clean_page(site, browser):
    nbs = [p for p in (ROOT / "nbs").rglob("*.ipynb") if p.name != "index.ipynb" and not p.name.startswith("_")
           and ".ipynb_checkpoints" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in nbs if not (site / p.relative_to(ROOT / "nbs")).with_suffix("").joinpath("index.html").exists()]
    assert not missing, f"notebooks without a page: {missing}"
    faults = []
    for path in _pages(site):
        page, outside = _open(browser, path)
        text = page.inner_text("body")
        rel = path.relative_to(site)
        faults += [f"{rel}: shows {what}" for what, pat in LEAKS.items() if pat.search(text)]
        faults += [f"{rel}: requested {u}" for u in outside]
        wide = page.eval_on_selector_all(".jupyter-wrapper pre", "ps => ps.filter(p => p.scrollWidth > p.clientWidth + 1).length")
        if wide:
            faults.append(f"{rel}: {wide} code block(s) scroll sideways")
        if re.search(r"torch\.set_num_threads\(1\)\s+# tiny", text):
            faults.append(f"{rel}: shows the thread-count set-up of the checks")
        page.close()
    assert not faults, "\n".join(faults)


def test_imm_page_typesets_its_equations(site, browser):
    page, outside = _open(browser, site / "04_imm" / "index.html")
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.Queue", timeout=20_000)
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")  # typesetting finished
    assert page.locator(".MathJax_Display").count() >= 3, "no display equation was typeset on the IMM page"
    assert page.locator("span.MathJax").count() >= 20
    text = page.inner_text("body")
    assert "Math Processing Error" not in text
    assert "alpha_{l,i}" not in text and "$$" not in text, "equations left as plain text"
    assert "rsa" in text and "imm_loss" in text
    assert outside == [], f"the page requested outside hosts: {outside}"
    page.close()


def test_api_page_has_signature_table(site, browser):
    page, outside = _open(browser, site / "10a_reproduce" / "index.html")
    text = page.inner_text("body")
    assert "RunSpec" in text and "reproduce" in text
    assert page.locator("h3", has_text="RunSpec").count() == 1, "no show_doc entry for RunSpec"
    signatures = page.locator("pre", has_text="def RunSpec(")
    assert signatures.count() >= 1 and "preset" in signatures.first.inner_text(), "signature missing"
    source = page.locator("a.source-link").first
    assert source.inner_text() == "source" and "/clinical_bert/" in source.get_attribute("href")
    assert outside == []
    page.close()


def test_table3_page_shows_committed_results(site, browser):
    page, outside = _open(browser, site / "experiments" / "04_table3_rd" / "index.html")
    assert page.locator("h2", has_text="Results").count() == 1
    table = page.locator("table", has_text="auc_mean").first
    assert table.locator("tr", has_text="Cardiomegaly").count() >= 1 and table.locator("tr").count() >= 15, \
        "the committed Table 3 is not on its page"
    assert "auc_mean" in table.inner_text()
    assert table.evaluate("t => t.closest('.md-typeset__scrollwrap, .jp-RenderedMarkdown').scrollWidth <= t.closest('.md-typeset__scrollwrap, .jp-RenderedMarkdown').clientWidth + 1"), \
        "the Table 3 table does not fit the page width"
    widths = page.eval_on_selector_all(".jupyter-wrapper img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and min(widths) > 50, f"no figure rendered on the Table 3 page: widths {widths}"
    assert outside == []
    page.close()
