"""Figures of deployment (chapter 14): runtimes side by side, and where a runtime's time goes.

Paper: §4.3 and Table 11 (the same networks timed in several runtimes; unfold and fold as
reshapes). The numbers come from ``mobilevit_edu.deploy.runtimes.compare_runtimes`` and
``deploy.onnx_runtime.ort_op_times``.

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mobilevit_edu.deploy.runtimes import RUNTIMES, RuntimeLatency
from mobilevit_edu.plots.save import finish

__all__ = ["plot_runtime_latency", "plot_time_split"]


def plot_runtime_latency(
    latency: RuntimeLatency,
    macs_g: dict[str, float],
    *,
    clock: str = "cpu",
    title: str = "",
    name: str | None = None,
) -> Figure:
    """Grouped horizontal bars: one group per model (labelled with its MACs), one bar per
    runtime, each bar labelled with its median time (``deploy.runtimes.compare_runtimes``)."""
    labels = list(latency.timings)
    cols = latency.runtimes
    if not labels or not cols:
        raise ValueError("nothing to plot")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    height = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(8.2, 0.55 + 0.34 * len(labels) * len(cols)))
    top = 0.0
    for j, c in enumerate(cols):
        for i, label in enumerate(labels):
            v = latency.ms(label, c, clock)
            if v is None:
                continue
            y = i + (j - (len(cols) - 1) / 2) * height
            ax.barh(y, v, height=height * 0.92, color=colours[j % len(colours)], label=RUNTIMES[c])
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=7.5)
            top = max(top, v)
    ax.set_yticks(range(len(labels)),
                  [f"{label}\n{macs_g[label]:.2f} GMACs" for label in labels], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    h, w = latency.image_size
    ax.set_xlabel(f"{'CPU' if clock == 'cpu' else 'wall'} time per batch (ms), batch "
                  f"{latency.batch}, {h} x {w}, {latency.threads} thread"
                  f"{'s' * (latency.threads != 1)}")
    ax.grid(False, axis="y")
    handles, names = ax.get_legend_handles_labels()
    seen = dict(zip(names, handles))
    ax.legend(seen.values(), seen.keys(), fontsize=8.5, loc="lower right")
    if title:
        ax.set_title(title, fontsize=11)
    return finish(fig, name)


def plot_time_split(
    splits: dict[str, dict[str, float]],
    *,
    title: str = "",
    xlabel: str = "ONNX Runtime kernel time per image (ms)",
    name: str | None = None,
) -> Figure:
    """Stacked horizontal bars, one per model: milliseconds per category (e.g. the output of
    ``ort_op_times``; a ``"total"`` key is ignored), categories in a shared order and colour
    (``unfold / fold`` hatched)."""
    if not splits:
        raise ValueError("nothing to plot")
    cats: list[str] = []
    for split in splits.values():
        for c, v in split.items():
            if c != "total" and v > 0 and c not in cats:
                cats.append(c)
    order = ["conv", "matmul", "softmax", "norm", "activation", "unfold / fold",
             "copy / layout", "add / mul / mean", "other"]
    cats.sort(key=lambda c: order.index(c) if c in order else len(order))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] + ["#777777", "#bbbbbb"]
    colours = dict(zip(cats, palette * 2))
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.62 * len(splits)))
    widest = max(sum(v for c, v in s.items() if c != "total") for s in splits.values())
    for row, (label, split) in enumerate(splits.items()):
        left = 0.0
        for c in cats:
            v = split.get(c, 0.0)
            if v <= 0:
                continue
            ax.barh(row, v, left=left, color=colours[c], edgecolor="white", height=0.62,
                    hatch="///" if c == "unfold / fold" else None)
            if v >= 0.05 * widest:  # label only the segments wide enough to hold one
                ax.text(left + v / 2, row, f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white")
            left += v
        ax.text(left, row, f" {left:.1f} ms", va="center", fontsize=8.5)
    ax.set_yticks(range(len(splits)), list(splits), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.14 * widest)
    ax.set_xlabel(xlabel)
    ax.grid(False, axis="y")
    handles = [Patch(facecolor=colours[c], edgecolor="white",
                     hatch="///" if c == "unfold / fold" else None, label=c) for c in cats]
    ax.legend(handles=handles, ncol=min(5, len(cats)), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.28 if len(splits) < 4 else -0.18), frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return finish(fig, name)
