"""The book's manifest, ``book.toml``: its chapters, their checks, and chapter 00's tables.

The book is a list of Jupyter notebooks in ``chapters/``, ordered by the manifest ``book.toml``
at the repository root (read with :mod:`tomllib`; it is *not* an mdBook config). This module

* parses and validates the manifest (:func:`read_manifest`, :func:`load_book`, :class:`Book`,
  :class:`Chapter`), raising :class:`BookError` with the file and the key at fault;
* checks that the manifest, ``chapters/`` and the library agree (:func:`check_book`);
* writes chapter 00's table of contents and module map (:func:`toc_markdown`,
  :func:`module_map_markdown`).

A chapter's ``modules`` are dotted names relative to ``mobilevit_edu``: ``"nn.layers"`` is the
file ``mobilevit_edu/nn/layers.py``, ``"detection"`` the package ``mobilevit_edu/detection/``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the book targets Python 3.11+
    import tomli as tomllib

__all__ = [
    "MANIFEST",
    "KERNEL_NAME",
    "NBVAL_MARK",
    "BookError",
    "Chapter",
    "Book",
    "read_manifest",
    "find_root",
    "load_book",
    "module_file",
    "check_book",
    "toc_markdown",
    "module_map_markdown",
]

MANIFEST = "book.toml"
#: The kernel every chapter names in its metadata (and the runner starts in this interpreter).
KERNEL_NAME = "python3"
#: A line of its own in a code cell: nbval compares that cell's stored output (``make test``).
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
CHAPTER_PATH_RE = re.compile(r"^chapters/(\d{2})_([a-z0-9][a-z0-9_]*)\.ipynb$")
MODULE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
LIBRARY = "mobilevit_edu"


class BookError(Exception):
    """A problem with the book's manifest or chapters; the message names the file and the key."""


@dataclass(frozen=True)
class Chapter:
    """One ``[[chapters]]`` entry of ``book.toml``."""

    path: str  # relative to the repository root, e.g. "chapters/03_unfold_fold.ipynb"
    title: str
    paper: list[str]  # the paper's sections, figures and tables this chapter rebuilds
    modules: list[str]  # the mobilevit_edu modules it introduces, dotted ("nn.patches")
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


_BOOK_KEYS: dict[str, type] = {"title": str, "authors": list, "description": str, "language": str}
_CHAPTER_KEYS: dict[str, type] = {
    "path": str,
    "title": str,
    "paper": list,
    "modules": list,
    "budget_ci": int,
}


def _require(table: dict[str, Any], spec: dict[str, type], where: str, file: Path) -> None:
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


def _chapter(entry: Any, i: int, file: Path, previous: Chapter | None, seen: dict[str, int]) -> Chapter:
    """One validated ``[[chapters]]`` entry (``seen``: the paths listed before it -> their index)."""
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
    if entry["budget_ci"] <= 0:
        raise BookError(f"{file}: {where}.budget_ci: must be a positive number of seconds")
    if not entry["title"].strip():
        raise BookError(f"{file}: {where}.title: must not be empty")
    number = int(m.group(1))
    if previous is not None and number <= previous.number:
        raise BookError(
            f"{file}: {where}.path: chapter number {number:02d} must be greater than the "
            f"previous one ({previous.number:02d}); list chapters in order"
        )
    return Chapter(path=path, title=entry["title"], paper=list(entry["paper"]),
                   modules=list(entry["modules"]), budget_ci=entry["budget_ci"],
                   slug=m.group(2), number=number)


