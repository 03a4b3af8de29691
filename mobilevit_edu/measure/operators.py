"""Where the time of a forward pass goes: operator by operator, and the exponentials it evaluates.

Paper: §4.1 and App. D argue that FLOPs do not predict time; book chapter 07 shows why on a CPU.
A MAC count (``mobilevit_edu.measure.flops``) sees only the multiply-adds, while a MobileViT
spends much of its time in operators that do none: the SiLU and softmax exponentials, BatchNorm,
and the copies of unfold / fold and layout changes.

* ``time_by_operator``: milliseconds per forward pass in each category of aten operator
  (``OP_CATEGORIES``: conv, attention, linear, norm, activation, copy / layout, ...), timed
  operator by operator through a ``TorchDispatchMode``;
* ``count_exponentials``: how many exponentials a pass evaluates (SiLU outputs, attention
  scores), which with ``latency.exp_ns`` gives a time floor no MAC count shows.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from mobilevit_edu.measure.latency import threads

__all__ = ["count_exponentials", "OP_CATEGORIES", "op_category", "time_by_operator"]


def count_exponentials(model: nn.Module | Callable[[torch.Tensor], Any],
                       x: torch.Tensor) -> dict[str, int]:
    """How many exponentials one forward pass of ``model`` on ``x`` evaluates, by source.

    ``"activation"``: one per output element of every SiLU and sigmoid;
    ``"attention"``: one per attention score, ``B * h * N_q * N_k`` for every
    scaled-dot-product attention and one per element of every softmax; ``"total"``: the sum.
    Read from the aten operators the pass runs (``TorchDispatchMode``), so it counts what
    actually runs, whichever attention path that is."""
    counts = {"activation": 0, "attention": 0}

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if "backward" in name:
                return out
            if name in ("silu", "silu_", "sigmoid", "sigmoid_"):
                counts["activation"] += out.numel()
            elif "scaled_dot_product" in name:
                q, k = args[0], args[1]  # [..., N_q, d], [..., N_k, d]
                counts["attention"] += q.shape[:-1].numel() * k.shape[-2]
            elif "softmax" in name:
                counts["attention"] += out.numel()
            return out

    if isinstance(model, nn.Module):
        model.eval()
    with torch.inference_mode(), _Count():
        model(x)
    return {**counts, "total": counts["activation"] + counts["attention"]}


# --- where the time goes -----------------------------------------------------------------------
# (substring of an aten operator's name, category); the first match wins
OP_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("conv", "conv"),
    ("scaled_dot_product", "attention"),
    ("bmm", "attention"),
    ("softmax", "attention"),
    ("addmm", "linear"),
    ("linear", "linear"),
    ("matmul", "linear"),
    ("mm", "linear"),
    ("batch_norm", "norm"),
    ("layer_norm", "norm"),
    ("silu", "activation"),
    ("relu", "activation"),
    ("hardtanh", "activation"),
    ("gelu", "activation"),
    ("upsample", "resize"),
    ("copy", "copy / layout"),
    ("clone", "copy / layout"),
    ("cat", "copy / layout"),
    ("contiguous", "copy / layout"),
    ("reshape", "copy / layout"),
    ("permute", "copy / layout"),
    ("transpose", "copy / layout"),
    ("view", "copy / layout"),
    ("flatten", "copy / layout"),
    ("unbind", "copy / layout"),
    ("add", "add / mul / mean"),
    ("mul", "add / mul / mean"),
    ("div", "add / mul / mean"),
    ("mean", "add / mul / mean"),
)


def op_category(name: str) -> str:
    """The category of an aten operator name (``"other"`` if none matches)."""
    for key, category in OP_CATEGORIES:
        if key in name:
            return category
    return "other"


def time_by_operator(
    model: nn.Module | Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    *,
    repeats: int = 3,
    warmup: int = 1,
    num_threads: int | None = None,
    clock: str = "wall",
) -> dict[str, float]:
    """Milliseconds per forward pass spent in each operator category (see ``OP_CATEGORIES``),
    median over ``repeats`` passes, plus ``"total"`` (the sum).

    ``clock="cpu"`` measures the process's CPU time instead of wall time: with one thread, a
    busy machine then disturbs the split much less.

    Every aten operator the model calls is timed individually through a ``TorchDispatchMode``,
    so views (free) are separated from copies, convolutions from the BatchNorm and SiLU after them.
    The per-operator timing adds a little Python overhead per call, which is *not* counted."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time

    class _Timer(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ms: dict[str, float] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            t0 = now()
            out = func(*args, **(kwargs or {}))
            dt = 1000.0 * (now() - t0)
            cat = op_category(func.overloadpacket.__name__)
            self.ms[cat] = self.ms.get(cat, 0.0) + dt
            return out

    if isinstance(model, nn.Module):
        model.eval()
    runs: list[dict[str, float]] = []
    with threads(num_threads), torch.inference_mode():
        for i in range(warmup + repeats):
            timer = _Timer()
            with timer:
                model(x)
            if i >= warmup:
                runs.append(timer.ms)
    cats = sorted({c for r in runs for c in r})
    out = {c: statistics.median(r.get(c, 0.0) for r in runs) for c in cats}
    out["total"] = sum(out.values())
    return out
