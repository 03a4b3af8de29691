"""Tests of mobilevit_edu.book: the manifest, check, profiles, setup(), run and html."""

from __future__ import annotations

import json
import os
import random
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mobilevit_edu.book import find_root, module_map_markdown, setup, toc_markdown
from mobilevit_edu.book.cli import main
from mobilevit_edu.book.figures import regenerate_figures
from mobilevit_edu.book.manifest import BookError, check_book, load_book, module_file, read_manifest
from mobilevit_edu.book.profile import PROFILE_ENV, Profile, get_profile
from mobilevit_edu.book.runner import run_chapters
from mobilevit_edu.book.site import build_html

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_TITLES = [
    "How to use this book",
    "Why a light-weight ViT",
    "Convolution blocks and the MobileNetV2 inverted residual",
    "Unfold and fold: an image as a sequence of patches",
    "Multi-head self-attention and the transformer encoder",
    "The MobileViT block",
    "The full network: XXS, XS and S",
]


# ---------------------------------------------------------------- helpers: a synthetic book


def notebook(*sources: str, outputs: dict[int, list] | None = None, counts: dict[int, int] | None = None):
    """A notebook with the given code cells (markdown when a source starts with '#md ')."""
    cells = []
    for i, src in enumerate(sources):
        if src.startswith("#md "):
            cells.append(new_markdown_cell(src[4:]))
            continue
        cell = new_code_cell(src)
        if outputs and i in outputs:
            cell.outputs = outputs[i]
        if counts and i in counts:
            cell.execution_count = counts[i]
        cells.append(cell)
    return new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


GOOD_CELLS = (
    "from mobilevit_edu.book import setup\nP = setup(seed=0)",
    "# NBVAL_CHECK_OUTPUT\nprint(1 + 1)",
)


def chapter_toml(path: str, title: str, budget: int = 30, modules: str = "[]") -> str:
    return textwrap.dedent(
        f"""
        [[chapters]]
        path = "{path}"
        title = "{title}"
        paper = ["§1"]
        modules = {modules}
        budget_ci = {budget}
        """
    )


def make_book(root: Path, chapters: dict[str, object], budgets: dict[str, int] | None = None) -> Path:
    """Write book.toml listing ``chapters`` (path -> notebook, or None to list it without a file)."""
    (root / "chapters").mkdir(parents=True, exist_ok=True)
    toml = '[book]\ntitle = "Test Book"\nauthors = ["A. Author"]\ndescription = "A book for tests."\nlanguage = "en"\n'
    for i, (path, nb) in enumerate(chapters.items()):
        toml += chapter_toml(path, f"Chapter {i}", (budgets or {}).get(path, 30))
        if nb is not None:
            nbformat.write(nb, root / path)
    (root / "book.toml").write_text(toml, encoding="utf-8")
    return root / "book.toml"


# ---------------------------------------------------------------- the real manifest


def test_real_manifest_order_titles_budgets():
    book = load_book(ROOT)
    assert book.title == "MobileViT from Scratch"
    assert book.language == "en"
    # the model chapters open the book; later chapters follow in increasing number
    assert [c.title for c in book.chapters[:7]] == EXPECTED_TITLES
    numbers = [c.number for c in book.chapters]
    assert numbers[:7] == list(range(7)) and numbers == sorted(set(numbers))
    assert all(c.path == f"chapters/{c.number:02d}_{c.slug}.ipynb" for c in book.chapters)
    assert book.chapters[0].path == "chapters/00_how_to_use.ipynb"
    assert book.chapters[3].slug == "unfold_fold" and book.chapters[3].name == "03_unfold_fold"
    for c in book.chapters:
        assert isinstance(c.budget_ci, int) and not isinstance(c.budget_ci, bool) and c.budget_ci > 0
        assert all(isinstance(p, str) for p in c.paper)
        assert c.modules, f"{c.path} lists no module"
    assert book.chapters[6].modules == [
        "models.mobilevit", "models.baselines", "models.registry", "models.checkpoints",
        "evaluate.origins", "evaluate.classify", "evaluate.cli", "plots.network",
    ]