def read_manifest(file: Path | str, *, require_notebooks: bool = False) -> Book:
    """Parse and validate a ``book.toml``; raise :class:`BookError` naming the file and key.

    With ``require_notebooks`` every listed notebook must also exist. (Reading the manifest does
    not need the notebooks; :func:`check_book` and the runner report missing ones.)
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
        chapters.append(_chapter(entry, i, file, chapters[-1] if chapters else None, seen))
        seen[chapters[-1].path] = i

    book = Book(title=meta["title"], authors=list(meta["authors"]), description=meta["description"],
                language=meta["language"], chapters=chapters, root=file.parent)
    if require_notebooks:
        for i, ch in enumerate(book.chapters):
            if not book.notebook(ch).is_file():
                raise BookError(f"{file}: chapters[{i}].path: notebook {ch.path} does not exist")
    return book


def find_root(start: Path | str | None = None) -> Path:
    """The repository root: the nearest directory holding ``book.toml``.

    Walks up from ``start`` (default: the current directory, then this package's location).
    """
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for s in starts:
        for d in [s.resolve(), *s.resolve().parents]:
            if (d / MANIFEST).is_file():
                return d
    raise BookError(f"{MANIFEST}: not found in {starts[0]} or any parent directory "
                    "(run from inside the repository, or pass --root)")


def load_book(root: Path | str | None = None, *, require_notebooks: bool = False) -> Book:
    """Find the repository root (see :func:`find_root`) and read its ``book.toml``."""
    return read_manifest(find_root(root) / MANIFEST, require_notebooks=require_notebooks)


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------


def module_file(root: Path, name: str) -> Path | None:
    """Where the dotted module ``name`` of the manifest lives under ``root``: the module file
    ``mobilevit_edu/a/b.py`` or the package's ``mobilevit_edu/a/b/__init__.py``; ``None`` if
    neither exists (or ``name`` is not a dotted module name)."""
    if not MODULE_NAME_RE.match(name):
        return None
    base = root / LIBRARY / Path(*name.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_problems(book: Book, i: int, ch: Chapter) -> list[str]:
    problems = []
    for name in ch.modules:
        where = f"{MANIFEST}: chapters[{i}].modules"
        if not MODULE_NAME_RE.match(name):
            problems.append(f"{where}: {name!r} is not a dotted module name like 'nn.layers'")
        elif module_file(book.root, name) is None:
            rel = f"{LIBRARY}/{name.replace('.', '/')}"
            problems.append(f"{where}: {LIBRARY}.{name}: neither {rel}.py nor {rel}/__init__.py exists")
    return problems


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
    problems: list[str] = []
    listed = set()
    for i, ch in enumerate(book.chapters):
        listed.add(Path(ch.path).name)
        problems.extend(_module_problems(book, i, ch))
        nb_path = book.notebook(ch)
        if not nb_path.is_file():
            problems.append(f"{MANIFEST}: chapters[{i}].path: {ch.path} does not exist")
            continue
        problems.extend(_notebook_problems(nb_path, ch.path))
    for nb_path in sorted((book.root / "chapters").glob("*.ipynb")):
        if nb_path.name not in listed:
            problems.append(f"chapters/{nb_path.name}: (file): not listed in {MANIFEST} [[chapters]]")
    return problems


# --------------------------------------------------------------------------------------------
# Markdown tables for chapter 00
# --------------------------------------------------------------------------------------------


def toc_markdown(book: Book) -> str:
    """The table of contents as a Markdown table (links are relative to ``chapters/``)."""
    rows = ["| # | chapter | paper | ci budget |", "|---|---|---|---|"]
    for ch in book.chapters:
        paper = ", ".join(ch.paper) or "—"
        rows.append(f"| {ch.tag} | [{ch.title}]({Path(ch.path).name}) | {paper} | {ch.budget_ci} s |")
    return "\n".join(rows)


def module_map_markdown(book: Book) -> str:
    """Which chapter introduces which module, as a Markdown table: one row per dotted name of the
    manifest, shown in full (``mobilevit_edu.nn.patches``), in order of first appearance."""
    owners: dict[str, list[Chapter]] = {}
    for ch in book.chapters:
        for mod in ch.modules:
            owners.setdefault(mod, []).append(ch)
    rows = ["| module | chapter |", "|---|---|"]
    for mod, chs in owners.items():
        links = ", ".join(f"[{c.tag} {c.title}]({Path(c.path).name})" for c in chs)
        rows.append(f"| `{LIBRARY}.{mod}` | {links} |")
    return "\n".join(rows)
