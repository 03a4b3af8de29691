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
from mobilevit_edu.experiments.stats import (
    Interval, Summary, paired_interval, summarize, verdict, welch_interval,
)

__all__ = ["Arm", "Claim", "Experiment", "runner_name", "design", "pending", "run_experiments",
           "run_experiment", "arm_values",
           "ClaimRow", "claim_rows"]


@dataclass(frozen=True)
class Arm:
    """One configuration of an experiment: a name and the settings its run function reads."""

    name: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as a direction: ``metric`` of arm ``a`` is larger than
    ``metric_b`` (default: the same metric) of arm ``b`` (``sign=+1``) or smaller (``sign=-1``).
    With ``a == b`` the two metrics come from the same runs and the interval is paired (e.g.
    the EMA weights against the last weights of each run)."""

    statement: str  # e.g. "MobileViT-XXS more accurate than MobileNetV2 at similar size"
    source: str  # where the paper makes it, e.g. "Fig. 8b"
    a: str
    b: str
    metric: str = "test_acc"
    sign: int = +1
    scale: float = 100.0  # metrics are fractions; intervals are reported in points
    metric_b: str | None = None  # the metric of arm b, if not ``metric``

    @property
    def metrics(self) -> tuple[str, str]:
        """The metric read from arm ``a`` and the one read from arm ``b``."""
        return self.metric, self.metric_b or self.metric

    @property
    def unit(self) -> str:
        """What the interval is in: points for accuracies (fractions x 100), else the metric."""
        return "points" if self.scale == 100.0 else self.metric


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
    packages: tuple[str, ...] = ("nn", "models", "data", "train",  # the code its runs depend on
                                 "experiments/classification")
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
            if c.a == c.b and c.metrics[0] == c.metrics[1]:
                raise ValueError(f"experiment {self.name}: claim {c.statement!r} compares an "
                                 "arm's metric with itself; name metric_b")


def runner_name(exp: Experiment) -> str:
    """The identity of ``exp``'s run function in run keys (``module.function``)."""
    return f"{exp.run.__module__}.{exp.run.__qualname__}"


def _key(exp: Experiment, arm: Arm, seed: int, code: str) -> str:
    return run_key(runner_name(exp), seed, dict(arm.config), code)


def design(exp: Experiment, seeds: Sequence[int] | None = None,
           code: str | None = None) -> list[tuple[Arm, int, str]]:
    """Every (arm, seed, key) of ``exp`` for this code, seed by seed."""
    code = code or code_version(exp.packages)
    return [(arm, seed, _key(exp, arm, seed, code))
            for seed in (seeds if seeds is not None else exp.seeds) for arm in exp.arms]


def pending(exp: Experiment, ledger: Ledger, seeds: Sequence[int] | None = None,
            code: str | None = None) -> list[tuple[Arm, int, str]]:
    """The (arm, seed, key) runs of ``exp`` that ``ledger`` does not hold for this code.

    A run is found by its key, whichever experiment recorded it: an arm with the same settings
    as an arm of another experiment (chapter 10's MobileViT-XXS is also Table 7's "LS" arm and
    Fig. 14's "with fusion") is trained once and counted in both."""
    done = {r.key for r in ledger.runs()}
    return [t for t in design(exp, seeds, code) if t[2] not in done]


def run_experiments(exps: Sequence[Experiment], ledger: Ledger, *,
                    seeds: Sequence[int] | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, shard: tuple[int, int] = (0, 1)) -> int:
    """Run every (arm, seed) of ``exps`` that ``ledger`` lacks, experiment by experiment and
    seed by seed (so a stopped set has whole seeds), each distinct run once, recording each as
    it finishes. Returns the number of runs made.

    ``shard=(i, n)`` runs only the ``i``-th of every ``n`` distinct runs of the whole design
    (done or not), so that ``n`` processes (one per core, one thread each) share the set and
    each owns the same runs whenever it is started; they record into the same ledger, and a
    run's numbers do not depend on which process ran it. A run another process recorded
    meanwhile is not recorded twice."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= i < n")
    everything, seen = [], set()  # every distinct run of the set, in a fixed order
    for exp in exps:
        code = code_version(exp.packages)
        for arm, seed, key in design(exp, seeds, code):
            if key not in seen:
                seen.add(key)
                everything.append((exp, arm, seed, key, code))
    done = {r.key for r in ledger.runs()}
    todo = [d for d in everything[index::count] if d[3] not in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=",".join(e.name for e in exps), unit="run")
    for exp, arm, seed, key, code in todo:
        t0 = time.perf_counter()
        metrics = exp.run(dict(arm.config), seed)
        run = Run(exp.name, arm.name, seed, dict(arm.config), code,
                  {k: float(v) for k, v in metrics.items()}, time.perf_counter() - t0,
                  machine(), key, runner_name(exp))
        if ledger.get(key) is None:
            ledger.record(run)
        if bar is not None:
            bar.update()
        shown = " ".join(f"{k}={v:.4f}" for k, v in run.metrics.items())
        log(f"{exp.name} {arm.name} seed {seed}: {shown} ({run.wall_s:.0f} s)")
    if bar is not None:
        bar.close()
    return len(todo)


def run_experiment(exp: Experiment, ledger: Ledger, *, seeds: Sequence[int] | None = None,
                   progress: bool = True, log: Callable[[str], None] = print,
                   shard: tuple[int, int] = (0, 1)) -> int:
    """:func:`run_experiments` for one experiment."""
    return run_experiments([exp], ledger, seeds=seeds, progress=progress, log=log, shard=shard)


def arm_values(exp: Experiment, ledger: Ledger, metric: str,
               seeds: Sequence[int] | None = None) -> dict[str, list[float]]:
    """``{arm: [metric of each recorded seed]}`` for the runs of the current code."""
    code = code_version(exp.packages)
    keep = set(seeds if seeds is not None else exp.seeds)
    runs = {r.key: r for r in ledger.runs() if r.code == code and r.seed in keep}
    out: dict[str, list[float]] = {a.name: [] for a in exp.arms}
    for arm in exp.arms:
        for seed in sorted(keep):
            run = runs.get(_key(exp, arm, seed, code))
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
        a, b = (c.a, c.b) if c.a != c.b else (f"{c.a} ({c.metrics[0]})", f"({c.metrics[1]})")
        return (f"{c.source}: {c.statement}: {a} {self.a} vs {b} {self.b}; "
                f"difference {self.interval} {c.unit} -> {self.verdict}")


def claim_rows(exp: Experiment, ledger: Ledger,
               seeds: Sequence[int] | None = None) -> list[ClaimRow]:
    """Every claim of ``exp`` judged on the recorded runs (needs >= 2 seeds per arm)."""
    rows = []
    for claim in exp.claims:
        metric_a, metric_b = claim.metrics
        a = [claim.scale * v for v in arm_values(exp, ledger, metric_a, seeds)[claim.a]]
        b = [claim.scale * v for v in arm_values(exp, ledger, metric_b, seeds)[claim.b]]
        interval = paired_interval(a, b) if claim.a == claim.b else welch_interval(a, b)
        rows.append(ClaimRow(exp.name, claim, summarize(a), summarize(b), interval,
                             verdict(interval, claim.sign)))
    return rows