def test_real_manifest_modules_exist():
    """Every `modules =` entry names a module file or package of the library."""
    book = load_book(ROOT)
    assert [p for p in check_book(book) if ".modules" in p] == []
    assert module_file(ROOT, "nn.patches") == ROOT / "mobilevit_edu" / "nn" / "patches.py"
    assert module_file(ROOT, "detection") == ROOT / "mobilevit_edu" / "detection" / "__init__.py"


def test_real_chapter_00_passes_check():
    book = load_book(ROOT)
    problems = [p for p in check_book(book) if "00_how_to_use" in p]
    assert problems == []


def test_find_root_from_a_subdirectory(monkeypatch):
    monkeypatch.chdir(ROOT / "chapters")
    assert find_root() == ROOT


# ---------------------------------------------------------------- manifest errors


def test_malformed_toml_names_file_and_line(tmp_path):
    f = tmp_path / "book.toml"
    f.write_text('[book]\ntitle = "x"\nauthors = [\n  "unterminated\n', encoding="utf-8")
    with pytest.raises(BookError) as err:
        read_manifest(f)
    msg = str(err.value)
    assert str(f) in msg and "invalid TOML" in msg and "line 4" in msg


def test_missing_book_table(tmp_path):
    f = tmp_path / "book.toml"
    f.write_text(chapter_toml("chapters/00_a.ipynb", "A"), encoding="utf-8")
    with pytest.raises(BookError, match=r"book\.toml: book: missing table \[book\]"):
        read_manifest(f)


def test_missing_key_is_named(tmp_path):
    f = make_book(tmp_path, {"chapters/00_a.ipynb": None})
    f.write_text(f.read_text().replace("budget_ci = 30\n", ""), encoding="utf-8")
    with pytest.raises(BookError) as err:
        read_manifest(f)
    assert "chapters[0].budget_ci" in str(err.value) and "missing key" in str(err.value)


@pytest.mark.parametrize("bad", ['"60"', "true", "1.5"])
def test_wrong_type_is_named(tmp_path, bad):
    f = make_book(tmp_path, {"chapters/00_a.ipynb": None})
    f.write_text(f.read_text().replace("budget_ci = 30", f"budget_ci = {bad}"), encoding="utf-8")
    with pytest.raises(BookError, match=r"chapters\[0\]\.budget_ci: expected int"):
        read_manifest(f)


def test_duplicate_paths(tmp_path):
    f = make_book(tmp_path, {"chapters/00_a.ipynb": None})
    f.write_text(f.read_text() + chapter_toml("chapters/00_a.ipynb", "Again"), encoding="utf-8")
    with pytest.raises(BookError, match=r"chapters\[1\]\.path: duplicate path"):
        read_manifest(f)


def test_unknown_key_and_bad_path(tmp_path):
    f = make_book(tmp_path, {"chapters/00_a.ipynb": None})
    text = f.read_text()
    f.write_text(text.replace("budget_ci = 30", "budget = 30"), encoding="utf-8")
    with pytest.raises(BookError, match=r"chapters\[0\]\.budget"):
        read_manifest(f)
    f.write_text(text.replace("chapters/00_a.ipynb", "chapters/intro.ipynb"), encoding="utf-8")
    with pytest.raises(BookError, match=r"chapters\[0\]\.path: .*NN_slug"):
        read_manifest(f)


def test_listed_notebook_missing_names_the_file(tmp_path):
    nb = notebook(*GOOD_CELLS)
    make_book(tmp_path, {"chapters/00_a.ipynb": nb, "chapters/01_b.ipynb": None})
    assert len(load_book(tmp_path).chapters) == 2  # reading the manifest alone is fine
    with pytest.raises(BookError, match=r"chapters\[1\]\.path: notebook chapters/01_b\.ipynb does not exist"):
        load_book(tmp_path, require_notebooks=True)
    assert any("chapters/01_b.ipynb does not exist" in p for p in check_book(load_book(tmp_path)))


