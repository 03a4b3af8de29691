"""``book figures``: one command regenerates every figure in ``figures/`` (the book's tooling).

Every figure of the book is drawn by a seeded library function in :mod:`mobilevit_edu.plots` and
saved without metadata, so re-running the chapters (chapter 00 explains how) reproduces each file
byte for byte, except the few drawn from wall-clock timings (:data:`TIMING_FIGURES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mobilevit_edu.book.manifest import Book
from mobilevit_edu.book.runner import RunResult, run_chapters

__all__ = ["FIGURES_ENV", "TIMING_FIGURES", "FiguresReport", "regenerate_figures"]

#: The folder :func:`mobilevit_edu.plots.save.figures_dir` saves into (read there, set here).
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
