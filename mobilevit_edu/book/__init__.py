"""The book's own tooling: the manifest, the profiles, and running and rendering the chapters.

The book is a list of Jupyter notebooks in ``chapters/``, ordered by the manifest ``book.toml``
at the repository root (read with :mod:`tomllib`; it is *not* an mdBook config). This module

* parses and validates the manifest (:func:`load_book`, :class:`Book`, :class:`Chapter`);
* gives every chapter its first cell, :func:`setup`, which seeds everything, sets the plot style
  and reads the *profile* (``full`` or ``ci``; the profile only scales budgets, never what is
  computed or checked);
* checks that the manifest and ``chapters/`` agree (:func:`check_book`);
* executes chapters under a profile with per-chapter time budgets (:func:`run_chapters`);
* regenerates every figure in ``figures/`` by re-running the chapters (:func:`regenerate_figures`);
* renders an offline HTML book (:func:`build_html`).

Command line (run from anywhere inside the repository)::

    python -m mobilevit_edu.book check
    python -m mobilevit_edu.book run [--profile ci|full] [--write] [--timeout-scale X] [CHAPTER ...]
    python -m mobilevit_edu.book figures [--profile ci|full] [--out DIR] [CHAPTER ...]
    python -m mobilevit_edu.book html [--out DIR]

Time budgets. Each chapter declares ``budget_ci``: seconds of cell execution (kernel start-up
excluded) under the ``ci`` profile. The budget a run enforces is::

    budget = budget_ci * PROFILE_BUDGET_FACTOR[profile] * timeout_scale   (ci: 1x, full: 10x)

A chapter that finishes within its budget is ``ok``; one that finishes later is ``over budget``;
one still running at twice its budget is interrupted (``over budget (stopped)``). Both fail the run.
"""

from __future__ import annotations

import argparse
import html as html_lib
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the book targets Python 3.11+
    import tomli as tomllib

__all__ = [
    "BookError",
    "Book",
    "Chapter",
    "Profile",
    "RunResult",
    "PROFILES",
    "PROFILE_ENV",
    "PROFILE_BUDGET_FACTOR",
    "MANIFEST",
    "setup",
    "get_profile",
    "load_book",
    "read_manifest",
    "find_root",
    "check_book",
    "run_chapters",
    "build_html",
    "toc_markdown",
    "module_map_markdown",
    "main",
]

MANIFEST = "book.toml"
PROFILE_ENV = "MOBILEVIT_EDU_PROFILE"
PROFILES = ("full", "ci")
DEFAULT_PROFILE = "full"
#: Multiplies a chapter's ``budget_ci`` to give its budget under each profile.
PROFILE_BUDGET_FACTOR = {"ci": 1.0, "full": 10.0}
#: A chapter still running at this multiple of its budget is interrupted.
HARD_LIMIT_FACTOR = 2.0
#: Standard budgets, one dict per profile. Chapters read them as ``P.budgets["steps"]``.
STANDARD_BUDGETS: dict[str, dict[str, int]] = {
    "full": {"images": 256, "steps": 300, "repeats": 20, "epochs": 10},
    "ci": {"images": 16, "steps": 20, "repeats": 3, "epochs": 1},
}
KERNEL_NAME = "python3"
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
CHAPTER_PATH_RE = re.compile(r"^chapters/(\d{2})_([a-z0-9][a-z0-9_]*)\.ipynb$")
#: Matplotlib's "colour-blind safe" Okabe-Ito palette, used as the book's colour cycle.
COLOR_CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


class BookError(Exception):
    """A problem with the book's manifest or chapters; the message names the file and the key."""


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chapter:
    """One ``[[chapters]]`` entry of ``book.toml``."""

    path: str  # relative to the repository root, e.g. "chapters/03_unfold_fold.ipynb"
    title: str
    paper: list[str]  # the paper's sections, figures and tables this chapter rebuilds
    modules: list[str]  # the mobilevit_edu modules it introduces
    budget_ci: int  # seconds of execution under the ci profile
    slug: str  # "unfold_fold"
    number: int  # 3

    @property
    def name(self) -> str:
        """File stem, e.g. ``"03_unfold_fold"`` (used for executed copies and HTML pages)."""
        return f"{self.number:02d}_{self.slug}"

    @property
    def tag(self) -> str:
        """Two-digit chapter number, e.g. ``"03"``."""
        return f"{self.number:02d}"


