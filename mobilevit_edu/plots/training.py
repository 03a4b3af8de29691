"""Pictures of training runs (chapter 10): the learning-rate schedule of §4.1 and the loss and
accuracy curves of Fig. 3. The experiments' pictures (seeds, intervals, accuracy across test
resolutions) are in :mod:`mobilevit_edu.plots.experiments`.

Every function draws, returns the figure, and saves ``figures/<name>.png`` only when given ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mobilevit_edu.plots.save import finish

__all__ = ["plot_lr_schedule", "plot_training_curves"]


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
