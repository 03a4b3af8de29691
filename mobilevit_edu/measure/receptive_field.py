"""Receptive fields, theoretical and effective: how much of the image one output pixel sees.

Paper: §3.1 and Fig. 4. A convolution's output pixel sees a window of its input, and a stack of
convolutions widens that window slowly: each layer adds ``(k - 1) * dilation * jump`` input
pixels, where the *jump* (effective stride) is the product of the strides so far. The MobileViT
block unfolds its map into patches and lets a transformer relate the patches, so after one block
every output pixel depends on every input pixel: a global receptive field from a few layers and
few parameters (the paper's Fig. 4 argument). Two tools measure this:

* **Theoretical receptive field** (:func:`receptive_field_table`): walk a network built from our
  modules in forward order and apply, for every ``nn.Conv2d`` (and pooling layer),

      r_out = r_in + (k - 1) * d * j_in,        j_out = j_in * s

  (k kernel, s stride, d dilation, j the jump; r starts at 1, j at 1). Attention joins pixels
  that lie a whole number of periods apart: in a MobileViT block the pixels at the same place in
  every ``h x w`` patch (period ``h * j`` input pixels), in a ViT all tokens (period = the token's
  stride ``j``). The windows of size r around those pixels cover the whole image when
  ``r >= period``; from then on the receptive field is **global**. Otherwise it is a lattice of
  windows, which later convolutions widen until they touch. Residual additions and the
  MobileViT block's concatenation keep the larger of their branches, i.e. the conv path.
* **Effective receptive field** (:func:`effective_receptive_field`; Luo, Li, Urtasun & Zemel,
  "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks", NeurIPS
  2016): set the gradient of one output location (the centre of a stage's feature map, every
  channel) to 1 and everything else to 0, back-propagate to the input, take absolute values,
  sum the colour channels and average over many inputs. Luo et al. found it much smaller than
  the theoretical window and roughly Gaussian. The map is normalised to sum 1; the summaries are
  the radius around its centre of mass that holds 90 % of the gradient mass, and the fraction of
  input pixels whose gradient is non-zero (above ``rel_tol`` times the largest one).

The network must be in ``eval()`` mode for this: in training mode BatchNorm normalises with the
batch's own statistics, which couples every pixel (and every image) to every other (chapter 03).
A freshly initialised network has default running statistics (mean 0, variance 1) that do not fit
its activations, so calibrate them first (:func:`mobilevit_edu.train.calibrate_batchnorm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mobilevit_edu.models.baselines import MobileNetV2, ViT
from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.models.mobilevit import MobileViT
from mobilevit_edu.nn.transformer import TransformerEncoderLayer

__all__ = [
    "RFRow",
    "receptive_field_table",
    "stage_rows",
    "format_rf_table",
    "stage_receptive_fields",
    "ERF",
    "input_gradient_map",
    "summarize_erf",
    "stage_features",
    "effective_receptive_field",
    "plot_support_maps",
    "plot_rf_growth",
    "plot_erf_grid",
    "plot_erf_overlay",
]


# --------------------------------------------------------------------------------------------
# Theoretical receptive field
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RFRow:
    """The receptive field after one layer, in input pixels.

    ``rf`` is the side of the window the layer's output pixel sees through convolutions; ``jump``
    the distance in input pixels between neighbouring output pixels (effective stride);
    ``period`` the spacing of the window lattice once attention has joined distant pixels
    (``None`` before any attention); ``is_global`` whether the windows cover every input pixel.
    """

    name: str
    kind: str  # "conv", "pool" or "attention"
    kernel: int
    stride: int
    dilation: int
    rf: int
    jump: int
    period: int | None
    is_global: bool


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _attention_periods(model: nn.Module) -> dict[int, int]:
    """``id(transformer stack) -> patch side`` for every attention stack in ``model``.

    A MobileViT block relates pixels one patch apart (side = its patch size); a ViT relates all
    its tokens (side 1, in token units)."""
    periods: dict[int, int] = {}
    for m in model.modules():
        if isinstance(m, MobileViTBlock):
            periods[id(m.transformer)] = max(m.patch_size)
        elif isinstance(m, ViT):
            periods[id(m.blocks)] = 1
    for m in model.modules():  # any other stack of encoder layers attends over all its tokens
        if isinstance(m, nn.Sequential) and id(m) not in periods and len(m) and all(
            isinstance(c, TransformerEncoderLayer) for c in m
        ):
            periods[id(m)] = 1
    return periods


def receptive_field_table(model: nn.Module) -> list[RFRow]:
    """One :class:`RFRow` per convolution, pooling layer and attention stack of ``model``, in the
    order they are registered (for the book's networks, the forward order).

    Square kernels are assumed (the larger side is used otherwise). Layers after the feature
    extractor (the 1x1 expansion, pooling to a vector, the classifier) are included when they are
    convolutions; global average pooling and linear layers are not walked.
    """
    periods = _attention_periods(model)
    rows: list[RFRow] = []
    rf, jump, period, is_global = 1, 1, None, False
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = max(_pair(m.kernel_size))
            s = max(_pair(m.stride if m.stride is not None else m.kernel_size))
            d = max(_pair(getattr(m, "dilation", 1)))
            rf += (k - 1) * d * jump
            jump *= s
            kind = "conv" if isinstance(m, nn.Conv2d) else "pool"
        elif id(m) in periods:
            period = periods[id(m)] * jump if period is None else min(period, periods[id(m)] * jump)
            k, s, d, kind = 0, 1, 1, "attention"
        else:
            continue
        is_global = is_global or (period is not None and rf >= period)
        rows.append(RFRow(name, kind, k, s, d, rf, jump, period, is_global))
    return rows


def stage_rows(rows: Sequence[RFRow], depth: int = 1) -> list[RFRow]:
    """The last row of every group of rows whose names share the first ``depth`` dotted parts
    (``depth=1``: one row per top-level module such as ``layer3`` or ``blocks``; ``depth=2``:
    one per block)."""
    out: dict[str, RFRow] = {}
    for row in rows:
        out[".".join(row.name.split(".")[:depth])] = row
    return list(out.values())


def format_rf_table(rows: Sequence[RFRow], image_size: int | None = None) -> str:
    """The rows as a plain-text table. ``rf`` shows "global" once the field is global; with
    ``image_size`` a last column gives the window's share of the image side (capped at 100 %)."""
    head = f"{'layer':<32}{'kind':<10}{'k':>3}{'s':>3}{'d':>3}{'jump':>6}{'RF':>9}"
    head += f"{'conv-only RF':>14}" + (f"{'of side':>9}" if image_size else "")
    lines = [head, "-" * len(head)]
    for r in rows:
        k = "-" if r.kind == "attention" else str(r.kernel)
        shown = "global" if r.is_global else (f"{r.rf}/{r.period}" if r.period else str(r.rf))
        line = f"{r.name:<32}{r.kind:<10}{k:>3}{r.stride:>3}{r.dilation:>3}{r.jump:>6}{shown:>9}"
        line += f"{r.rf:>14}"
        if image_size:
            share = 100 if r.is_global else min(100, round(100 * r.rf / image_size))
            line += f"{share:>8}%"
        lines.append(line)
    return "\n".join(lines)


def stage_receptive_fields(model: nn.Module) -> dict[str, RFRow]:
    """The theoretical receptive field at the end of every stage of :func:`stage_features`,
    under the same names (for the ViT every depth gets the row after the attention)."""
    rows = receptive_field_table(model)

    def last_under(prefix: str) -> RFRow:
        return [r for r in rows if r.name.startswith(prefix + ".")][-1]

    if isinstance(model, MobileViT):
        return {f"OS {i['stride']}": last_under(i["name"]) for i in model.feature_info
                if i["stride"] >= 8}
    if isinstance(model, MobileNetV2):
        return {f"OS {i['stride']}": last_under(i["name"]) for i in model.feature_info
                if i["stride"] >= 8}
    if isinstance(model, ViT):
        depth = len(model.blocks)
        marks = sorted({max(1, round(depth * f)) for f in (1 / 3, 2 / 3, 1.0)})
        return {f"L {i}/{depth} (stride {model.patch_size})": rows[-1] for i in marks}
    raise TypeError(f"knows MobileViT, MobileNetV2 and ViT, not {type(model).__name__}")


# --------------------------------------------------------------------------------------------
# Effective receptive field
# --------------------------------------------------------------------------------------------


@dataclass
class ERF:
    """An effective receptive field: ``map`` ``[H, W]`` (non-negative, sums to 1), the output
    location it belongs to, and its summaries."""

    map: torch.Tensor
    location: tuple[int, int]  # (row, column) in the feature map
    feature_size: tuple[int, int]  # (h, w) of the feature map
    centre: tuple[float, float]  # centre of mass of the map, (row, column) in input pixels
    radius90: float  # radius (input pixels) around the centre holding 90 % of the mass
    support: float  # fraction of input pixels with |gradient| > rel_tol * max
    rel_tol: float


def input_gradient_map(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    location: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """|d out[:, :, i, j] / d input|, summed over output and input channels, averaged over the
    batch: ``(map [H, W], (i, j), (h, w))``.

    ``fn`` maps ``[B, C, H, W]`` to ``[B, C', h, w]`` and must treat the images independently
    (a network in eval mode does; BatchNorm in training mode does not). ``location`` defaults to
    the centre ``(h // 2, w // 2)``. The map is not normalised.
    """
    x = inputs.detach().clone().requires_grad_(True)
    out = fn(x)  # [B, C', h, w]
    if out.dim() != 4:
        raise ValueError(f"fn must return a feature map [B, C, h, w], got {tuple(out.shape)}")
    h, w = out.shape[-2:]
    i, j = location if location is not None else (h // 2, w // 2)
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"location {(i, j)} is outside the {h} x {w} feature map")
    grad_out = torch.zeros_like(out)
    grad_out[:, :, i, j] = 1.0  # Luo et al.: 1 at the chosen location, 0 elsewhere
    (g,) = torch.autograd.grad(out, x, grad_out)
    return g.abs().sum(1).mean(0), (i, j), (h, w)  # [B, C, H, W] -> [H, W]


def summarize_erf(
    grad_map: torch.Tensor,
    location: tuple[int, int] = (0, 0),
    feature_size: tuple[int, int] = (1, 1),
    *,
    mass: float = 0.9,
    rel_tol: float = 1e-6,
) -> ERF:
    """Normalise a gradient map to sum 1 and summarise it (see :class:`ERF`).

    The radius is the smallest r such that the pixels within Euclidean distance r of the map's
    centre of mass hold at least ``mass`` of the total. A pixel counts as reached when its value
    exceeds ``rel_tol`` times the largest value: far above rounding noise in float64 (1e-16) and
    far below any real signal; pixels a convolution cannot reach have exactly 0.
    """
    if grad_map.dim() != 2:
        raise ValueError(f"expected a map [H, W], got {tuple(grad_map.shape)}")
    m = grad_map.detach().to(torch.float64).abs()
    total = m.sum()
    if total <= 0:
        raise ValueError("the gradient map is zero everywhere: nothing to normalise")
    m = m / total
    H, W = m.shape
    rows = torch.arange(H, dtype=torch.float64)[:, None].expand(H, W)
    cols = torch.arange(W, dtype=torch.float64)[None, :].expand(H, W)
    ci, cj = float((m * rows).sum()), float((m * cols).sum())
    dist = ((rows - ci) ** 2 + (cols - cj) ** 2).sqrt().flatten()
    order = dist.argsort()
    cum = m.flatten()[order].cumsum(0)
    k = int(torch.searchsorted(cum, torch.tensor(mass - 1e-12, dtype=torch.float64)))
    radius = float(dist[order][min(k, dist.numel() - 1)])
    support = float((m > rel_tol * m.max()).double().mean())
    return ERF(m, tuple(location), tuple(feature_size), (ci, cj), radius, support, rel_tol)


def stage_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The feature maps whose receptive fields the book compares, each ``[B, C, h, w]``.

    * ``MobileViT``: ``"OS 8"``, ``"OS 16"``, ``"OS 32"`` (layer3, layer4, layer5; with a dilated
      backbone the strides come from ``feature_info``);
    * ``MobileNetV2``: the last block at each of output strides 8, 16, 32;
    * ``ViT``: every token is at the patch stride, so the stages are depths: the token grid after
      a third, two thirds and all of the encoder layers (``"L 4/12"`` ...), before the final norm.
    """
    if isinstance(model, MobileViT):
        feats = model.forward_features(x)
        out: dict[str, torch.Tensor] = {}
        for info, f in zip(model.feature_info, feats):
            if info["stride"] >= 8:
                out[f"OS {info['stride']}"] = f  # a dilated stage overwrites the earlier one
        return out
    if isinstance(model, MobileNetV2):
        last: dict[int, int] = {}  # stride -> index of the last block at that stride
        for info in model.feature_info:
            if info["stride"] >= 8:
                last[info["stride"]] = int(info["name"].split(".")[1])
        wanted = {i: s for s, i in last.items()}
        out, y = {}, model.stem(x)
        for i, blk in enumerate(model.blocks):
            y = blk(y)
            if i in wanted:
                out[f"OS {wanted[i]}"] = y
            if i >= max(wanted):
                break
        return out
    if isinstance(model, ViT):
        p = model.patch_size
        y = model.patch_embed(x)  # [B, 3, H, W] -> [B, D, gh, gw]
        gh, gw = y.shape[-2:]
        y = y.flatten(2).transpose(1, 2)  # [B, D, gh, gw] -> [B, gh*gw, D]
        y = torch.cat((model.cls_token.expand(y.shape[0], -1, -1), y), 1)  # [B, 1+N, D]
        y = y + model._position_embedding(gh, gw)
        depth = len(model.blocks)
        marks = sorted({max(1, round(depth * f)) for f in (1 / 3, 2 / 3, 1.0)})
        out = {}
        for i, blk in enumerate(model.blocks, 1):
            y = blk(y)
            if i in marks:
                grid = y[:, 1:].transpose(1, 2).reshape(y.shape[0], -1, gh, gw)  # [B, D, gh, gw]
                out[f"L {i}/{depth} (stride {p})"] = grid
        return out
    raise TypeError(f"stage_features knows MobileViT, MobileNetV2 and ViT, not {type(model).__name__}")


def effective_receptive_field(
    model: nn.Module,
    inputs: torch.Tensor,
    stages: Sequence[str] | None = None,
    *,
    mass: float = 0.9,
    rel_tol: float = 1e-6,
) -> dict[str, ERF]:
    """The ERF of the centre of every stage of :func:`stage_features` (or of ``stages``),
    averaged over ``inputs`` ``[N, 3, H, W]``. The model runs in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        x = inputs.detach().clone().requires_grad_(True)
        feats = stage_features(model, x)
        names = list(feats) if stages is None else list(stages)
        result: dict[str, ERF] = {}
        for n, name in enumerate(names):
            out = feats[name]
            h, w = out.shape[-2:]
            grad_out = torch.zeros_like(out)
            grad_out[:, :, h // 2, w // 2] = 1.0
            (g,) = torch.autograd.grad(out, x, grad_out, retain_graph=n < len(names) - 1)
            result[name] = summarize_erf(g.abs().sum(1).mean(0), (h // 2, w // 2), (h, w),
                                         mass=mass, rel_tol=rel_tol)
    finally:
        model.train(was_training)
    return result


# --------------------------------------------------------------------------------------------
# Figures (chapter 08)
# --------------------------------------------------------------------------------------------


def plot_support_maps(
    maps: Sequence[torch.Tensor],
    titles: Sequence[str],
    *,
    rel_tol: float = 1e-6,
    name: str = "08_block_support",
):
    """One panel per gradient map ``[H, W]`` on a shared log scale; pixels at or below
    ``rel_tol`` times the largest value (exact zeros included) are drawn black and counted in the
    title. Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from mobilevit_edu.plots.save import save_figure

    if not maps or len(maps) != len(titles):
        raise ValueError("need one title per map, and at least one map")
    normed = [m.detach().double().abs() / m.detach().double().abs().max() for m in maps]
    norm = LogNorm(vmin=rel_tol, vmax=1.0)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.5 * len(maps) + 0.9, 3.7), squeeze=False)
    cmap = plt.get_cmap("magma").with_extremes(under="black")
    for ax, m, title in zip(axes[0], normed, titles):
        im = ax.imshow(m.clamp_min(rel_tol / 2).numpy(), cmap=cmap, norm=norm,
                       interpolation="nearest")
        reached = int((m > rel_tol).sum())
        ax.set_title(f"{title}\n{reached} of {m.numel()} pixels reached", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, pad=0.02,
                 label="|gradient| / max (log)")
    save_figure(fig, name)
    return fig


def plot_rf_growth(
    tables: Mapping[str, Sequence[RFRow]],
    image_size: int,
    *,
    name: str = "08_rf_growth",
):
    """Theoretical receptive field (input pixels, log scale) after every layer, one line per
    network; a line jumps to the top band ("global") where attention makes it global, and the
    image side is drawn dashed. Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    if not tables:
        raise ValueError("nothing to plot")
    top = 2 ** math.ceil(math.log2(max(image_size, max(r.rf for t in tables.values() for r in t))))
    glob = top * 2
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for label, rows in tables.items():
        xs = range(1, len(rows) + 1)
        ys = [glob if r.is_global else r.rf for r in rows]
        (line,) = ax.plot(xs, ys, marker=".", markersize=4, label=label)
        first = next((i for i, r in enumerate(rows) if r.is_global), None)
        if first is not None:
            ax.plot(first + 1, glob, marker="*", markersize=12, color=line.get_color())
    ax.axhline(image_size, color="grey", linestyle="--", linewidth=1)
    ax.text(1, image_size * 1.08, f"image side {image_size} px", color="grey", fontsize=9)
    ax.set_yscale("log", base=2)
    ticks = [2**i for i in range(0, int(math.log2(top)) + 1)]
    ax.set_yticks(ticks + [glob], [str(t) for t in ticks] + ["global"])
    ax.set_xlabel("layer (convolution or attention stack, in forward order)")
    ax.set_ylabel("receptive field side (input px)")
    ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_erf_grid(
    erfs: Mapping[str, Mapping[str, ERF]],
    *,
    log: bool = True,
    name: str = "08_erf_grid",
):
    """Effective receptive fields, one row per model and one column per stage. Each panel is the
    normalised map (log colour scale over four decades of its own maximum), its 90 % circle and
    its summaries. Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Circle

    from mobilevit_edu.plots.save import save_figure

    if not erfs or not all(erfs.values()):
        raise ValueError("need at least one model with at least one stage")
    n_rows, n_cols = len(erfs), max(len(v) for v in erfs.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 1.4, 2.75 * n_rows),
                             squeeze=False)
    for r, (label, stages) in enumerate(erfs.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(stages):
                ax.axis("off")
                continue
            stage, e = list(stages.items())[c]
            m = e.map.double()
            vmax = float(m.max())
            norm = LogNorm(vmin=vmax * 1e-4, vmax=vmax) if log else Normalize(0, vmax)
            ax.imshow(m.clamp_min(vmax * 1e-4).numpy(), cmap="magma", norm=norm,
                      interpolation="nearest")
            ax.add_patch(Circle((e.centre[1], e.centre[0]), e.radius90, fill=False,
                                edgecolor="cyan", linewidth=1.2))
            ax.set_title(f"{stage}\nr90 {e.radius90:.1f} px, reached {100 * e.support:.0f}%",
                         fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_erf_overlay(
    photo: torch.Tensor,
    erfs: Mapping[str, ERF],
    *,
    decades: float = 4.0,
    name: str = "08_erf_photo",
):
    """Effective receptive fields laid over a photograph ``[3, H, W]`` (the maps at the photo's
    size): the photo, dimmed, with each map as a heat layer on a log scale over ``decades``
    decades of its maximum (so the weak, far-away part stays visible), its 90 % circle and its
    centre. Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    from mobilevit_edu.plots.save import save_figure

    if photo.dim() != 3 or photo.shape[0] != 3:
        raise ValueError(f"expected a photo [3, H, W], got {tuple(photo.shape)}")
    if not erfs:
        raise ValueError("nothing to overlay")
    for label, e in erfs.items():
        if tuple(e.map.shape) != tuple(photo.shape[-2:]):
            raise ValueError(f"{label}: map {tuple(e.map.shape)} != photo {tuple(photo.shape[-2:])}")
    img = photo.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # [3, H, W] -> [H, W, 3]
    fig, axes = plt.subplots(1, len(erfs), figsize=(3.3 * len(erfs), 3.6), squeeze=False)
    for ax, (label, e) in zip(axes[0], erfs.items()):
        m = e.map.double()
        rel = (m / m.max()).clamp_min(10.0 ** -decades)
        heat = (1 + rel.log10() / decades).numpy()  # 10^-decades -> 0, the maximum -> 1
        ax.imshow(img * 0.5, interpolation="nearest")
        ax.imshow(heat, cmap="inferno", alpha=0.75 * heat, vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(Circle((e.centre[1], e.centre[0]), e.radius90, fill=False,
                            edgecolor="cyan", linewidth=1.5))
        ax.plot(e.centre[1], e.centre[0], marker="+", color="cyan", markersize=9)
        ax.set_title(f"{label}\n90% within {e.radius90:.0f} px", fontsize=9.5)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, name)
    return fig
