"""The book's ledger of results: each number a chapter measured, beside the paper's number.

Chapter 15 (the reproduction report) rebuilds one table per table or figure of the paper from
these files and never retypes a number. A chapter records what it measured at its end::

    from mobilevit_edu.book.results import Result, record
    record("12", [
        Result("Table 1", "SSDLite MobileViT-XS parameters", paper=2.7, ours=2.742, unit="M",
               kind="exact"),
    ])

Each chapter owns one file, ``results/NN.json``; recording again replaces the rows with the same
``(source, item)`` and keeps the others. Files are written atomically.

Where: ``$MOBILEVIT_EDU_RESULTS`` if set; else ``results/`` next to ``book.toml`` under the ``full``
profile (the committed results, from the run that made the committed outputs) and
``_build/results-ci/`` under the ``ci`` profile, so a quick test run never overwrites them.

The kind of match says how far our number can be compared with the paper's:

- ``exact``: an architecture fact (parameters, MACs, shapes, sampler tables) that must match;
- ``inference``: a number the paper prints that we can only match by reading it (e.g. which
  operations its 0.7 G MACs count, or the activation sizes its Table 8 implies): checked like
  an exact fact, but the reading is ours, not the paper's statement;
- ``small-scale``: a claim of the paper tested with the protocol of
  :mod:`mobilevit_edu.experiments` at a small scale here (the shapes data, seeds, a 95 %
  interval): ``paper`` states the claim's direction, ``ours`` the effect with its interval,
  ``verdict`` says *agrees*, *contradicts* or *inconclusive* -- never a ratio of our accuracy
  to the paper's;
- ``other-hardware``: the same kind of measurement on different hardware (our CPU, not an iPhone).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobilevit_edu.book.profile import profile_name

__all__ = ["KINDS", "Result", "results_dir", "record", "load_results"]

RESULTS_ENV = "MOBILEVIT_EDU_RESULTS"
KINDS: dict[str, str] = {
    "exact": "exact architecture fact",
    "inference": "our reading of the paper (inferred)",
    "small-scale": "same protocol at small scale",
    "other-hardware": "measured on other hardware",
}
_CHAPTER_RE = re.compile(r"^\d{2}$")

Number = float | int | str | None


@dataclass(frozen=True)
class Result:
    """One row of the report: the paper's number and ours for one item of one table or figure.

    ``source`` names the paper's table or figure ("Table 1", "Fig. 9"); ``item`` the row
    ("MobileViT-XS, SSDLite parameters"). ``paper`` may be ``None`` where the paper gives no
    number (a figure drawn without values). ``unit`` is shared by both numbers."""

    source: str
    item: str
    paper: Number
    ours: Number
    unit: str = ""
    kind: str = "exact"
    note: str = ""
    chapter: str = field(default="", compare=False)
    verdict: str = ""  # small-scale rows: agrees / contradicts / inconclusive

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if not self.source or not self.item:
            raise ValueError("a Result needs a source (e.g. 'Table 1') and an item (its row)")
        for name in ("paper", "ours"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}={value!r} for {self.item!r}: record finite numbers only")
            if value is not None and not isinstance(value, (int, float, str)):
                raise TypeError(
                    f"{name} for {self.item!r} must be a number or a string, got "
                    f"{type(value).__name__}; convert tensors with .item()"
                )


def _default_root() -> Path:
    here = Path(__file__).resolve().parents[2]
    return here if (here / "book.toml").exists() else Path.cwd()


def results_dir(profile: str | None = None) -> Path:
    """The folder the chapters record into (see the module docstring)."""
    if env := os.environ.get(RESULTS_ENV):
        return Path(env)
    root = _default_root()
    return root / "results" if profile_name(profile) == "full" else root / "_build" / "results-ci"


def _to_row(r: Result) -> dict:
    row = asdict(r)
    row.pop("chapter")
    return row


def record(chapter: str, rows: Sequence[Result], directory: str | os.PathLike | None = None,
           *, replace: bool = False) -> Path:
    """Record ``rows`` for ``chapter`` ("12") into ``results/12.json`` and return its path.

    Rows with the same ``(source, item)`` as a previous recording replace it; others are kept,
    unless ``replace=True``: then the file holds exactly ``rows`` (a chapter that records all
    its rows in one call uses it, so that a row it no longer makes does not linger).
    Under the ``ci`` profile the rows go to ``_build/results-ci/`` unless
    ``$MOBILEVIT_EDU_RESULTS`` says otherwise."""
    if not _CHAPTER_RE.match(str(chapter)):
        raise ValueError(f"chapter must be a two-digit tag like '07', got {chapter!r}")
    rows = list(rows)
    if not all(isinstance(r, Result) for r in rows):
        raise TypeError("record() takes a sequence of Result")
    keys = [(r.source, r.item) for r in rows]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"two rows for the same item {dup}; give each row its own item")
    folder = Path(directory) if directory is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    old = json.loads(path.read_text()).get("results", []) if path.exists() and not replace else []
    merged = {(row["source"], row["item"]): row for row in old}
    merged.update({(r.source, r.item): _to_row(r) for r in rows})
    payload = {"chapter": chapter, "profile": profile_name(None), "results": list(merged.values())}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_results(directory: str | os.PathLike | None = None) -> list[Result]:
    """Every recorded row, in chapter order, each with its ``chapter`` filled in."""
    folder = Path(directory) if directory is not None else results_dir()
    out: list[Result] = []
    for path in sorted(folder.glob("[0-9][0-9].json")):
        try:
            payload = json.loads(path.read_text())
            rows: Iterable[dict] = payload["results"]
            out.extend(Result(**row, chapter=payload["chapter"]) for row in rows)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a results file written by record() ({err})") from err
    return out
