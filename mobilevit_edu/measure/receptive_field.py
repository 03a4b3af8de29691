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
its activations, so calibrate them first
(:func:`mobilevit_edu.models.batchnorm.calibrate_batchnorm`). The figures are in
``mobilevit_edu.plots.receptive_fields``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import to_pair
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
    "stage_indices",
    "stage_features",
    "effective_receptive_field",
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


def _attention_periods(model: nn.Module) -> dict[int, int]:
    """``id(transformer stack) -> patch side`` for every attention stack in ``model``.

    A MobileViT block relates pixels one patch apart (side = its patch size); any other stack of
    encoder layers (a ViT's) relates all its tokens (side 1, in token units)."""
    periods: dict[int, int] = {}
    for m in model.modules():
        if isinstance(m, MobileViTBlock):
            periods[id(m.transformer)] = max(m.patch_size)
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
            k = max(to_pair(m.kernel_size, "kernel_size"))
            s = max(to_pair(m.stride if m.stride is not None else m.kernel_size, "stride"))
            d = max(to_pair(getattr(m, "dilation", 1), "dilation"))
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


def stage_indices(feature_info: Sequence[Mapping]) -> dict[str, int]:
    """Which entries of a model's ``feature_info`` (and of its ``forward_intermediates``) the
    book compares, by label.

    * a network that down-samples (MobileViT, MobileNetV2): the last stage at each output
      stride of 8 or more, ``"OS 8"``, ``"OS 16"``, ``"OS 32"`` (a dilated backbone has fewer);
    * a network whose stages all share one stride (a ViT: every token is at the patch stride):
      the stages are depths, the token grid after a third, two thirds and all of the layers
      (``"L 4/12 (stride 16)"`` ...).
    """
    if not feature_info:
        raise ValueError("feature_info is empty: the model describes no stages")
    strides = [int(info["stride"]) for info in feature_info]
    if len(set(strides)) == 1:
        depth = len(strides)
        marks = sorted({max(1, round(depth * f)) for f in (1 / 3, 2 / 3, 1.0)})
        return {f"L {i}/{depth} (stride {strides[0]})": i - 1 for i in marks}
    out: dict[str, int] = {}
    for i, s in enumerate(strides):
        if s >= 8:
            out[f"OS {s}"] = i  # a later stage at the same stride (dilated) replaces the earlier
    return out


def stage_receptive_fields(model: nn.Module) -> dict[str, RFRow]:
    """The theoretical receptive field at the end of every stage of :func:`stage_features`,
    under the same names: the last row inside the stage's module, or, for a stage inside an
    attention stack (a ViT's encoder layer), the row of that stack."""
    rows = receptive_field_table(model)

    def last_under(prefix: str) -> RFRow:
        inside = [r for r in rows if r.name == prefix or r.name.startswith(prefix + ".")
                  or prefix.startswith(r.name + ".")]
        if not inside:
            raise ValueError(f"no convolution or attention row at or under {prefix!r}")
        return inside[-1]

    info = _feature_info(model)
    return {label: last_under(info[i]["name"]) for label, i in stage_indices(info).items()}


def _feature_info(model: nn.Module) -> list[dict]:
    info = getattr(model, "feature_info", None)
    if info is None or not hasattr(model, "forward_intermediates"):
        raise TypeError(
            f"{type(model).__name__} has no forward_intermediates / feature_info; receptive "
            "fields per stage need a model of the library (create_model) or one that follows "
            "its feature contract"
        )
    return list(info)


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
    dist = ((rows - ci) ** 2 + (cols - cj) ** 2).sqrt().flatten()  # [H, W] -> [H*W]
    order = dist.argsort()
    cum = m.flatten()[order].cumsum(0)  # [H, W] -> [H*W], nearest pixels first
    k = int(torch.searchsorted(cum, torch.tensor(mass - 1e-12, dtype=torch.float64)))
    radius = float(dist[order][min(k, dist.numel() - 1)])
    support = float((m > rel_tol * m.max()).double().mean())
    return ERF(m, tuple(location), tuple(feature_size), (ci, cj), radius, support, rel_tol)


def stage_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The feature maps whose receptive fields the book compares, each ``[B, C, h, w]``: the
    entries of ``model.forward_intermediates(x)`` that :func:`stage_indices` picks, e.g.
    ``"OS 8"``, ``"OS 16"``, ``"OS 32"`` for MobileViT (layer3..layer5) and MobileNetV2, and
    ``"L 4/12 (stride 16)"`` ... for a ViT (the token grid after that many layers, before the
    final norm)."""
    info = _feature_info(model)
    feats = model.forward_intermediates(x)
    return {label: feats[i] for label, i in stage_indices(info).items()}


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
