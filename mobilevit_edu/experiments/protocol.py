"""The experiment protocol: arms, seeds, claims of the paper as directions, and the loop that
runs what the ledger does not hold yet.

An :class:`Experiment` is a set of :class:`Arm` s (configurations that differ in one thing the
paper varies), a ``run`` function (configuration, seed -> metrics), the seeds every arm runs
with (at least five), and the paper's :class:`Claim` s about it, each stated as a direction
between two arms ("MobileViT-XXS more accurate than MobileNetV2-0.5"). :func:`run_experiment`
runs every (arm, seed) not yet in the :class:`~mobilevit_edu.experiments.ledger.Ledger` and
records each as it finishes; :func:`claim_rows` turns the recorded runs into mean +- sd per arm,
the 95 % interval of each claimed difference and a verdict (:mod:`.stats`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mobilevit_edu.experiments.ledger import Ledger, Run, code_version, machine, run_key
from mobilevit_edu.experiments.stats import Interval, Summary, summarize, verdict, welch_interval

__all__ = ["Arm", "Claim", "Experiment", "pending", "run_experiment", "arm_values",
           "ClaimRow", "claim_rows"]


@dataclass(frozen=True)
class Arm:
    """One configuration of an experiment: a name and the settings its run function reads."""

    name: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as a direction: ``metric`` of arm ``a`` is larger than that of arm
    ``b`` (``sign=+1``) or smaller (``sign=-1``)."""

    statement: str  # e.g. "MobileViT-XXS more accurate than MobileNetV2 at similar size"
    source: str  # where the paper makes it, e.g. "Fig. 8b"
    a: str
    b: str
    metric: str = "test_acc"
    sign: int = +1
    scale: float = 100.0  # metrics are fractions; intervals are reported in points


@dataclass(frozen=True)
class Experiment:
    """Arms x seeds of one ``run`` function, with the claims they test."""

    name: str
    title: str
    paper: str  # the figure or table of the paper it rebuilds
    arms: tuple[Arm, ...]
    run: Callable[[Mapping[str, Any], int], dict[str, float]]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    claims: tuple[Claim, ...] = ()
    packages: tuple[str, ...] = ("nn", "models", "data", "train")  # the code its runs depend on
    notes: str = ""
    depends: tuple[str, ...] = field(default=())  # experiments whose results choose settings

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name}: arm names repeat: {names}")
        for c in self.claims:
            if c.a not in names or c.b not in names:
                raise ValueError(f"experiment {self.name}: claim {c.statement!r} names an arm "
                                 f"that does not exist (arms: {names})")


def pending(exp: Experiment, ledger: Ledger, seeds: Sequence[int] | None = None,
            code: str | None = None) -> list[tuple[Arm, int, str]]:
    """The (arm, seed, key) runs of ``exp`` that ``ledger`` does not hold for this code."""
    code = code or code_version(exp.packages)
    done = {r.key for r in ledger.runs(exp.name)}
    out = []
    for seed in (seeds if seeds is not None else exp.seeds):
        for arm in exp.arms:
            key = run_key(exp.name, arm.name, seed, dict(arm.config), code)
            if key not in done:
                out.append((arm, seed, key))
    return out


def run_experiment(exp: Experiment, ledger: Ledger, *, seeds: Sequence[int] | None = None,
                   progress: bool = True, log: Callable[[str], None] = print) -> int:
    """Run every (arm, seed) of ``exp`` that ``ledger`` lacks, seed by seed (so a stopped set
    has whole seeds), recording each run as it finishes. Returns the number of runs made."""
    code = code_version(exp.packages)
    todo = pending(exp, ledger, seeds, code)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=exp.name, unit="run")
    for arm, seed, key in todo:
        t0 = time.perf_counter()
        metrics = exp.run(dict(arm.config), seed)
        run = Run(exp.name, arm.name, seed, dict(arm.config), code,
                  {k: float(v) for k, v in metrics.items()}, time.perf_counter() - t0,
                  machine(), key)
        ledger.record(run)
        if bar is not None:
            bar.update()
        shown = " ".join(f"{k}={v:.4f}" for k, v in run.metrics.items())
        log(f"{exp.name} {arm.name} seed {seed}: {shown} ({run.wall_s:.0f} s)")
    if bar is not None:
        bar.close()
    return len(todo)


def arm_values(exp: Experiment, ledger: Ledger, metric: str,
               seeds: Sequence[int] | None = None) -> dict[str, list[float]]:
    """``{arm: [metric of each recorded seed]}`` for the runs of the current code."""
    code = code_version(exp.packages)
    keep = set(seeds if seeds is not None else exp.seeds)
    runs = {r.key: r for r in ledger.runs(exp.name) if r.code == code and r.seed in keep}
    out: dict[str, list[float]] = {a.name: [] for a in exp.arms}
    for arm in exp.arms:
        for seed in sorted(keep):
            run = runs.get(run_key(exp.name, arm.name, seed, dict(arm.config), code))
            if run is not None and metric in run.metrics:
                out[arm.name].append(run.metrics[metric])
    return out


@dataclass(frozen=True)
class ClaimRow:
    """One claim judged: the arms' summaries, the interval of ``a - b`` and the verdict."""

    experiment: str
    claim: Claim
    a: Summary
    b: Summary
    interval: Interval
    verdict: str

    def line(self) -> str:
        c = self.claim
        return (f"{c.source}: {c.statement}: {c.a} {self.a} vs {c.b} {self.b}; "
                f"difference {self.interval} points -> {self.verdict}")


def claim_rows(exp: Experiment, ledger: Ledger,
               seeds: Sequence[int] | None = None) -> list[ClaimRow]:
    """Every claim of ``exp`` judged on the recorded runs (needs >= 2 seeds per arm)."""
    rows = []
    for claim in exp.claims:
        values = arm_values(exp, ledger, claim.metric, seeds)
        a = [claim.scale * v for v in values[claim.a]]
        b = [claim.scale * v for v in values[claim.b]]
        interval = welch_interval(a, b)
        rows.append(ClaimRow(exp.name, claim, summarize(a), summarize(b), interval,
                             verdict(interval, claim.sign)))
    return rows
