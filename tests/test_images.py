"""Every image the README and the chapters show exists, and every file in figures/ has a maker.

The chapters display their figures as cell outputs and save them to ``figures/`` through library
functions (``save_figure(fig, name)``); the README embeds a few of those files. A renamed figure, or
one only some machine ever generated, breaks the README on GitHub and the HTML book: these tests
catch it from a fresh clone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

# ![alt](path "title") and <img src="path">
IMAGE_RE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img[^>]*\bsrc=[\"']([^\"']+)[\"']")
# a figure name: name="07_cost" in a chapter's code, or a library function's default name
NAME_RE = re.compile(r"\bname\s*(?::\s*[\w |]+)?=\s*[\"']((?:\d\d|paper)_[a-z0-9_]+)[\"']")


def image_links(text: str) -> list[str]:
    return [a or b for a, b in IMAGE_RE.findall(text)]


def markdown_sources() -> dict[str, tuple[Path, str]]:
    """README plus every markdown cell of every chapter: label -> (base folder, text)."""
    out = {"README.md": (ROOT, (ROOT / "README.md").read_text(encoding="utf-8"))}
    for path in CHAPTERS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        out[path.name] = (path.parent, text)
    return out


def test_image_regex_finds_both_syntaxes():
    text = '![a](../figures/x.png) and ![b](y.png "t") and <img src="figures/z.png" width=300>'
    assert image_links(text) == ["../figures/x.png", "y.png", "figures/z.png"]


@pytest.mark.parametrize("label", list(markdown_sources()))
def test_every_referenced_image_exists(label):
    base, text = markdown_sources()[label]
    links = [u for u in image_links(text) if not u.startswith(("http://", "https://", "data:", "attachment:"))]
    missing = [u for u in links if not (base / u).resolve().is_file()]
    assert not missing, f"{label} shows images that do not exist: {missing}"


def test_readme_shows_figures_from_the_book():
    links = image_links((ROOT / "README.md").read_text(encoding="utf-8"))
    shown = [u for u in links if u.startswith("figures/")]
    assert 2 <= len(shown) <= 4, f"the README should show two or three of the book's figures, shows {shown}"


def figure_names_in_code() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "mobilevit_edu").rglob("*.py")):
        names |= set(NAME_RE.findall(path.read_text(encoding="utf-8")))
    for path in CHAPTERS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for c in cells:
            if c["cell_type"] == "code":
                names |= set(NAME_RE.findall("".join(c["source"])))
    return names


def test_every_figure_file_has_a_maker():
    """No orphans in figures/: each PNG is named in a chapter's code or a library default, so
    ``python -m mobilevit_edu.book figures`` regenerates it."""
    names = figure_names_in_code()
    orphans = sorted(p.stem for p in FIGURES.glob("*.png") if p.stem not in names)
    assert not orphans, f"figures/ holds files no chapter or library function makes: {orphans}"


def test_every_figure_a_chapter_names_is_committed():
    named_in_chapters: set[str] = set()
    for path in CHAPTERS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        named_in_chapters |= {n for c in cells if c["cell_type"] == "code"
                              for n in NAME_RE.findall("".join(c["source"]))}
    missing = sorted(n for n in named_in_chapters if not (FIGURES / f"{n}.png").is_file())
    assert not missing, f"chapters save these figures but figures/ lacks them (run the chapter): {missing}"
