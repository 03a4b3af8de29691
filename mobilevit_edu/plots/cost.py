"""Figures of what a network costs (chapter 07): multiply-adds, activation memory, latency.

Paper: Tables 3 and 10 ("FLOPs", i.e. multiply-adds), App. E Table 8 (memory per output stride),
and §4.1 / App. D (FLOPs do not predict time). The numbers come from
``mobilevit_edu.measure.flops`` (``count_macs``), ``measure.memory`` and ``measure.latency`` /
``measure.operators``.

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mobilevit_edu.measure.flops import COLUMNS, MacCount
from mobilevit_edu.measure.memory import StrideMemory
from mobilevit_edu.plots.save import finish

__all__ = ["plot_mac_breakdown", "plot_memory_per_os", "plot_latency_vs_macs", "plot_time_vs_macs_share"]


def plot_mac_breakdown(counts: dict[str, MacCount], *, name: str | None = None) -> Figure:
    """Stacked bars: the MACs of each model, split by operator type (conv, linear, attention,
    norm, ...), one bar per model, labelled with the total (``MacCount.by_column``)."""
    if not counts:
        raise ValueError("nothing to plot")
    totals = {label: c.by_column() for label, c in counts.items()}
    cols = [c for c in COLUMNS if c != "elementwise" and any(t[c] for t in totals.values())]
    colours = dict(zip(cols, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    labels = list(counts)
    fig, ax = plt.subplots(figsize=(7.2, 0.62 * len(labels) + 1.5))
    for i, label in enumerate(labels):
        left = 0.0
        for c in cols:
            v = totals[label][c] / 1e9
            ax.barh(i, v, left=left, color=colours[c], label=c if i == 0 else None)
            left += v
        ax.text(left, i, f"  {counts[label].macs / 1e9:.3f} G", va="center", fontsize=9)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    ax.set_xlim(0, 1.2 * max(c.macs for c in counts.values()) / 1e9)
    ax.set_xlabel("multiply-adds per image (G)")
    ax.legend(ncol=len(cols), fontsize=8.5, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    return finish(fig, name)


def plot_memory_per_os(
    ours: dict[str, list[StrideMemory]],
    paper: dict[str, dict[int, float]] | None = None,
    *,
    unit: int = 1024,
    ylabel: str = "feature map handed on (KiB, fp16)",
    name: str | None = None,
) -> Figure:
    """Bars of the feature-map size at each output stride, one colour per model, with the
    paper's numbers (``{label: {OS: value}}``) as black markers."""
    if not ours:
        raise ValueError("nothing to plot")
    strides = sorted({r.output_stride for rs in ours.values() for r in rs})
    width = 0.8 / len(ours)
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for i, (label, rs) in enumerate(ours.items()):
        xs = [strides.index(r.output_stride) + (i - (len(ours) - 1) / 2) * width for r in rs]
        ax.bar(xs, [r.output_bytes / unit for r in rs], width=width, label=f"{label} (this book)")
    markers = ["o", "s", "^", "D"]
    for j, (label, values) in enumerate((paper or {}).items()):
        i = list(ours).index(label) if label in ours else j
        xs = [strides.index(s) + (i - (len(ours) - 1) / 2) * width for s in values if s in strides]
        ys = [v for s, v in values.items() if s in strides]
        ax.scatter(xs, ys, color="black", marker=markers[j % 4], zorder=3, s=28,
                   label=f"{label} (paper, Table 8)")
    ax.set_xticks(range(len(strides)), [f"OS {s}" for s in strides])
    ax.set_ylabel(ylabel)
    ax.grid(False, axis="x")
    ax.legend(fontsize=8.5)
    return finish(fig, name)


def plot_latency_vs_macs(
    points: Sequence[dict[str, Any]],
    *,
    xlabel: str = "multiply-adds per image (G)",
    ylabel: str = "CPU latency per image (ms)",
    title: str = "",
    name: str | None = None,
) -> Figure:
    """Scatter of latency against MACs, one labelled point per model, with a least-squares line
    through the origin ("time proportional to MACs") for reference.

    ``points``: dicts with ``label``, ``macs_g``, ``ms`` and optionally ``group`` (points of one
    group share a colour and a legend entry) and ``offset`` (the label's offset in points,
    default ``(6, 4)``, to move labels of points that sit close together).
    """
    if not points:
        raise ValueError("nothing to plot")
    groups: list[str] = []
    for p in points:
        if p.get("group", "") not in groups:
            groups.append(p.get("group", ""))
    colours = dict(zip(groups, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for g in groups:
        pts = [p for p in points if p.get("group", "") == g]
        ax.scatter([p["macs_g"] for p in pts], [p["ms"] for p in pts], s=46, color=colours[g],
                   label=g or None, zorder=3)
    for p in points:
        ax.annotate(p["label"], (p["macs_g"], p["ms"]), textcoords="offset points",
                    xytext=p.get("offset", (6, 4)), fontsize=8.5)
    xs = [p["macs_g"] for p in points]
    ys = [p["ms"] for p in points]
    slope = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    top = 1.1 * max(xs)
    ax.plot([0, top], [0, slope * top], linestyle="--", color="grey", linewidth=1,
            label=f"if time were proportional to MACs ({slope:.1f} ms per G)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.15 * max(max(ys), slope * top))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8.5, loc="upper left")
    return finish(fig, name)


def plot_time_vs_macs_share(
    macs: dict[str, float],
    time_ms: dict[str, float],
    *,
    title: str = "",
    name: str | None = None,
) -> Figure:
    """Two stacked horizontal bars, each 100 %: how the multiply-adds split over operator
    categories, and how the measured time does. ``macs`` and ``time_ms`` map a category to an
    amount (a ``"total"`` key is ignored), e.g. ``measure.operators.time_by_operator``."""
    macs = {k: v for k, v in macs.items() if k != "total" and v > 0}
    time_ms = {k: v for k, v in time_ms.items() if k != "total" and v > 0}
    if not macs or not time_ms:
        raise ValueError("need positive MACs and times")
    cats = list(macs) + [c for c in time_ms if c not in macs]
    colours = dict(zip(cats, (plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)))
    fig, ax = plt.subplots(figsize=(8.6, 2.9))
    for row, (label, values) in enumerate((("multiply-adds", macs), ("time", time_ms))):
        total, left = sum(values.values()), 0.0
        for c in cats:
            share = 100.0 * values.get(c, 0.0) / total
            if share <= 0:
                continue
            ax.barh(row, share, left=left, color=colours[c], edgecolor="white",
                    label=c if row == 0 or c not in macs else None)
            if share >= 5:
                ax.text(left + share / 2, row, f"{share:.0f}%", ha="center", va="center",
                        fontsize=8.5, color="white")
            left += share
    ax.set_yticks([0, 1], ["multiply-adds", "time"])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share (%)")
    ax.grid(False, axis="y")
    if title:
        ax.set_title(title, fontsize=11)
    ax.legend(ncol=4, fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    return finish(fig, name)
