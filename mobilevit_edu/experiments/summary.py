"""What the chapters show of an experiment: each arm's mean +- sd per metric, every claim's
verdict (the disagreements first), and the settings the runs shared.

The book's small-scale evidence (chapters 10-13 and the report of chapter 15) is read from the
ledger through these functions, never typed into a chapter: a reader who re-runs a set sees the
tables change with it. Everything here reads the runs of the *current* code only
(:func:`~mobilevit_edu.experiments.protocol.arm_values`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mobilevit_edu.experiments.ledger import Ledger, Run
from mobilevit_edu.experiments.protocol import (
    ClaimRow, Experiment, arm_values, claim_rows, design,
)
from mobilevit_edu.experiments.stats import Summary, summarize

__all__ = ["VERDICT_ORDER", "arm_runs", "arm_table", "format_arm_table", "all_claims", "format_claims",
           "shared_settings", "wall_time"]

VERDICT_ORDER = {"contradicts": 0, "inconclusive": 1, "agrees": 2}  # disagreements first


def arm_runs(exp: Experiment, ledger: Ledger) -> dict[str, list[Run]]:
    """``{arm: [the ledger's run of each seed]}`` for the current code, in seed order (a run
    shared with another experiment counts here too)."""
    runs = {r.key: r for r in ledger.runs()}
    out: dict[str, list[Run]] = {arm.name: [] for arm in exp.arms}
    for arm, _seed, key in design(exp):
        if key in runs:
            out[arm.name].append(runs[key])
    return out


def arm_table(exp: Experiment, ledger: Ledger, metrics: Sequence[str],
              scale: Mapping[str, float] | None = None) -> dict[str, dict[str, Summary]]:
    """``{arm: {metric: Summary over seeds}}`` (accuracies in points unless ``scale`` says
    otherwise for a metric); an arm without runs of the current code raises a ``ValueError``
    that says how to run them."""
    scale = {**{m: 100.0 for m in metrics}, **(scale or {})}
    out: dict[str, dict[str, Summary]] = {arm.name: {} for arm in exp.arms}
    for metric in metrics:
        for arm, values in arm_values(exp, ledger, metric).items():
            if not values:
                raise ValueError(f"{exp.name}: no run of arm {arm!r} with {metric!r} for the "
                                 f"current code; run `python -m mobilevit_edu.experiments run "
                                 f"{exp.name}`")
            out[arm][metric] = summarize([scale[metric] * v for v in values])
    return out


def format_arm_table(table: Mapping[str, Mapping[str, Summary]],
                     extra: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A plain-text table: one line per arm, ``mean ± sd`` per metric, then ``extra`` columns
    (e.g. parameters and MACs of each arm)."""
    arms = list(table)
    metrics = list(next(iter(table.values())))
    cols = list(next(iter(extra.values()))) if extra else []
    width = max(len(a) for a in arms) + 2
    wide = {c: max(14, len(c) + 2) for c in cols}
    head = f"{'arm':{width}s}" + "".join(f"{m:>16s}" for m in metrics) + "".join(
        f"{c:>{wide[c]}s}" for c in cols)
    lines = [head]
    for arm in arms:
        row = f"{arm:{width}s}" + "".join(
            f"{table[arm][m].mean:10.1f} ± {table[arm][m].sd:3.1f}" for m in metrics)
        for c in cols:
            value = extra[arm][c]
            row += f"{value:{wide[c]},}" if isinstance(value, int) else f"{value:>{wide[c]}}"
        lines.append(row)
    n = {s.n for row in table.values() for s in row.values()}
    lines.append(f"(mean ± sd over {', '.join(map(str, sorted(n)))} seeds)")
    return "\n".join(lines)


def all_claims(experiments: Iterable[Experiment], ledger: Ledger) -> list[ClaimRow]:
    """Every claim of ``experiments`` judged, sorted with the disagreements first
    (contradicts, inconclusive, agrees), then in catalog order."""
    rows = [row for exp in experiments if exp.claims for row in claim_rows(exp, ledger)]
    return sorted(rows, key=lambda r: VERDICT_ORDER[r.verdict])


def format_claims(rows: Sequence[ClaimRow]) -> str:
    """One block per claim: the verdict and the paper's claim, then the two arms (mean ± sd) and
    the difference with its 95 % interval."""
    out = []
    for r in rows:
        c = r.claim
        if c.a != c.b:
            a, b, diff = c.a, c.b, f"{c.a} − {c.b}"
        else:
            a, b, diff = f"{c.a} [{c.metrics[0]}]", f"[{c.metrics[1]}]", "paired difference"
        out.append(f"{r.verdict.upper():12s} {c.source}: {c.statement}\n"
                   f"{'':13s}{a} {r.a.mean:.1f} ± {r.a.sd:.1f} vs {b} {r.b.mean:.1f} ± "
                   f"{r.b.sd:.1f} (n={r.a.n}/{r.b.n})\n"
                   f"{'':13s}{diff} = {r.interval} {c.unit} (95 % interval)")
    return "\n".join(out)


def shared_settings(exp: Experiment) -> dict[str, Any]:
    """The settings every arm of ``exp`` has in common (what the chapter states once)."""
    configs = [dict(a.config) for a in exp.arms]
    return {k: v for k, v in configs[0].items() if all(c.get(k) == v for c in configs[1:])}


def wall_time(experiments: Iterable[Experiment], ledger: Ledger) -> dict[str, float]:
    """Seconds of training the ledger's current runs of each experiment took (each distinct
    run counted once, in the first experiment that uses it) and the total."""
    runs = ledger.runs()
    seen: set[str] = set()
    out: dict[str, float] = {}
    for exp in experiments:
        keys = {key for _, _, key in design(exp)}
        mine = [r for r in runs if r.key in keys and r.key not in seen]
        seen |= {r.key for r in mine}
        out[exp.name] = sum(r.wall_s for r in mine)
    out["total"] = sum(out.values())
    return out
