"""Pictures of training runs (chapters 10 and 11): the learning-rate schedule of §4.1, the loss and
accuracy curves of Fig. 3, the Table 7 ablation beside the paper's, and accuracy against test
resolution (the multi-scale sampler of §3.3).

Every function draws, returns the figure, and saves ``figures/<name>.png`` only when given ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mobilevit_edu.plots.save import finish

__all__ = ["plot_lr_schedule", "plot_training_curves", "plot_ablation",
           "plot_accuracy_vs_resolution"]


def plot_lr_schedule(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                     name: str | None = None) -> Figure:
    """One panel per schedule: learning rate against epochs (``{title: (epochs, lrs)}``)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.4), squeeze=False)
    for ax, (title, (x, y)) in zip(axes[0], curves.items()):
        ax.plot(x, y, color="#0072B2")
        ax.set(title=title, xlabel="epoch", ylabel="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, -3))
    return finish(fig, name)


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]],
                         name: str | None = None, title: str | None = None,
                         chance: float | None = None) -> Figure:
    """Fig. 3 style: training loss (left) and validation accuracy (right, dashed: the EMA)
    against epochs, one colour per run (``{label: history}``)."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    for label, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        (line,) = ax_l.plot(ep, [r["train_loss"] for r in hist], label=f"{label} (train)")
        ax_l.plot(ep, [r["val_loss"] for r in hist], color=line.get_color(), ls=":",
                  label=f"{label} (val)")
        ax_a.plot(ep, [100 * r["val_acc"] for r in hist], color=line.get_color(), label=label)
        if all("ema_val_acc" in r for r in hist):
            ax_a.plot(ep, [100 * r["ema_val_acc"] for r in hist], color=line.get_color(),
                      ls="--", alpha=0.7)
    if chance is not None:
        ax_a.axhline(100 * chance, color="0.5", lw=1, ls="-.", label="chance")
    ax_l.set(xlabel="epoch", ylabel="loss (label-smoothed CE)", title="loss: train (—), val (⋯)")
    ax_a.set(xlabel="epoch", ylabel="validation top-1 (%)", title="accuracy (dashed: EMA)")
    ax_a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return finish(fig, name)


def plot_ablation(ours: Mapping[str, float], paper: Mapping[str, float],
                  name: str | None = None) -> Figure:
    """Table 7 side by side: the paper's ImageNet top-1 (left) and ours (right) per setting."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
    for ax, (title, vals, color) in zip(axes, [
        ("paper (Table 7), MobileViT-S, ImageNet", paper, "#D55E00"),
        ("this book, MobileViT-XXS, shapes", ours, "#0072B2"),
    ]):
        keys = list(vals)
        bars = ax.bar(keys, [vals[k] for k in keys], color=color, width=0.55)
        lo, hi = min(vals.values()), max(vals.values())
        pad = max(0.5, (hi - lo) * 0.8)
        ax.set(ylim=(lo - pad, hi + pad), ylabel="top-1 (%)", title=title)
        ax.bar_label(bars, fmt="%.1f", fontsize=9)
        ax.title.set_fontsize(10)
    return finish(fig, name)


def plot_accuracy_vs_resolution(results: Mapping[str, Mapping[int, float]], train_size: int,
                                name: str | None = None,
                                train_range: tuple[int, int] | None = None) -> Figure:
    """Validation accuracy (%) against test resolution, one line per model; the training
    resolution (and the multi-scale range, shaded) marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if train_range is not None:
        ax.axvspan(*train_range, color="#009E73", alpha=0.1, label="multi-scale training range")
    ax.axvline(train_size, color="0.5", lw=1, ls="--", label=f"standard: trained at {train_size}")
    for label, accs in results.items():
        sizes = sorted(accs)
        ax.plot(sizes, [100 * accs[s] for s in sizes], marker="o", label=label)
    ax.set(xlabel="test resolution (px)", ylabel="validation top-1 (%)",
           title="accuracy away from the training resolution")
    ax.legend(fontsize=8)
    return finish(fig, name)