@dataclass(frozen=True)
class Book:
    """The parsed manifest: the ``[book]`` table and the ordered chapters."""

    title: str
    authors: list[str]
    description: str
    language: str
    chapters: list[Chapter]
    root: Path = field(default_factory=Path.cwd)  # the directory holding book.toml

    def notebook(self, chapter: Chapter) -> Path:
        """Absolute path of a chapter's notebook."""
        return self.root / chapter.path

    def find(self, key: str) -> Chapter:
        """A chapter by number (``"3"``, ``"03"``), slug, stem, or path."""
        k = key.strip().replace("\\", "/")
        for ch in self.chapters:
            if k in (ch.path, ch.name, ch.slug, ch.name + ".ipynb", ch.tag) or (
                k.isdigit() and int(k) == ch.number
            ) or (k.endswith(".ipynb") and Path(k).name == Path(ch.path).name):
                return ch
        known = ", ".join(ch.name for ch in self.chapters)
        raise BookError(f"{self.root / MANIFEST}: chapters: no chapter matches {key!r} (known: {known})")


_BOOK_KEYS: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "authors": list,
    "description": str,
    "language": str,
}
_CHAPTER_KEYS: dict[str, type | tuple[type, ...]] = {
    "path": str,
    "title": str,
    "paper": list,
    "modules": list,
    "budget_ci": int,
}


def _require(table: dict[str, Any], spec: dict[str, Any], where: str, file: Path) -> None:
    """Check that ``table`` has exactly the keys in ``spec`` with the right types."""
    for key, typ in spec.items():
        if key not in table:
            raise BookError(f"{file}: {where}.{key}: missing key {key!r}")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise BookError(
                f"{file}: {where}.{key}: expected {typ.__name__}, got {type(value).__name__} ({value!r})"
            )
        if typ is list and not all(isinstance(v, str) for v in value):
            raise BookError(f"{file}: {where}.{key}: expected a list of strings, got {value!r}")
    unknown = sorted(set(table) - set(spec))
    if unknown:
        raise BookError(f"{file}: {where}.{unknown[0]}: unknown key (allowed: {', '.join(spec)})")


