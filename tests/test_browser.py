"""The rendered HTML book in a real browser: headless Chromium driven by selenium.

Renders the book (and a small synthetic two-chapter book), opens the pages, takes screenshots
(kept in tmp_path and in _build/screenshots/), and checks that pages are not blank, that every
image loads, and that the previous/next links navigate between chapters.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mobilevit_edu.book.manifest import Book, load_book
from mobilevit_edu.book.site import build_html

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGE_LOAD_TIMEOUT_S = 30

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"Chromium not found at {CHROMIUM} (or chromedriver at {CHROMEDRIVER}); install Debian's "
        "chromium and chromium-driver, .ci/run does",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[book]')")
from PIL import Image  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    drv.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def real_site(tmp_path_factory) -> tuple[Book, Path]:
    book = load_book(ROOT)
    index = build_html(book, tmp_path_factory.mktemp("html"))
    return book, index


def _png(color: tuple[int, int, int], size: tuple[int, int] = (120, 80)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (size[0] // 4, size[1] // 4))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory) -> Path:
    """Two chapters with an output image and a Markdown image from ../figures/."""
    root = tmp_path_factory.mktemp("synthetic-book")
    (root / "chapters").mkdir()
    (root / "figures").mkdir()
    (root / "figures" / "square.png").write_bytes(_png((0, 114, 178)))
    toml = '[book]\ntitle = "Browser Book"\nauthors = ["T"]\ndescription = "Two chapters."\nlanguage = "en"\n'
    for i, slug in enumerate(["alpha", "beta"]):
        toml += (f'\n[[chapters]]\npath = "chapters/0{i}_{slug}.ipynb"\ntitle = "Chapter {slug}"\n'
                 'paper = ["Fig. 1"]\nmodules = []\nbudget_ci = 10\n')
        out = new_output("display_data", data={
            "image/png": base64.b64encode(_png((213, 94, 0))).decode(), "text/plain": "<Figure>"})
        cell = new_code_cell("# NBVAL_CHECK_OUTPUT\nshow()", execution_count=1, outputs=[out])
        nb = new_notebook(cells=[
            new_markdown_cell(f"# Chapter {slug}\n\n" + "Some text to read. " * 40
                              + "\n\n![a square](../figures/square.png)"),
            cell,
        ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(nb, root / "chapters" / f"0{i}_{slug}.ipynb")
    (root / "book.toml").write_text(toml, encoding="utf-8")
    return build_html(load_book(root), root / "_build" / "html")


def _open(driver, page: Path) -> None:
    driver.get(page.as_uri())
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _screenshot(driver, tmp_path: Path, name: str) -> Image.Image:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / path.name)
    img = Image.open(path).convert("RGB")
    extrema = img.getextrema()  # ((min, max) per channel)
    assert any(lo != hi for lo, hi in extrema), f"screenshot {name} is a single colour"
    return img


def _assert_not_blank(driver, min_chars: int) -> None:
    text = driver.find_element(By.TAG_NAME, "body").text
    assert len(text.strip()) > min_chars, f"page body has only {len(text.strip())} characters"


def _assert_images_load(driver, min_images: int) -> None:
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
    )
    sizes = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 60), i.naturalWidth])"
    )
    assert len(sizes) >= min_images, f"expected at least {min_images} images, found {len(sizes)}"
    broken = [src for src, width in sizes if not width]
    assert not broken, f"images that did not load: {broken}"


def test_index_page(driver, real_site, tmp_path):
    book, index = real_site
    _open(driver, index)
    assert driver.title == book.title
    _assert_not_blank(driver, 300)
    rows = driver.find_elements(By.CSS_SELECTOR, "#toc tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [c.tag for c in book.chapters]
    _screenshot(driver, tmp_path, "index")


def test_first_chapter_page(driver, real_site, tmp_path):
    book, index = real_site
    first = book.chapters[0]
    _open(driver, index.parent / f"{first.name}.html")
    assert first.title in driver.title
    _assert_not_blank(driver, 1000)
    _assert_images_load(driver, min_images=1)  # chapter 00 shows a plot
    _screenshot(driver, tmp_path, first.name)
    driver.find_element(By.ID, "index-link").click()
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(lambda d: d.current_url.endswith("/index.html"))


def test_next_link_in_the_real_book(driver, real_site, tmp_path):
    book, index = real_site
    pages = [c for c in book.chapters if book.notebook(c).is_file()]
    if len(pages) < 2:
        pytest.skip("the book has a single chapter so far; the synthetic book tests navigation")
    _open(driver, index.parent / f"{pages[0].name}.html")
    driver.find_element(By.ID, "next-link").click()
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(lambda d: d.current_url.endswith(f"/{pages[1].name}.html"))
    assert pages[1].title in driver.title
    _assert_not_blank(driver, 300)
    _screenshot(driver, tmp_path, pages[1].name)


def test_navigation_and_figures_in_a_synthetic_book(driver, synthetic_site, tmp_path):
    _open(driver, synthetic_site.parent / "00_alpha.html")
    assert driver.title.startswith("00 Chapter alpha")
    _assert_images_load(driver, min_images=2)  # the output image and ../figures/square.png
    _screenshot(driver, tmp_path, "synthetic-00_alpha")
    driver.find_element(By.ID, "next-link").click()
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(lambda d: d.current_url.endswith("/01_beta.html"))
    assert driver.title.startswith("01 Chapter beta")
    assert not driver.find_elements(By.ID, "next-link")  # the last chapter
    driver.find_element(By.ID, "prev-link").click()
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(lambda d: d.current_url.endswith("/00_alpha.html"))


def test_formulas_render_offline(driver, real_site, tmp_path):
    """MathJax is copied beside the pages, so the paper's equations typeset without a network."""
    book, index = real_site
    with_math = [c for c in book.chapters if book.notebook(c).is_file()
                 and "$" in book.notebook(c).read_text(encoding="utf-8")]
    if not with_math:
        pytest.skip("no chapter has a formula yet")
    _open(driver, index.parent / f"{with_math[0].name}.html")
    WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(
        lambda d: d.execute_script(
            "return document.querySelectorAll('.MathJax, .MathJax_Display, mjx-container').length"
        ) > 0
    )
    assert (index.parent / "mathjax" / "MathJax.js").is_file()
