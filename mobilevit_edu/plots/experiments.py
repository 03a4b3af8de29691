"""Pictures of the small-scale experiments (chapters 10-13 and 15): every seed of every arm, the
effect of each claim of the paper with its 95 % interval, and accuracy across test resolutions
(Fig. 7) with the spread over seeds.

Every function draws, returns the figure, and saves ``figures/<name>.png`` only when given ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mobilevit_edu.experiments.protocol import ClaimRow
from mobilevit_edu.plots.save import finish

__all__ = ["VERDICT_COLOURS", "plot_seeds", "plot_claims", "plot_accuracy_vs_size"]

VERDICT_COLOURS = {"agrees": "#009E73", "contradicts": "#D55E00", "inconclusive": "#7F7F7F"}


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, sd


def plot_seeds(panels: Mapping[str, Mapping[str, Sequence[float]]], *, ylabel: str = "test top-1 (%)",
               chance: float | None = None, name: str | None = None) -> Figure:
    """One panel per ``{title: {arm: [value per seed]}}``: a dot per seed, the mean as a bar
    with +- one standard deviation."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, arms) in zip(axes[0], panels.items()):
        for k, (arm, values) in enumerate(arms.items()):
            mean, sd = _mean_sd(values)
            ax.bar(k, mean, width=0.6, color=f"C{k}", alpha=0.35)
            ax.errorbar(k, mean, yerr=sd, color="black", capsize=4, lw=1)
            offsets = [(j - (len(values) - 1) / 2) * 0.07 for j in range(len(values))]
            ax.scatter([k + o for o in offsets], values, color=f"C{k}", s=16, zorder=3)
            ax.annotate(f"{mean:.1f}", (k, mean), textcoords="offset points", xytext=(14, 3),
                        fontsize=8)
        if chance is not None:
            ax.axhline(chance, color="0.5", lw=1, ls="-.", label="chance")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xticks(range(len(arms)), list(arms), fontsize=8)
        ax.set(title=title, ylabel=ylabel)
        ax.title.set_fontsize(10)
    return finish(fig, name)


def plot_claims(rows: Sequence[ClaimRow], *, name: str | None = None,
                title: str = "the paper's claims at small scale") -> Figure:
    """A forest plot: for each claim (in points) the difference the paper claims positive,
    oriented so that right of zero is the paper's direction, with its 95 % interval, coloured
    by verdict. Claims in other units (e.g. updates) are left out of the picture."""
    rows = [r for r in rows if r.claim.scale == 100.0]
    fig, ax = plt.subplots(figsize=(8.6, 0.42 * len(rows) + 1.3))
    for y, r in enumerate(reversed(rows)):
        s = r.claim.sign
        low, high = sorted((s * r.interval.low, s * r.interval.high))
        colour = VERDICT_COLOURS[r.verdict]
        ax.plot([low, high], [y, y], color=colour, lw=2.2)
        ax.plot(s * r.interval.diff, y, "o", color=colour)
    ax.axvline(0, color="0.3", lw=1)
    labels = [f"{r.claim.source}: {r.claim.statement}" for r in reversed(rows)]
    ax.set_yticks(range(len(rows)), [t if len(t) < 78 else t[:75] + "..." for t in labels],
                  fontsize=7.5)
    for verdict, colour in VERDICT_COLOURS.items():
        ax.plot([], [], color=colour, lw=2.2, label=verdict)
    ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="effect in the paper's direction (points; 95 % interval)", title=title)
    ax.title.set_fontsize(10)
    return finish(fig, name)


def plot_accuracy_vs_size(arms: Mapping[str, Mapping[int, Sequence[float]]], train_size: int, *,
                          train_range: tuple[int, int] | None = None,
                          name: str | None = None) -> Figure:
    """Fig. 7 with seeds: test top-1 (%) against test resolution, mean +- sd per arm
    (``{arm: {size: [value per seed]}}``); the training size (and the multi-scale range,
    shaded) marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if train_range is not None:
        ax.axvspan(*train_range, color="#009E73", alpha=0.1, label="multi-scale training range")
    ax.axvline(train_size, color="0.5", lw=1, ls="--", label=f"standard: trained at {train_size}")
    for arm, by_size in arms.items():
        sizes = sorted(by_size)
        stats = [_mean_sd(by_size[s]) for s in sizes]
        ax.errorbar(sizes, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o",
                    capsize=3, label=arm)
    ax.set(xlabel="test resolution (px)", ylabel="test top-1 (%)",
           title="accuracy away from the training resolution (mean ± sd over seeds)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    return finish(fig, name)