# ---------------------------------------------------------------- check


def test_check_clean_book_has_no_problems(tmp_path):
    make_book(tmp_path, {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    assert check_book(load_book(tmp_path)) == []


def test_check_finds_unlisted_notebook(tmp_path):
    make_book(tmp_path, {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    nbformat.write(notebook(*GOOD_CELLS), tmp_path / "chapters" / "07_stray.ipynb")
    problems = check_book(load_book(tmp_path))
    assert problems == ["chapters/07_stray.ipynb: (file): not listed in book.toml [[chapters]]"]


def test_check_finds_outputs_without_execution_count(tmp_path):
    out = [new_output("stream", name="stdout", text="2\n")]
    nb = notebook(*GOOD_CELLS, outputs={1: out})  # outputs, execution_count None
    make_book(tmp_path, {"chapters/00_a.ipynb": nb})
    problems = check_book(load_book(tmp_path))
    assert len(problems) == 1 and "chapters/00_a.ipynb: cells[1].execution_count" in problems[0]


def test_check_finds_missing_nbval_mark(tmp_path):
    nb = notebook(GOOD_CELLS[0], "print('no mark')", "x = 1  # NBVAL_CHECK_OUTPUT is not a line of its own")
    make_book(tmp_path, {"chapters/00_a.ipynb": nb})
    problems = check_book(load_book(tmp_path))
    assert problems == ["chapters/00_a.ipynb: cells: no code cell has a line '# NBVAL_CHECK_OUTPUT'"]


def test_check_finds_bad_kernelspec_and_missing_setup(tmp_path):
    nb = notebook("# NBVAL_CHECK_OUTPUT\nprint(1)")
    nb.metadata["kernelspec"] = {"name": "python2", "display_name": "Py2", "language": "python"}
    make_book(tmp_path, {"chapters/00_a.ipynb": nb})
    problems = check_book(load_book(tmp_path))
    assert any("metadata.kernelspec.name" in p and "python2" in p for p in problems)
    assert any("cells[0].source: the first code cell must call setup()" in p for p in problems)


def test_check_finds_invalid_json(tmp_path):
    make_book(tmp_path, {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    (tmp_path / "chapters" / "00_a.ipynb").write_text("{not json", encoding="utf-8")
    problems = check_book(load_book(tmp_path))
    assert len(problems) == 1 and problems[0].startswith("chapters/00_a.ipynb: (file): not a valid notebook")


def test_check_modules_dotted_file_or_package(tmp_path):
    lib = tmp_path / "mobilevit_edu"
    (lib / "nn").mkdir(parents=True)
    (lib / "nn" / "layers.py").write_text('"""x"""\n')
    (lib / "detection").mkdir()
    (lib / "detection" / "__init__.py").write_text('"""x"""\n')
    (lib / "empty").mkdir()  # a folder without __init__.py is not a package
    f = make_book(tmp_path, {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    f.write_text(f.read_text().replace(
        "modules = []", 'modules = ["nn.layers", "detection", "nn.gone", "empty", "nn/layers.py"]'))
    problems = check_book(load_book(tmp_path))
    assert problems == [
        "book.toml: chapters[0].modules: mobilevit_edu.nn.gone: neither mobilevit_edu/nn/gone.py "
        "nor mobilevit_edu/nn/gone/__init__.py exists",
        "book.toml: chapters[0].modules: mobilevit_edu.empty: neither mobilevit_edu/empty.py "
        "nor mobilevit_edu/empty/__init__.py exists",
        "book.toml: chapters[0].modules: 'nn/layers.py' is not a dotted module name like 'nn.layers'",
    ]


def test_cli_check_exit_codes(tmp_path, capsys):
    make_book(tmp_path, {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    assert main(["--root", str(tmp_path), "check"]) == 0
    assert "OK: 1 chapters" in capsys.readouterr().out
    (tmp_path / "chapters" / "01_extra.ipynb").write_text(json.dumps(notebook(*GOOD_CELLS)))
    assert main(["--root", str(tmp_path), "check"]) == 1
    assert "01_extra.ipynb" in capsys.readouterr().out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


def test_cli_mistakes_answer_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    """A user's mistake (unknown chapter, no book.toml, bad profile, bad option) gets one clear
    line on stderr and exit status 2, before any chapter runs."""
    make_book(tmp_path / "book", {"chapters/00_a.ipynb": notebook(*GOOD_CELLS)})
    root = str(tmp_path / "book")
    for command in (["run", "--profile", "ci", "99"], ["figures", "nope"]):
        assert main(["--root", root, *command]) == 2
        err = _one_error_line(capsys)
        assert "no chapter matches" in err and "known: 00_a" in err
    assert not (tmp_path / "book" / "_build").exists()  # nothing ran
    (tmp_path / "empty").mkdir()
    assert main(["--root", str(tmp_path / "empty"), "check"]) == 2
    assert "book.toml: not found in" in _one_error_line(capsys)
    assert main(["--root", root, "run", "--profile", "fast"]) == 2
    assert "invalid choice: 'fast'" in _one_error_line(capsys)
    monkeypatch.setenv(PROFILE_ENV, "fast")
    assert main(["--root", root, "run"]) == 2
    assert "unknown profile 'fast'" in _one_error_line(capsys)
    monkeypatch.delenv(PROFILE_ENV)
    assert main(["--root", root, "run", "--timeout-scale", "0"]) == 2
    assert "--timeout-scale must be positive" in _one_error_line(capsys)
    assert main(["--root", root, "publish"]) == 2
    assert "invalid choice: 'publish'" in _one_error_line(capsys)


def test_cli_module_exit_status(tmp_path):
    """`python -m mobilevit_edu.book`: the real process exits 2 with one line, no traceback."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "mobilevit_edu.book", "--root", str(tmp_path), "check"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: book.toml: not found")


def test_book_imports_no_matplotlib_and_plots_no_book():
    """The book's tooling imports matplotlib only inside setup(); the plots of the paper's numbers
    and of the report never import the book's tooling (the plotting layer sits below it)."""
    import subprocess

    code = (
        "import sys\n"
        "import mobilevit_edu.book, mobilevit_edu.book.cli, mobilevit_edu.book.report\n"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'book imported matplotlib'\n"
        "for m in [m for m in sys.modules if m.startswith('mobilevit_edu.book')]: del sys.modules[m]\n"
        "import mobilevit_edu.plots.paper, mobilevit_edu.plots.report\n"
        "assert not [m for m in sys.modules if m.startswith('mobilevit_edu.book')], 'plots imported book'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_find_chapter_by_number_slug_path(tmp_path):
    make_book(tmp_path, {"chapters/00_a.ipynb": None, "chapters/03_unfold_fold.ipynb": None})
    book = load_book(tmp_path)
    for key in ("3", "03", "unfold_fold", "03_unfold_fold", "chapters/03_unfold_fold.ipynb", "03_unfold_fold.ipynb"):
        assert book.find(key).number == 3, key
    with pytest.raises(BookError, match="no chapter matches '9'"):
        book.find("9")


# ---------------------------------------------------------------- markdown helpers


def test_toc_and_module_map_markdown():
    book = load_book(ROOT)
    toc = toc_markdown(book).splitlines()
    assert len(toc) == 2 + len(book.chapters)
    assert toc[2] == "| 00 | [How to use this book](00_how_to_use.ipynb) | — | 60 s |"
    assert "| 05 | [The MobileViT block](05_mobilevit_block.ipynb) | §3.1, Fig. 1b, Fig. 14 | 90 s |" in toc
    modmap = module_map_markdown(book)
    assert "| `mobilevit_edu.nn.patches` | [03 Unfold and fold" in modmap
    # one row per module (a module several chapters use lists them all in its row)
    assert modmap.count("\n") == 1 + len({m for c in book.chapters for m in c.modules})


# ---------------------------------------------------------------- profiles and setup()


def test_profile_from_env_and_pick(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    full = get_profile()
    assert full.name == "full" and full.pick(full=100, ci=3) == 100
    monkeypatch.setenv(PROFILE_ENV, "ci")
    ci = get_profile(seed=7)
    assert (ci.name, ci.seed) == ("ci", 7) and ci.pick(full=100, ci=3) == 3
    assert set(ci.budgets) == set(full.budgets) >= {"images", "steps", "repeats", "epochs"}
    assert all(ci.budgets[k] < full.budgets[k] for k in ci.budgets if full.budgets[k] > 1)
    monkeypatch.setenv(PROFILE_ENV, "fast")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile()


def test_setup_is_reproducible_and_styles_plots(monkeypatch, capsys):
    import matplotlib as mpl

    monkeypatch.setenv(PROFILE_ENV, "ci")
    draws = []
    for _ in range(2):
        p = setup(seed=123)
        draws.append((torch.randn(5), np.random.rand(3), random.random()))
        torch.randn(7), np.random.rand(2)  # advance the generators between the two calls
    assert isinstance(p, Profile) and p.name == "ci" and p.seed == 123
    assert torch.equal(draws[0][0], draws[1][0])
    assert np.array_equal(draws[0][1], draws[1][1]) and draws[0][2] == draws[1][2]
    assert torch.are_deterministic_algorithms_enabled()
    assert mpl.rcParams["figure.dpi"] == 110 and mpl.rcParams["savefig.dpi"] == 150
    assert mpl.rcParams["axes.grid"] is True
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("profile=ci seed=123 torch=") and "threads=" in line
    setup(seed=124)
    assert not torch.equal(torch.randn(5), draws[0][0])


# ---------------------------------------------------------------- run


def test_run_executes_writes_and_reports_errors(tmp_path, capsys):
    probe = (
        "import os, sys\n"
        "print(sys.executable)\n"
        "print(os.environ['MOBILEVIT_EDU_PROFILE'])\n"
        "print(os.getcwd())"
    )
    ok = notebook("x = 40 + 2", probe)
    bad = notebook("print('before')", "1 / 0", "print('never')")
    make_book(tmp_path, {"chapters/00_ok.ipynb": ok, "chapters/01_bad.ipynb": bad, "chapters/02_gone.ipynb": None})

    rc = main(["--root", str(tmp_path), "run", "--profile", "ci", "--write"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {line.split()[0]: line for line in out.splitlines() if line[:2].isdigit()}
    assert rows["00_ok"].split()[1:3] and rows["00_ok"].split()[-1] == "ok"
    assert float(rows["00_ok"].split()[2]) == 30  # budget_ci * 1 under ci
    assert " error" in rows["01_bad"] and "ZeroDivisionError" in rows["01_bad"]
    assert "missing" in rows["02_gone"]

    executed = nbformat.read(tmp_path / "_build" / "executed" / "00_ok.ipynb", as_version=4)
    lines = executed.cells[1].outputs[0]["text"].splitlines()
    assert lines[0] == sys.executable  # the kernel runs in this interpreter's environment
    assert lines[1] == "ci"
    assert Path(lines[2]) == (tmp_path / "chapters").resolve()
    # --write stores outputs and real execution counts back into chapters/ ...
    written = nbformat.read(tmp_path / "chapters" / "00_ok.ipynb", as_version=4)
    assert [c.execution_count for c in written.cells] == [1, 2] and written.cells[1].outputs
    # ... but never for a chapter that failed; its executed copy shows the error.
    assert all(not c.outputs for c in nbformat.read(tmp_path / "chapters" / "01_bad.ipynb", as_version=4).cells)
    failed = nbformat.read(tmp_path / "_build" / "executed" / "01_bad.ipynb", as_version=4)
    assert failed.cells[1].outputs[0]["ename"] == "ZeroDivisionError" and not failed.cells[2].outputs


def test_run_budgets_over_and_stopped(tmp_path):
    slow = notebook("import time\ntime.sleep(2.3)")
    stuck = notebook("import time\ntime.sleep(60)")
    make_book(
        tmp_path,
        {"chapters/00_slow.ipynb": slow, "chapters/01_stuck.ipynb": stuck},
        budgets={"chapters/00_slow.ipynb": 1, "chapters/01_stuck.ipynb": 1},
    )
    # budget = budget_ci (1 s) * 1 (ci) * timeout_scale (2) = 2 s; stopped at 2x budget = 4 s
    results = run_chapters(load_book(tmp_path), profile="ci", timeout_scale=2, progress=False)
    assert [r.status for r in results] == ["over budget", "over budget (stopped)"]
    assert 2.3 <= results[0].seconds < 4.0 and results[0].budget == 2
    assert 4.0 <= results[1].seconds < 15  # stopped, not after 60 s
    assert not any(r.ok for r in results)


# ---------------------------------------------------------------- html (without a browser)


def anchors(page: str) -> dict[str, dict[str, str]]:
    """The <a> elements of an HTML page that have an id: id -> {href, rel}."""
    from html.parser import HTMLParser

    found: dict[str, dict[str, str]] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "a" and "id" in a:
                found[a["id"]] = {k: a[k] for k in ("href", "rel") if k in a}

    Parser().feed(page)
    return found



def test_html_pages_navigation_and_figures(tmp_path):
    from PIL import Image

    (tmp_path / "figures").mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "figures" / "dot.png")
    first = notebook(
        "#md # First\nA figure: ![dot](../figures/dot.png) and [the next chapter](02_third.ipynb).",
        *GOOD_CELLS,
    )
    third = notebook("#md # Third", *GOOD_CELLS)
    make_book(tmp_path, {"chapters/00_first.ipynb": first, "chapters/01_second.ipynb": None,
                         "chapters/02_third.ipynb": third})
    index = build_html(load_book(tmp_path), tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    text = index.read_text()
    assert "<h1>Test Book</h1>" in text and "A book for tests." in text
    assert 'href="00_first.html"' in text and "Chapter 1 (not written yet)" in text
    page0 = (tmp_path / "site" / "00_first.html").read_text()
    assert 'src="figures/dot.png"' in page0 and (tmp_path / "site" / "figures" / "dot.png").is_file()
    assert 'href="02_third.html"' in page0  # notebook links become page links
    links0 = anchors(page0)
    assert links0["next-link"] == {"href": "02_third.html", "rel": "next"}  # the missing chapter is skipped
    assert links0["index-link"]["href"] == "index.html" and "prev-link" not in links0
    page2 = (tmp_path / "site" / "02_third.html").read_text()
    assert anchors(page2)["prev-link"] == {"href": "00_first.html", "rel": "prev"}
    assert "next-link" not in anchors(page2)
    assert "<title>02 Chapter 2 · Test Book</title>" in page2
    assert "require.min.js" not in page2  # nothing in <head> waits for the network


# ---------------------------------------------------------------- the nbval configuration of `make test`


def _makefile_nbval_flags() -> list[str]:
    import re
    import shlex

    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^NBVAL_FLAGS\s*:?=\s*((?:.*\\\n)*.*)$", text, flags=re.M)
    assert m, "Makefile defines no NBVAL_FLAGS"
    return shlex.split(m.group(1).replace("\\\n", " "))


def test_nbval_compares_checked_stdout_but_not_stderr_or_addresses(tmp_path):
    """`make test`'s flags: a wrong checked output fails; stderr and memory addresses are ignored."""
    import subprocess

    code = "# NBVAL_CHECK_OUTPUT\nimport sys\nprint('value', 6 * 7, 'at 0x7f00deadbeef')\nprint('noise', file=sys.stderr)"

    def stored(value: int):
        return [
            new_output("stream", name="stdout", text=f"value {value} at 0x7fffffff0000\n"),
            new_output("stream", name="stderr", text="a different warning\n"),
        ]

    nbformat.write(notebook(code, outputs={0: stored(42)}, counts={0: 1}), tmp_path / "nb_same.ipynb")
    nbformat.write(notebook(code, outputs={0: stored(41)}, counts={0: 1}), tmp_path / "nb_wrong.ipynb")
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
        "tests/test_book.py::test_find_root_from_a_subdirectory",  # loads tests/conftest.py
        str(tmp_path / "nb_same.ipynb"), str(tmp_path / "nb_wrong.ipynb"),
        *_makefile_nbval_flags(),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # (nbval names cells outside the rootdir "::Cell N", so count: one passes, one fails.)
    verdicts = ("PASSED ::Cell", "FAILED ::Cell")
    cells = [line.split(" - ")[0] for line in out.splitlines() if line.startswith(verdicts)]
    assert sorted(cells) == ["FAILED ::Cell 0", "PASSED ::Cell 0"], out
    assert "+ value 41 at 0xADDRESS" in out  # the wrong stored value is what failed


# ---------------------------------------------------------------- figures: one command, deterministic

FIGURE_CELL = """
import matplotlib.pyplot as plt
import numpy as np
from mobilevit_edu.plots.save import save_figure
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(np.random.rand(20).cumsum())  # seeded by setup()
ax.set_title("a seeded random walk")
print(save_figure(fig, "00_walk").name)
"""


def test_regenerate_figures_is_deterministic(tmp_path):
    make_book(tmp_path, {"chapters/00_fig.ipynb": notebook(GOOD_CELLS[0], FIGURE_CELL)})
    book, out = load_book(tmp_path), tmp_path / "figs"
    (out).mkdir()
    (out / "99_stale.png").write_bytes(b"not written by any chapter")
    os.utime(out / "99_stale.png", (0, 0))  # written long ago
    first = regenerate_figures(book, profile="ci", figures=out, progress=False)
    assert first.ok and first.new == ["00_walk.png"] and not first.changed
    assert first.not_written == ["99_stale.png"]  # reported, never deleted
    png = (out / "00_walk.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    second = regenerate_figures(book, profile="ci", figures=out, progress=False)
    assert second.unchanged == ["00_walk.png"] and not second.new and not second.changed
    assert (out / "00_walk.png").read_bytes() == png  # byte for byte
    assert "1 unchanged" in second.summary()
    # the notebook itself is not touched: figures never rewrites chapters/
    assert not nbformat.read(tmp_path / "chapters" / "00_fig.ipynb", as_version=4).cells[1].outputs


def test_html_links_in_markdown_outputs_point_at_pages(tmp_path):
    """Chapter 15 displays its generated report as a Markdown *output*; the chapter links in it
    must reach the HTML pages too, not only the links typed in markdown cells."""
    report = new_output("display_data", data={
        "text/markdown": "| row | chapter |\n|---|---|\n| params | [01](01_second.ipynb) |",
        "text/plain": "<IPython.core.display.Markdown object>",
    })
    first = notebook(*GOOD_CELLS, "display(Markdown(...))", outputs={2: [report]})
    make_book(tmp_path, {"chapters/00_first.ipynb": first,
                         "chapters/01_second.ipynb": notebook("#md # Second", *GOOD_CELLS)})
    build_html(load_book(tmp_path), tmp_path / "site")
    page = (tmp_path / "site" / "00_first.html").read_text(encoding="utf-8")
    assert 'href="01_second.html"' in page and 'href="01_second.ipynb"' not in page
    assert "<table" in page  # rendered as a table, not shown as raw Markdown