def read_manifest(file: Path | str, *, require_notebooks: bool = False) -> Book:
    """Parse and validate a ``book.toml``; raise :class:`BookError` naming the file and key.

    With ``require_notebooks`` every listed notebook must also exist. (Reading the manifest does
    not need the notebooks; :func:`check_book` and :func:`run_chapters` report missing ones.)
    """
    file = Path(file).resolve()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise BookError(f"{file}: cannot read the manifest: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BookError(f"{file}: not UTF-8: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:  # its message ends with "(at line L, column C)"
        raise BookError(f"{file}: invalid TOML: {exc}") from exc

    if "book" not in data or not isinstance(data["book"], dict):
        raise BookError(f"{file}: book: missing table [book]")
    unknown = sorted(set(data) - {"book", "chapters"})
    if unknown:
        raise BookError(f"{file}: {unknown[0]}: unknown top-level key (allowed: book, chapters)")
    meta = data["book"]
    _require(meta, _BOOK_KEYS, "book", file)
    if not meta["title"].strip():
        raise BookError(f"{file}: book.title: must not be empty")

    entries = data.get("chapters")
    if not isinstance(entries, list) or not entries:
        raise BookError(f"{file}: chapters: missing [[chapters]] array of tables")
    chapters: list[Chapter] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"chapters[{i}]"
        if not isinstance(entry, dict):
            raise BookError(f"{file}: {where}: expected a table ([[chapters]]), got {entry!r}")
        _require(entry, _CHAPTER_KEYS, where, file)
        path = entry["path"]
        m = CHAPTER_PATH_RE.match(path)
        if not m:
            raise BookError(
                f"{file}: {where}.path: {path!r} must look like 'chapters/NN_slug.ipynb' "
                "(two digits, lower-case slug)"
            )
        if path in seen:
            raise BookError(f"{file}: {where}.path: duplicate path {path!r} (also chapters[{seen[path]}])")
        seen[path] = i
        if entry["budget_ci"] <= 0:
            raise BookError(f"{file}: {where}.budget_ci: must be a positive number of seconds")
        if not entry["title"].strip():
            raise BookError(f"{file}: {where}.title: must not be empty")
        number = int(m.group(1))
        if chapters and number <= chapters[-1].number:
            raise BookError(
                f"{file}: {where}.path: chapter number {number:02d} must be greater than the "
                f"previous one ({chapters[-1].number:02d}); list chapters in order"
            )
        chapters.append(
            Chapter(
                path=path,
                title=entry["title"],
                paper=list(entry["paper"]),
                modules=list(entry["modules"]),
                budget_ci=entry["budget_ci"],
                slug=m.group(2),
                number=number,
            )
        )

    book = Book(
        title=meta["title"],
        authors=list(meta["authors"]),
        description=meta["description"],
        language=meta["language"],
        chapters=chapters,
        root=file.parent,
    )
    if require_notebooks:
        for i, ch in enumerate(book.chapters):
            if not book.notebook(ch).is_file():
                raise BookError(f"{file}: chapters[{i}].path: notebook {ch.path} does not exist")
    return book


def find_root(start: Path | str | None = None) -> Path:
    """The repository root: the nearest directory holding ``book.toml``.

    Walks up from ``start`` (default: the current directory), then from this package's location.
    """
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for s in starts:
        for d in [s.resolve(), *s.resolve().parents]:
            if (d / MANIFEST).is_file():
                return d
    raise BookError(f"{MANIFEST}: not found in {starts[0]} or any parent directory")


def load_book(root: Path | str | None = None, *, require_notebooks: bool = False) -> Book:
    """Find the repository root (see :func:`find_root`) and read its ``book.toml``."""
    return read_manifest(find_root(root) / MANIFEST, require_notebooks=require_notebooks)


# --------------------------------------------------------------------------------------------
# Profiles and the first cell of every chapter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """The active profile: ``full`` (the committed outputs) or ``ci`` (same code, smaller budgets)."""

    name: str
    seed: int
    budgets: dict[str, int]

    def pick(self, full: Any, ci: Any) -> Any:
        """``full`` under the full profile, ``ci`` under the ci profile."""
        return full if self.name == "full" else ci


def _profile_name(name: str | None = None) -> str:
    name = name if name is not None else os.environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from {PROFILE_ENV}?): expected one of {PROFILES}")
    return name


def get_profile(name: str | None = None, seed: int = 0) -> Profile:
    """The profile ``name``, else the one in ``$MOBILEVIT_EDU_PROFILE``, else ``full``."""
    name = _profile_name(name)
    return Profile(name=name, seed=seed, budgets=dict(STANDARD_BUDGETS[name]))


