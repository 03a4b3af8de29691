"""The reproduction report: every table and figure of the paper the book rebuilds, ours beside theirs.

Chapter 15. The rows come from :mod:`mobilevit_edu.book.results`, written by the chapters that measured
them; nothing here retypes a number. One table per source (the paper's Table 1, Table 2, ..., Fig. 4,
...), each row with the paper's number, this book's number, the kind of match (an exact
architecture fact, the same protocol at small scale, or a measurement on other hardware) and a
link to the chapter that made it.

Which results are read: the folder :func:`mobilevit_edu.book.results.results_dir` gives for the current
profile; a chapter missing there is taken from the committed ``results/`` (the full run), and the
report says so (see :func:`collect`). The report's figure, ours / paper for every row, is drawn by
:func:`mobilevit_edu.plots.report.plot_report`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mobilevit_edu.book import paper
from mobilevit_edu.book.manifest import find_root, load_book
from mobilevit_edu.book.results import KINDS, Result, load_results, results_dir
from mobilevit_edu.experiments.protocol import ClaimRow

__all__ = ["Report", "collect", "agrees", "source_order", "report_markdown", "not_rebuilt",
           "claim_results"]


@dataclass
class Report:
    """The rows of the report and where they came from."""

    rows: list[Result]
    sources: dict[str, Path]  # chapter tag -> the folder its rows were read from
    chapters: dict[str, str]  # chapter tag -> notebook file name, for links
    #: the kinds of match, in order, with their labels (what ``plots.report.plot_report`` draws)
    kinds: dict[str, str] = field(default_factory=lambda: dict(KINDS))

    def by_source(self) -> dict[str, list[Result]]:
        """Rows grouped by the paper's table or figure, in the paper's order."""
        groups: dict[str, list[Result]] = {}
        for r in sorted(self.rows, key=lambda r: source_order(r.source)):
            groups.setdefault(r.source, []).append(r)
        return groups

    def counts(self) -> dict[str, int]:
        """How many rows of each kind."""
        return {k: sum(r.kind == k for r in self.rows) for k in self.kinds}


def _chapter_files(root: Path) -> dict[str, str]:
    try:
        book = load_book(root)
    except Exception:  # noqa: BLE001 (a report without links is still a report)
        return {}
    return {ch.tag: Path(ch.path).name for ch in book.chapters}


def collect(primary: Path | None = None, fallback: Path | None = None) -> Report:
    """Read every chapter's results: from ``primary`` (default: :func:`results_dir`), and for a
    chapter that has no file there, from ``fallback`` (default: the committed ``results/``)."""
    root = find_root(Path(__file__).resolve().parent)
    primary = Path(primary) if primary is not None else results_dir()
    fallback = Path(fallback) if fallback is not None else root / "results"
    rows: list[Result] = []
    sources: dict[str, Path] = {}
    first = load_results(primary) if primary.is_dir() else []
    rows.extend(first)
    sources.update({r.chapter: primary for r in first})
    if fallback.resolve() != primary.resolve() and fallback.is_dir():
        extra = [r for r in load_results(fallback) if r.chapter not in sources]
        rows.extend(extra)
        sources.update({r.chapter: fallback for r in extra})
    return Report(rows=rows, sources=dict(sorted(sources.items())), chapters=_chapter_files(root))


_SOURCE_RE = re.compile(r"^(Table|Fig\.)\s*(\d+)([a-z]?)")


def source_order(source: str) -> tuple:
    """Sort key: tables first (by number), then figures, then everything else (§, App.)."""
    m = _SOURCE_RE.match(source)
    if not m:
        return (2, 0, source)
    return (0 if m.group(1) == "Table" else 1, int(m.group(2)), m.group(3) + source)


def _decimals(x: float) -> int:
    """Digits after the point in the paper's printed number (1.3 -> 1, 375 -> 0)."""
    text = repr(float(x))
    if "e" in text:
        return 6
    frac = text.split(".")[1].rstrip("0")
    return len(frac)


def agrees(r: Result) -> bool | None:
    """For an exact (or inferred) row with two numbers: does ours round to the paper's printed
    number?

    ``None`` where the question does not apply (small-scale or other-hardware rows, text, or a
    row without a paper number)."""
    if r.kind not in ("exact", "inference") or r.paper is None:
        return None
    if isinstance(r.paper, str) or isinstance(r.ours, str):
        return str(r.paper) == str(r.ours)
    if isinstance(r.paper, bool) or isinstance(r.ours, bool):
        return r.paper == r.ours
    d = _decimals(r.paper)
    return math.isclose(round(float(r.ours), d), float(r.paper), abs_tol=0.5 * 10**-d / 10)


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 1e-3:
            return f"{value:.1e}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _verdict(r: Result) -> str:
    ok = agrees(r)
    if ok is True:
        return "✓ matches"
    if ok is False:
        return "✗ differs"
    if r.kind == "exact":
        return "exact (no paper number)" if r.paper is None else "exact"
    if r.kind == "small-scale":
        return r.verdict or "—"
    if r.kind == "other-hardware" and isinstance(r.paper, (int, float)) and \
            isinstance(r.ours, (int, float)) and r.paper:
        return f"ours / paper = {float(r.ours) / float(r.paper):.2f}"
    return "—"


def report_markdown(report: Report, *, sources: Sequence[str] | None = None, titles: bool = True) -> str:
    """The report as Markdown: one table per source; chapter cells link to the chapter."""
    names = {t.source: t.caption for t in paper.TABLES.values()} if titles else {}
    out: list[str] = []
    for source, rows in report.by_source().items():
        if sources is not None and source not in sources:
            continue
        title = names.get(source)
        out.append(f"#### {source}" + (f": {title}" if title else ""))
        out.append("")
        out.append("| item | paper | this book | unit | kind of match | verdict | chapter |")
        out.append("|---|---:|---:|---|---|---|---|")
        for r in rows:
            file = report.chapters.get(r.chapter)
            chapter = f"[{r.chapter}]({file})" if file else r.chapter
            item = _fmt(r.item) + (f" <br><small>{_fmt(r.note)}</small>" if r.note else "")
            out.append(f"| {item} | {_fmt(r.paper)} | {_fmt(r.ours)} | {r.unit} | {report.kinds[r.kind]} "
                       f"| {_verdict(r)} | {chapter} |")
        out.append("")
    return "\n".join(out)


def not_rebuilt(report: Report) -> list[tuple[str, str]]:
    """The paper's tables and figures (``mobilevit_edu.book.paper.TABLES``) without a row in the
    report, as ``(source, caption)``. A row for "Table 1" covers its parts "Table 1a", "Table 1b"."""
    covered = {r.source for r in report.rows}
    return [(t.source, t.caption) for t in paper.TABLES.values()
            if t.source not in covered and re.sub(r"(\d)[a-z]$", r"\1", t.source) not in covered]


def claim_results(rows: Sequence[ClaimRow], note: str = "") -> list[Result]:
    """The report's rows for claims judged by the experiment protocol: the claim's direction as
    the paper's entry, our effect with its 95 % interval, and the verdict (kind
    ``small-scale``; never a ratio of our accuracy to the paper's)."""
    out = []
    for r in rows:
        c = r.claim
        a, b = (c.a, c.b) if c.a != c.b else (f"{c.a} {c.metrics[0]}", c.metrics[1])
        direction = f"{a} {'>' if c.sign > 0 else '<'} {b}"
        out.append(Result(c.source, c.statement, paper=direction,
                          ours=f"{r.interval} (95 %, n={r.a.n}/{r.b.n})", unit=c.unit,
                          kind="small-scale", note=note, verdict=r.verdict))
    return out
