"""Counting multiply-adds (MACs) with fvcore, attention included.

Paper: Tables 3 and 10 and the ablations argue in "FLOPs" (0.4 G / 0.7 G / 2.0 G for XXS / XS / S);
like most vision papers, what they call FLOPs are **multiply-adds** (MACs): one ``a * b + c`` counts
once. A FLOP in the strict sense is one add *or* one multiply, so FLOPs = 2 x MACs. And the
paper's XS figure is at 224 x 224 (the author, apple/ml-cvnets issue #47), the others at 256 x 256.

``count_macs`` runs fvcore's ``FlopCountAnalysis``, which traces the model with ``torch.jit`` and
applies a counting rule ("handle") to every operator it knows. fvcore counts one MAC per
multiply-add for convolutions, linear layers and matrix products, and adds rough costs for
BatchNorm (2 per element in eval mode), LayerNorm (5 per element) and bilinear resizing (4 per
output element). Three gaps matter for MobileViT, and this module fills them:

* ``aten::scaled_dot_product_attention`` (PyTorch's fused attention, which our
  ``MultiHeadSelfAttention`` uses by default) has **no handle** in fvcore: counted as 0, the two
  attention matmuls ``Q K^T`` and ``A V`` would vanish from the total. ``sdpa_mac_jit`` counts
  ``B h N N d_h`` for each, the same as fvcore counts the explicit ``matmul`` path, so the total
  does not depend on which attention path runs.
* Element-wise operators (SiLU, residual adds, softmax, the scaling of the scores, the global
  mean) are skipped with a warning. They are cheap in MACs but not in time (chapter 07 measures
  it); ``elementwise=True`` counts each as one operation per output element (per input element
  for a mean), in a separate ``elementwise`` column, so the MAC total is never silently mixed.
* Everything fvcore skipped is listed in ``MacCount.skipped``, so nothing is dropped unseen.

Names say what they count: ``count_macs`` and ``MacCount`` count multiply-adds (``MacCount.flops``
is the strict FLOP count, 2 x MACs), ``sdpa_mac_jit`` returns MACs, ``elementwise_op_jit``
returns operations (not MACs). The module keeps the file name ``flops`` the field uses for all of
this. The chapter's bar chart of the breakdown is ``mobilevit_edu.plots.cost.plot_mac_breakdown``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "MacCount",
    "count_macs",
    "sdpa_mac_jit",
    "elementwise_op_jit",
    "ELEMENTWISE_OPS",
    "CATEGORIES",
    "COLUMNS",
]

# operator (fvcore's short name) -> the column it is reported in
CATEGORIES: dict[str, str] = {
    "conv": "conv",
    "linear": "linear",
    "addmm": "linear",
    "matmul": "attention",
    "bmm": "attention",
    "einsum": "attention",
    "scaled_dot_product_attention": "attention",
    "batch_norm": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "instance_norm": "norm",
    "upsample_bilinear2d": "resize",
    "upsample_nearest2d": "resize",
    "adaptive_avg_pool2d": "pool",
}
COLUMNS = ("conv", "linear", "attention", "norm", "resize", "pool", "elementwise")

# element-wise operators counted with ``elementwise=True`` (one per output element)
ELEMENTWISE_OPS: tuple[str, ...] = (
    "aten::silu", "aten::silu_", "aten::relu", "aten::relu_", "aten::hardtanh",
    "aten::hardtanh_", "aten::gelu", "aten::sigmoid", "aten::tanh", "aten::add", "aten::add_",
    "aten::sub", "aten::rsub", "aten::mul", "aten::mul_", "aten::div", "aten::div_",
    "aten::softmax", "aten::exp", "aten::sqrt", "aten::rsqrt", "aten::pow", "aten::neg",
)
_REDUCTIONS: tuple[str, ...] = ("aten::mean", "aten::sum")


def _shape(value: Any) -> list[int] | None:
    return value.type().sizes() if value.isCompleteTensor() else None


def sdpa_mac_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """MACs of ``scaled_dot_product_attention(q, k, v)``: ``Q K^T`` plus ``A V``.

    q is ``[..., L, E]``, k ``[..., S, E]``, v ``[..., S, E_v]``: the scores take ``L S E``
    multiply-adds and the weighted sum ``L S E_v``, for every leading (batch, head) index. The
    softmax and the scaling are element-wise and not counted here (see ``elementwise=True``)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    if q is None or k is None or v is None:
        raise ValueError("scaled_dot_product_attention traced without complete shapes")
    lead = math.prod(q[:-2])
    length, e = q[-2], q[-1]
    source, e_v = k[-2], v[-1]
    return lead * length * source * (e + e_v)


def _is_float(value: Any) -> bool:
    return value.isCompleteTensor() and value.type().scalarType() in _FLOAT_TYPES


_FLOAT_TYPES = ("Float", "Double", "Half", "BFloat16")


def elementwise_op_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """One operation per element of the first output (``x + y``, ``silu(x)``, ``softmax``).

    Integer results (shape arithmetic that tracing records, e.g. inside einops) count 0."""
    if not outputs or not _is_float(outputs[0]):
        return 0
    return math.prod(_shape(outputs[0]))


def _reduction_op_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """One operation per element of the input (a mean reads every element once)."""
    return math.prod(_shape(inputs[0])) if _is_float(inputs[0]) else 0