def _plot_style() -> None:
    import matplotlib as mpl
    import matplotlib.pyplot as plt  # noqa: F401  (activates the notebook backend before styling)
    from cycler import cycler

    mpl.rcdefaults()  # idempotent: running the first cell twice gives the same style
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "figure.figsize": (6.4, 4.0),
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "font.size": 10.5,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=COLOR_CYCLE),
            "grid.alpha": 0.3,
            "lines.linewidth": 1.8,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def setup(seed: int = 0) -> Profile:
    """The first cell of every chapter: seed everything, set the plot style, read the profile.

    Seeds :mod:`random`, NumPy and PyTorch, asks PyTorch for deterministic algorithms (warning
    only where none exists), flushes denormals (CPU speed), and applies the book's matplotlib
    style. Prints one line and returns the :class:`Profile`.
    """
    import numpy as np
    import torch

    profile = get_profile(seed=seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_flush_denormal(True)
    _plot_style()
    print(
        f"profile={profile.name} seed={seed} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    return profile


# --------------------------------------------------------------------------------------------
# Markdown helpers for chapter 00
# --------------------------------------------------------------------------------------------


def toc_markdown(book: Book) -> str:
    """The table of contents as a Markdown table (links are relative to ``chapters/``)."""
    rows = ["| # | chapter | paper | ci budget |", "|---|---|---|---|"]
    for ch in book.chapters:
        paper = ", ".join(ch.paper) or "—"
        rows.append(f"| {ch.tag} | [{ch.title}]({Path(ch.path).name}) | {paper} | {ch.budget_ci} s |")
    return "\n".join(rows)


def module_map_markdown(book: Book) -> str:
    """Which chapter introduces which ``mobilevit_edu`` module, as a Markdown table."""
    owners: dict[str, list[Chapter]] = {}
    for ch in book.chapters:
        for mod in ch.modules:
            owners.setdefault(mod, []).append(ch)
    rows = ["| module | chapter |", "|---|---|"]
    for mod, chs in owners.items():
        links = ", ".join(f"[{c.tag} {c.title}]({Path(c.path).name})" for c in chs)
        rows.append(f"| `mobilevit_edu.{mod}` | {links} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------


def _notebook_problems(nb_path: Path, rel: str) -> list[str]:
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as exc:  # JSON or schema errors
        return [f"{rel}: (file): not a valid notebook: {exc}"]
    problems: list[str] = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(f"{rel}: (schema): {exc.message}")
    ks = nb.metadata.get("kernelspec", {})
    if ks.get("name") != KERNEL_NAME:
        problems.append(f"{rel}: metadata.kernelspec.name: is {ks.get('name')!r}, expected {KERNEL_NAME!r}")
    lang = ks.get("language") or nb.metadata.get("language_info", {}).get("name")
    if lang != "python":
        problems.append(f"{rel}: metadata.kernelspec.language: is {lang!r}, expected 'python'")
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        problems.append(f"{rel}: cells: no code cell")
    elif "setup(" not in code[0][1].source:
        problems.append(f"{rel}: cells[{code[0][0]}].source: the first code cell must call setup()")
    if not any(line.strip() == NBVAL_MARK for _, c in code for line in c.source.splitlines()):
        problems.append(f"{rel}: cells: no code cell has a line '{NBVAL_MARK}'")
    for i, c in code:
        if c.get("outputs") and c.get("execution_count") is None:
            problems.append(
                f"{rel}: cells[{i}].execution_count: cell has outputs but no execution count "
                "(commit chapters executed: python -m mobilevit_edu.book run --write)"
            )
    return problems


def check_book(book: Book) -> list[str]:
    """Problems with the book, each naming a file and a key; empty when all is well."""
    manifest = MANIFEST
    problems: list[str] = []
    listed = set()
    for i, ch in enumerate(book.chapters):
        listed.add(Path(ch.path).name)
        for mod in ch.modules:
            if not (book.root / "mobilevit_edu" / f"{mod}.py").is_file():
                problems.append(
                    f"{manifest}: chapters[{i}].modules: mobilevit_edu/{mod}.py does not exist"
                )
        nb_path = book.notebook(ch)
        if not nb_path.is_file():
            problems.append(f"{manifest}: chapters[{i}].path: {ch.path} does not exist")
            continue
        problems.extend(_notebook_problems(nb_path, ch.path))
    for nb_path in sorted((book.root / "chapters").glob("*.ipynb")):
        if nb_path.name not in listed:
            problems.append(f"chapters/{nb_path.name}: (file): not listed in {manifest} [[chapters]]")
    return problems


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """The outcome of executing one chapter."""

    chapter: Chapter
    seconds: float
    budget: float
    status: str  # "ok", "error", "over budget", "over budget (stopped)", "missing"
    error: str = ""
    executed: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _current_env_kernel_manager_class() -> type:
    """An ``AsyncKernelManager`` whose ``python3`` kernel is ipykernel in *this* interpreter."""
    from ipykernel.kernelspec import RESOURCES, make_ipkernel_cmd
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == KERNEL_NAME:
                return KernelSpec(
                    argv=make_ipkernel_cmd(executable=sys.executable),
                    display_name="Python 3",
                    language="python",
                    resource_dir=RESOURCES,
                )
            return super().get_kernel_spec(kernel_name)

    class CurrentEnvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_ksm(self) -> KernelSpecManager:
            return CurrentEnvKernelSpecManager(data_dir=self.data_dir)

    return CurrentEnvKernelManager


def _execute(nb: Any, cwd: Path, env: dict[str, str], budget: float) -> tuple[float, str, str]:
    """Execute ``nb`` in place; return (seconds, status, error message)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    hard = budget * HARD_LIMIT_FACTOR
    state = {"deadline": float("inf")}
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=_current_env_kernel_manager_class(),
        resources={"metadata": {"path": str(cwd)}},
        timeout_func=lambda cell: max(1, int(state["deadline"] - time.monotonic() + 1)),
        record_timing=False,
        startup_timeout=120,
        shutdown_kernel="immediate",
    )
    t0 = time.monotonic()
    status, error = "ok", ""
    try:
        with client.setup_kernel(env=env):
            reply = client.wait_for_reply(client.kc.kernel_info())
            if reply and "language_info" in reply["content"]:
                nb.metadata["language_info"] = reply["content"]["language_info"]
            t0 = time.monotonic()  # budgets count cell execution, not kernel start-up
            state["deadline"] = t0 + hard
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
    except CellTimeoutError:
        status, error = "over budget (stopped)", f"stopped at {hard:.0f} s ({HARD_LIMIT_FACTOR:g}x budget)"
    except CellExecutionError as exc:
        status = "error"
        error = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", "") else str(exc).splitlines()[0]
    except Exception as exc:  # kernel died, failed to start, ...
        status, error = "error", f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - t0
    if status == "ok" and seconds > budget:
        status = "over budget"
    return seconds, status, error


def run_chapters(
    book: Book,
    selection: Sequence[str] = (),
    *,
    profile: str | None = None,
    write: bool = False,
    timeout_scale: float = 1.0,
    build_dir: Path | None = None,
    progress: bool = True,
    extra_env: dict[str, str] | None = None,
) -> list[RunResult]:
    """Execute chapters (all, in book order, or those in ``selection``) under a profile.

    Each chapter runs in a fresh ``python3`` kernel of this interpreter, with ``chapters/`` as
    its working directory, ``$MOBILEVIT_EDU_PROFILE`` set and ``extra_env`` added. Executed
    copies always go to ``_build/executed/NN_slug.ipynb``; with ``write`` the outputs of chapters
    without errors are also written back into ``chapters/``.
    """
    import nbformat
    from tqdm.auto import tqdm

    profile = _profile_name(profile)
    chapters = [book.find(k) for k in selection] if selection else list(book.chapters)
    out_dir = (build_dir or book.root / "_build") / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {}), PROFILE_ENV: profile}
    results: list[RunResult] = []
    bar = tqdm(chapters, unit="chapter", disable=not progress, file=sys.stderr)
    for ch in bar:
        bar.set_description(ch.name)
        budget = ch.budget_ci * PROFILE_BUDGET_FACTOR[profile] * timeout_scale
        src = book.notebook(ch)
        if not src.is_file():
            results.append(RunResult(ch, 0.0, budget, "missing", f"{ch.path} does not exist"))
            continue
        nb = nbformat.read(src, as_version=4)
        seconds, status, error = _execute(nb, src.parent, env, budget)
        executed = out_dir / f"{ch.name}.ipynb"
        nbformat.write(nb, executed)
        if write and status in ("ok", "over budget"):
            nbformat.write(nb, src)
        results.append(RunResult(ch, seconds, budget, status, error, executed))
    bar.close()
    return results


def format_summary(results: Iterable[RunResult], profile: str) -> str:
    """The run's summary table (chapter, seconds, budget, status)."""
    lines = [f"profile: {profile}", f"{'chapter':<34} {'seconds':>8} {'budget':>8}  status"]
    for r in results:
        line = f"{r.chapter.name:<34} {r.seconds:8.1f} {r.budget:8.0f}  {r.status}"
        lines.append(line + (f"  -- {r.error}" if r.error else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# figures: one command regenerates every figure in figures/
# --------------------------------------------------------------------------------------------

FIGURES_ENV = "MOBILEVIT_EDU_FIGURES"
#: Figures drawn from wall-clock measurements: they change from run to run (and machine to machine).
TIMING_FIGURES = ("07_latency_vs_macs", "07_time_vs_macs_share", "14_")


@dataclass
class FiguresReport:
    """What ``book figures`` did: the chapter runs and, per PNG, whether it changed."""

    runs: list[RunResult]
    new: list[str]
    changed: list[str]
    unchanged: list[str]
    not_written: list[str]  # PNGs in the folder that no chapter of this run wrote

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def summary(self) -> str:
        lines = [f"figures: {len(self.new)} new, {len(self.changed)} changed, "
                 f"{len(self.unchanged)} unchanged (byte for byte)"]
        for label, names in (("new", self.new), ("changed", self.changed)):
            for n in names:
                timing = " (drawn from timings: expected to change)" if n.startswith(TIMING_FIGURES) else ""
                lines.append(f"  {label:8s}{n}{timing}")
        if self.not_written:
            lines.append("  not written by the chapters run: " + ", ".join(self.not_written))
        return "\n".join(lines)


def _png_digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def regenerate_figures(
    book: Book,
    selection: Sequence[str] = (),
    *,
    profile: str | None = "full",
    figures: Path | None = None,
    progress: bool = True,
) -> FiguresReport:
    """Re-execute the chapters (all, or ``selection``) with ``$MOBILEVIT_EDU_FIGURES`` pointing
    at ``figures`` (default ``figures/``), without touching the notebooks, and report which PNGs
    are new, changed or unchanged. Every figure is drawn by a seeded library function and saved
    without metadata, so a second run with the same thread count reproduces each file byte for
    byte, except the few drawn from wall-clock timings (:data:`TIMING_FIGURES`)."""
    folder = Path(figures) if figures is not None else book.root / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    before = _png_digests(folder)
    started = time.time()
    runs = run_chapters(book, selection, profile=profile, progress=progress,
                        extra_env={FIGURES_ENV: str(folder.resolve())})
    after = _png_digests(folder)
    written = {p.name for p in folder.glob("*.png") if p.stat().st_mtime >= started - 1}
    return FiguresReport(
        runs=runs,
        new=sorted(n for n in written if n not in before),
        changed=sorted(n for n in written if n in before and before[n] != after[n]),
        unchanged=sorted(n for n in written if n in before and before[n] == after[n]),
        not_written=sorted(set(after) - written),
    )


# --------------------------------------------------------------------------------------------
# html
# --------------------------------------------------------------------------------------------

# Extends nbconvert's "lab" template: no require.js, MathJax loaded only after the page has
# loaded (so a missing network never blocks it), and the book's navigation bars.
_PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({tex2jax: {inlineMath: [['$','$'], ['\\(','\\)']], processEscapes: true},
                    messageStyle: 'none'});
</script>
<script>
window.addEventListener('load', function () {
  var s = document.createElement('script');
  s.src = {{ resources.mathjax_url | tojson }};
  document.head.appendChild(s);
});
</script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}
<style>{{ resources.book_css }}</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.book_nav_top }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.book_nav_bottom }}
{{ super() }}
{% endblock body_footer %}
"""

_CSS = """
.book-nav { display: flex; gap: 1.5em; justify-content: space-between; align-items: center;
  max-width: 1100px; margin: 0.5em auto; padding: 0.6em 1em; border-bottom: 1px solid #ddd;
  font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 15px; }
.book-nav.bottom { border-bottom: none; border-top: 1px solid #ddd; }
.book-nav a { color: #0a58a6; text-decoration: none; }
.book-nav a:hover { text-decoration: underline; }
.book-nav .disabled { color: #aaa; }
"""

_INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 960px;
  margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } .authors { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { text-align: left; padding: 0.45em 0.6em; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
th { background: #f5f7fa; } td.num { font-variant-numeric: tabular-nums; width: 3em; }
a { color: #0a58a6; } .missing { color: #999; }
"""


def _nav(book: Book, pages: list[Chapter], i: int, *, top: bool) -> str:
    esc = html_lib.escape
    ids = top  # ids only on the top bar so they stay unique

    def link(ch: Chapter | None, rel: str, arrow: str) -> str:
        if ch is None:
            return f'<span class="disabled">{arrow}</span>'
        id_attr = f' id="{rel}-link"' if ids else ""
        text = f"{arrow} {ch.tag} {esc(ch.title)}" if rel == "prev" else f"{ch.tag} {esc(ch.title)} {arrow}"
        return f'<a href="{ch.name}.html" rel="{rel}"{id_attr}>{text}</a>'

    prev_ch = pages[i - 1] if i > 0 else None
    next_ch = pages[i + 1] if i + 1 < len(pages) else None
    index_id = ' id="index-link"' if ids else ""
    cls = "book-nav" + ("" if top else " bottom")
    return (
        f'<nav class="{cls}">{link(prev_ch, "prev", "&larr;")}'
        f'<a href="index.html" rel="index"{index_id}>{esc(book.title)}: contents</a>'
        f"{link(next_ch, 'next', '&rarr;')}</nav>"
    )


def _rewrite_links(page: str, names: set[str]) -> str:
    """Point ``../figures/`` at the copied figures and ``NN_slug.ipynb`` links at HTML pages."""
    page = re.sub(r'(src|href)=(["\'])(?:\.\./)figures/', r"\1=\2figures/", page)

    def to_html(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{m.group(1)}{name}.html{m.group(3) or ''}" if name in names else m.group(0)

    return re.sub(r'(href=["\'](?:\./)?)(\d\d_[a-z0-9_]+)\.ipynb(#[^"\']*)?', to_html, page)


def _index_html(book: Book, present: set[str]) -> str:
    esc = html_lib.escape
    rows = []
    for ch in book.chapters:
        title = (
            f'<a href="{ch.name}.html">{esc(ch.title)}</a>'
            if ch.name in present
            else f'<span class="missing">{esc(ch.title)} (not written yet)</span>'
        )
        paper = ", ".join(esc(p) for p in ch.paper) or "&mdash;"
        rows.append(f'<tr><td class="num">{ch.tag}</td><td>{title}</td><td>{paper}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="{esc(book.language)}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(book.title)}</title><style>{_INDEX_CSS}</style></head>
<body>
<h1>{esc(book.title)}</h1>
<p class="authors">{esc(", ".join(book.authors))}</p>
<p class="description">{esc(book.description)}</p>
<h2>Contents</h2>
<table id="toc"><thead><tr><th>#</th><th>chapter</th><th>paper</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""


def _html_source(book: Book, ch: Chapter, build_dir: Path) -> Path:
    """The executed copy when it exists and is newer than the chapter, else the chapter."""
    src = book.notebook(ch)
    executed = build_dir / "executed" / f"{ch.name}.ipynb"
    if executed.is_file() and executed.stat().st_mtime > src.stat().st_mtime:
        return executed
    return src


def _local_mathjax(out_dir: Path) -> str:
    """Copy MathJax (from the ``jupyter-server-mathjax`` package) beside the pages so formulas
    render offline; fall back to nbconvert's CDN address where that package is missing."""
    try:
        import jupyter_server_mathjax
    except ImportError:  # pragma: no cover - it is in the book extra
        print("warning: jupyter-server-mathjax not installed; formulas need a network", file=sys.stderr)
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (out_dir / "mathjax" / "MathJax.js").is_file():
        shutil.copytree(static, out_dir / "mathjax", dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def build_html(book: Book, out_dir: Path | None = None, *, build_dir: Path | None = None) -> Path:
    """Render the book to ``out_dir`` (default ``_build/html``); return the path of index.html.

    Chapters that do not exist yet are listed in the contents without a link and skipped by the
    previous/next links. Output images are embedded (base64); ``figures/`` is copied beside the
    pages and Markdown links to ``../figures/`` are rewritten to it.
    """
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    build_dir = build_dir or book.root / "_build"
    out_dir = out_dir or build_dir / "html"
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = [ch for ch in book.chapters if book.notebook(ch).is_file()]
    for ch in book.chapters:
        if ch not in pages:
            print(f"warning: {ch.path} does not exist; left out of the HTML book", file=sys.stderr)
    names = {ch.name for ch in pages}

    figures = book.root / "figures"
    if figures.is_dir():
        shutil.copytree(figures, out_dir / "figures", dirs_exist_ok=True)

    exporter = HTMLExporter(
        mathjax_url=_local_mathjax(out_dir),
        template_name="lab",
        extra_loaders=[DictLoader({"mobilevit_book.html.j2": _PAGE_TEMPLATE})],
        template_file="mobilevit_book.html.j2",
    )
    for i, ch in enumerate(pages):
        nb = nbformat.read(_html_source(book, ch, build_dir), as_version=4)
        resources = {
            "metadata": {"name": f"{ch.tag} {ch.title} · {book.title}", "path": str(book.notebook(ch).parent)},
            "book_css": _CSS,
            "book_nav_top": _nav(book, pages, i, top=True),
            "book_nav_bottom": _nav(book, pages, i, top=False),
        }
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        (out_dir / f"{ch.name}.html").write_text(_rewrite_links(body, names), encoding="utf-8")

    index = out_dir / "index.html"
    index.write_text(_index_html(book, names), encoding="utf-8")
    return index


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mobilevit_edu.book", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="repository root (default: found from cwd)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check that book.toml and chapters/ agree")
    r = sub.add_parser("run", help="execute chapters under a profile")
    r.add_argument("--profile", choices=PROFILES, default=None,
                   help=f"default: ${PROFILE_ENV}, else {DEFAULT_PROFILE}")
    r.add_argument("--write", action="store_true", help="also store outputs back into chapters/")
    r.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every budget (slow machines)")
    r.add_argument("chapters", nargs="*", metavar="CHAPTER", help="number, slug or path (default: all)")
    f = sub.add_parser("figures", help="regenerate every figure in figures/ by re-running the chapters")
    f.add_argument("--profile", choices=PROFILES, default="full", help="default: full (the committed figures)")
    f.add_argument("--out", type=Path, default=None, help="figure folder (default: figures/)")
    f.add_argument("chapters", nargs="*", metavar="CHAPTER", help="number, slug or path (default: all)")
    h = sub.add_parser("html", help="render the HTML book into _build/html")
    h.add_argument("--out", type=Path, default=None, help="output directory (default: _build/html)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        book = load_book(args.root)
        if args.command == "check":
            problems = check_book(book)
            for line in problems:
                print(line)
            print(f"{len(problems)} problem(s)" if problems else f"OK: {len(book.chapters)} chapters")
            return 1 if problems else 0
        if args.command == "run":
            profile = _profile_name(args.profile)
            if args.timeout_scale <= 0:
                raise BookError("--timeout-scale must be positive")
            results = run_chapters(
                book, args.chapters, profile=profile, write=args.write, timeout_scale=args.timeout_scale
            )
            print(format_summary(results, profile))
            return 0 if all(r.ok for r in results) else 1
        if args.command == "figures":
            report = regenerate_figures(book, args.chapters, profile=args.profile, figures=args.out)
            print(format_summary(report.runs, args.profile))
            print(report.summary())
            return 0 if report.ok else 1
        if args.command == "html":
            print(build_html(book, args.out))
            return 0
    except (BookError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover


