"""Activation memory: per output stride, and the peak of a forward pass.

Paper: App. E, Table 8 compares MobileNetV2-1.0 and MobileViT-XS output stride by output stride
(OS 2, 4, 8, 16, 32), without giving units. For MobileViT-XS the paper's numbers
(784 / 294 / 98 / 31 / 37) are exactly the size of the feature map each stride hands on, at a
224 x 224 input, in KiB at 2 bytes per value (fp16, what CoreML runs on the Neural Engine):
e.g. OS 2: 32 channels x 112 x 112 x 2 B = 784 KiB; OS 32: the 384-channel 1 x 1 expansion at
7 x 7 = 36.75 KiB. Chapter 07 checks that reading and says where it does not fit (MobileNetV2).

Two tools:

* ``memory_per_output_stride``: run the model once and group every activation it creates by the
  output stride it was made at (H_in / H of the most recent 4-D feature map; the transformer's
  ``[B*P, N, d]`` sequences belong to their block's stride). Per stride: the feature map handed to
  the next stride (Table 8's quantity), the largest single activation, and the sum of all of them
  (what training keeps for the backward pass, roughly).
* ``peak_memory``: the largest amount of activation memory alive at any moment of a forward pass,
  tracked tensor by tensor. Inference frees each activation as soon as nothing refers to it, so
  the peak is set by the widest point of the network, not the sum.

Both watch the operators through a ``TorchDispatchMode``: every tensor an operator returns is
seen, with its storage; a storage counts once (views share it) from its first appearance until the
last tensor using it is garbage-collected. Scratch buffers inside a kernel (e.g. an im2col buffer)
are invisible to this and not counted; parameters and the input are reported separately.

The chapter's bar chart of Table 8 is ``mobilevit_edu.plots.cost.plot_memory_per_os``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "StrideMemory",
    "PeakMemory",
    "ActivationTracker",
    "memory_per_output_stride",
    "peak_memory",
    "memory_table",
]


@dataclass
class _Event:
    op: str
    shape: tuple[int, ...]
    nbytes: int  # bytes of a *new* storage, 0 for a view or an in-place result
    numel: int
    output_stride: int
    live_bytes: int  # activation bytes alive right after this op


class ActivationTracker(TorchDispatchMode):
    """Records every operator's outputs and the activation bytes alive after each operator.

    A storage counts from the first operator that returns it until the last tensor using it is
    garbage-collected; views and in-place results share their input's storage and add nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[_Event] = []
        self.live_bytes = 0
        self.peak_bytes = 0
        self._owners: dict[int, list[int]] = {}  # storage pointer -> [live tensors, nbytes]

    def _released(self, key: int) -> None:
        entry = self._owners.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live_bytes -= entry[1]
            del self._owners[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten(out)
        for t in flat:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            new = key not in self._owners and nbytes > 0
            if new:
                self._owners[key] = [0, nbytes]
                self.live_bytes += nbytes
            if key in self._owners:
                self._owners[key][0] += 1
                weakref.finalize(t, self._released, key)
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self.events.append(_Event(
                str(func.overloadpacket.__name__), tuple(t.shape), nbytes if new else 0,
                t.numel(), 0, self.live_bytes,
            ))
        return out


def _as_batch(input_size: int | tuple[int, ...], batch: int, in_channels: int) -> torch.Tensor:
    if not isinstance(input_size, int) and len(input_size) != 2:
        raise ValueError(f"input_size must be S or (H, W), got {input_size}")
    h, w = to_pair(input_size, "input_size")
    return torch.rand(batch, in_channels, h, w, generator=torch.Generator().manual_seed(0))


def _stage_modules(model: nn.Module) -> set[str]:
    """The model's direct children, and the children of those that are ``nn.Sequential``."""
    names = set()
    for name, child in model.named_children():
        names.add(name)
        if isinstance(child, nn.Sequential):
            names.update(f"{name}.{sub}" for sub, _ in child.named_children())
    return names


def _run_tracked(
    model: nn.Module, x: torch.Tensor
) -> tuple[ActivationTracker, list[tuple[int, tuple[int, ...]]]]:
    """Run ``model(x)`` under an ``ActivationTracker``; give every event an output stride.

    Each operator is attributed to the stride of the next module that finishes with a 4-D output
    (the module it was computing); operators after the last such module (pooling, classifier)
    take the last stride. Also returns ``(stride, shape)`` of every stage output, in order."""
    was_training = model.training
    model.eval()
    tracker = ActivationTracker()
    height = x.shape[-2]
    state = {"pending": 0, "stride": 1}
    stage_outputs: list[tuple[int, tuple[int, ...]]] = []
    stages = _stage_modules(model)

    def hook(name: str):
        def fn(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() != 4 or output.shape[-2] < 1:
                return
            ratio = height / output.shape[-2]
            stride = 2 ** max(0, round(math.log2(ratio))) if ratio >= 1 else 1
            for e in tracker.events[state["pending"]:]:
                e.output_stride = stride
            state["pending"], state["stride"] = len(tracker.events), stride
            if name in stages:
                stage_outputs.append((stride, tuple(output.shape)))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode(), tracker:
            out = model(x)
        del out
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for e in tracker.events[state["pending"]:]:
        e.output_stride = state["stride"]
    return tracker, stage_outputs


@dataclass
class StrideMemory:
    """The activations made at one output stride (bytes at ``bytes_per_element`` per value)."""

    output_stride: int
    output_shape: tuple[int, ...]  # the feature map handed on to the next stride
    output_bytes: int
    largest_bytes: int  # the largest single activation at this stride
    total_bytes: int  # all activations made at this stride (new storages only)
    tensors: int  # how many new activations


def memory_per_output_stride(
    model: nn.Module,
    input_size: int | tuple[int, int] = 224,
    *,
    batch: int = 1,
    bytes_per_element: int = 4,
) -> list[StrideMemory]:
    """Activation memory grouped by output stride (see the module docstring); one row per stride,
    in increasing order. ``bytes_per_element=2`` gives fp16 sizes (the paper's Table 8 unit,
    in KiB after dividing by 1024)."""
    x = _as_batch(input_size, batch, getattr(model, "in_channels", 3))
    tracker, stage_outputs = _run_tracked(model, x)
    rows: dict[int, StrideMemory] = {}
    for stride, shape in stage_outputs:  # the last stage output at a stride wins
        rows[stride] = StrideMemory(stride, shape, math.prod(shape) * bytes_per_element, 0, 0, 0)
    for e in tracker.events:
        row = rows.get(e.output_stride)
        if row is None or not e.nbytes:
            continue
        size = e.numel * bytes_per_element
        row.largest_bytes = max(row.largest_bytes, size)
        row.total_bytes += size
        row.tensors += 1
    return [rows[k] for k in sorted(rows)]


@dataclass
class PeakMemory:
    """Peak activation memory of one forward pass, beside the parameters and the input."""

    peak_bytes: int  # activations alive at the worst moment (input and parameters excluded)
    total_bytes: int  # every activation ever made, as if none were freed
    param_bytes: int
    input_bytes: int
    peak_op: str  # the operator right after which the peak was reached
    peak_shape: tuple[int, ...]
    timeline: list[int] = field(default_factory=list)  # live bytes after each operator

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def peak_memory(
    model: nn.Module, input_size: int | tuple[int, int] = 256, *, batch: int = 1
) -> PeakMemory:
    """The peak of activation memory during one inference forward pass (float32), tracked
    operator by operator (see ``ActivationTracker``)."""
    x = _as_batch(input_size, batch, getattr(model, "in_channels", 3))
    tracker, _ = _run_tracked(model, x)
    timeline = [e.live_bytes for e in tracker.events]
    at = max(range(len(timeline)), key=timeline.__getitem__) if timeline else 0
    ev = tracker.events[at] if tracker.events else _Event("", (), 0, 0, 1, 0)
    return PeakMemory(
        peak_bytes=tracker.peak_bytes,
        total_bytes=sum(e.nbytes for e in tracker.events),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters())
        + sum(b.numel() * b.element_size() for b in model.buffers()),
        input_bytes=x.numel() * x.element_size(),
        peak_op=ev.op,
        peak_shape=ev.shape,
        timeline=timeline,
    )


def memory_table(rows: dict[str, list[StrideMemory]], *, unit: int = 1024,
                 field_name: str = "output_bytes") -> str:
    """Text table: one line per output stride, one column per model (``field_name`` / ``unit``,
    KiB by default, one decimal)."""
    strides = sorted({r.output_stride for rs in rows.values() for r in rs})
    head = f"{'OS':>4}" + "".join(f"{label:>18}" for label in rows)
    lines = [head, "-" * len(head)]
    for s in strides:
        cells = []
        for rs in rows.values():
            match = [r for r in rs if r.output_stride == s]
            value = getattr(match[0], field_name) / unit if match else None
            cells.append(f"{value:>18.1f}" if value is not None else f"{'-':>18}")
        lines.append(f"{s:>4}" + "".join(cells))
    return "\n".join(lines)