@dataclass
class MacCount:
    """The result of ``count_macs``: totals, the per-stage x per-operator breakdown, and what
    fvcore skipped. Every count is in multiply-adds (MACs) except the ``elementwise`` column."""

    model: str
    input_shape: tuple[int, ...]
    by_operator: dict[str, int]  # fvcore's operator names -> count
    by_stage: dict[str, dict[str, int]]  # stage -> column (see COLUMNS) -> count
    skipped: dict[str, int]  # operators fvcore ran into but did not count -> number of calls
    elementwise: bool = False
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """Multiply-adds: conv, linear, attention matmuls, plus fvcore's norm/resize/pool costs
        (the ``elementwise`` column is *not* included)."""
        return sum(v for k, v in self.by_operator.items() if k in CATEGORIES)

    @property
    def elementwise_ops(self) -> int:
        """Element-wise operations counted with ``elementwise=True`` (0 otherwise)."""
        return sum(v for k, v in self.by_operator.items() if k not in CATEGORIES)

    @property
    def flops(self) -> int:
        """FLOPs in the strict sense: one multiply-add is two floating-point operations."""
        return 2 * self.macs

    def by_column(self) -> dict[str, int]:
        """The totals per column (conv, linear, attention, norm, resize, pool, elementwise)."""
        out = {c: 0 for c in COLUMNS}
        for stage in self.by_stage.values():
            for c, v in stage.items():
                out[c] += v
        return out

    def table(self, unit: float = 1e6, digits: int = 2) -> str:
        """The breakdown as a text table: one row per stage, one column per operator type,
        in millions by default. Columns that are zero everywhere are left out."""
        cols = [c for c in COLUMNS if any(s.get(c, 0) for s in self.by_stage.values())]
        name_w = max(12, *(len(s) for s in self.by_stage))
        head = f"{'stage':<{name_w}}" + "".join(f"{c:>12}" for c in cols) + f"{'total':>12}"
        lines = [head, "-" * len(head)]
        for stage, counts in list(self.by_stage.items()) + [("total", self.by_column())]:
            if stage == "total":
                lines.append("-" * len(head))
            row = "".join(f"{counts.get(c, 0) / unit:>12.{digits}f}" for c in cols)
            total = sum(counts.get(c, 0) for c in cols)
            lines.append(f"{stage:<{name_w}}{row}{total / unit:>12.{digits}f}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "input_shape": list(self.input_shape), "macs": self.macs,
            "flops": self.flops, "elementwise_ops": self.elementwise_ops, "params": self.params,
            "by_operator": dict(self.by_operator), "by_stage": self.by_stage,
            "skipped": dict(self.skipped), "elementwise": self.elementwise,
        }


def _input_shape(input_size: int | tuple[int, ...], in_channels: int) -> tuple[int, ...]:
    if isinstance(input_size, int) or len(input_size) == 2:
        return (1, in_channels, *to_pair(input_size, "input_size"))
    size = tuple(int(s) for s in input_size)
    if len(size) == 4:
        return size
    raise ValueError(f"input_size must be S, (H, W) or (B, C, H, W), got {input_size}")


def count_macs(
    model: nn.Module,
    input_size: int | tuple[int, ...] = 256,
    *,
    elementwise: bool = False,
    stages: list[str] | None = None,
    count_sdpa: bool = True,
) -> MacCount:
    """Count the multiply-adds of one forward pass of ``model`` with fvcore.

    ``input_size``: ``S`` (a batch of one ``S x S`` image), ``(H, W)`` or ``(B, C, H, W)``.
    The model is counted in eval mode (BatchNorm's count depends on it) and restored.
    ``stages``: names of the sub-modules to report as rows (default: the model's direct
    children); MACs of operators that run in the model's own ``forward`` (e.g. the global mean)
    go to a row named ``(top level)``.
    ``elementwise=True`` also counts element-wise operators, one per output element, in their own
    column (they never enter ``MacCount.macs``).
    ``count_sdpa=False`` leaves fvcore's default for ``scaled_dot_product_attention``: skipped,
    counted as 0 (to see what a plain fvcore count misses)."""
    in_channels = getattr(model, "in_channels", 3)
    shape = _input_shape(input_size, in_channels)
    x = torch.zeros(shape)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and fvcore warnings: we report skips below
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, (x,))
            if count_sdpa:
                analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_mac_jit)
            if elementwise:
                for op in ELEMENTWISE_OPS:
                    analysis.set_op_handle(op, elementwise_op_jit)
                for op in _REDUCTIONS:
                    analysis.set_op_handle(op, _reduction_op_jit)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            with torch.no_grad():  # tracing runs the model once: no autograd graph needed
                by_module_op = analysis.by_module_and_operator()
            skipped = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)

    def columns(counter: Counter) -> dict[str, int]:
        out: dict[str, int] = {}
        for op, v in counter.items():
            col = CATEGORIES.get(op, "elementwise")
            out[col] = out.get(col, 0) + int(v)
        return out

    names = stages if stages is not None else [n for n, _ in model.named_children()]
    by_stage: dict[str, dict[str, int]] = {}
    covered: Counter = Counter()
    for name in names:
        counter = by_module_op.get(name, Counter())
        covered.update(counter)
        if sum(counter.values()) or stages is not None:
            by_stage[name] = columns(counter)
    rest = Counter(by_module_op[""])
    rest.subtract(covered)
    rest = Counter({k: v for k, v in rest.items() if v})
    if rest:
        by_stage["(top level)"] = columns(rest)
    return MacCount(
        model=getattr(getattr(model, "config", None), "name", type(model).__name__),
        input_shape=shape,
        by_operator={k: int(v) for k, v in by_module_op[""].items()},
        by_stage=by_stage,
        skipped={k.replace("aten::", ""): int(v) for k, v in sorted(skipped.items())},
        elementwise=elementwise,
        params=sum(p.numel() for p in model.parameters()),
    )
