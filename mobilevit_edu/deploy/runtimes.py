"""Deployment, step 3: the same networks in several runtimes, timed in turns, and the time of
unfold and fold.

Paper: §4.3 and Table 11 time MobileNetV2, DeiT, PiT and MobileViT-XS in three runtimes (the
iPhone 12's CPU and Neural Engine, an NVIDIA V100), and note that PyTorch's ``Unfold``/``Fold``
instead of reshapes made the V100 faster; Tables 3 and 6 time the (8, 4, 2) patch setting. Book
chapter 14 does it on a CPU:

* ``compare_runtimes``: PyTorch eager, eager with BatchNorm folded and channels-last memory
  (``deploy.inference.optimize_for_inference``), ``torch.compile`` (``compile_model``) and ONNX
  Runtime (``deploy.onnx_runtime``), every output checked against eager mode, then timed in turns
  with ``measure.latency.time_interleaved``; the result is a ``RuntimeLatency``;
* ``time_unfold_fold``: how much of an eager forward pass ``unfold`` and ``fold`` take.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mobilevit_edu.data.photos import photo_batch
from mobilevit_edu.deploy.export import eval_mode
from mobilevit_edu.deploy.inference import compile_model, optimize_for_inference
from mobilevit_edu.deploy.onnx_runtime import onnx_session
from mobilevit_edu.measure.latency import Timing, threads, time_interleaved
from mobilevit_edu.nn import block as block_module
from mobilevit_edu.nn.layers import to_pair

__all__ = ["RUNTIMES", "RuntimeLatency", "compare_runtimes", "time_unfold_fold"]

RUNTIMES: dict[str, str] = {  # key -> label in tables and plots
    "eager": "PyTorch eager",
    "eager_fast": "eager, BN folded + NHWC",
    "compiled": "torch.compile",
    "onnxruntime": "ONNX Runtime",
}


# --- unfold and fold in eager mode -------------------------------------------------------------
def time_unfold_fold(
    model: nn.Module,
    x: torch.Tensor,
    *,
    repeats: int = 5,
    warmup: int = 1,
    num_threads: int | None = 1,
    clock: str = "cpu",
) -> dict[str, float]:
    """Milliseconds per forward pass spent in ``patches.unfold`` and ``patches.fold`` (as the
    MobileViT blocks call them), and in the whole forward pass (median over ``repeats``).

    Returns ``{"unfold": ms, "fold": ms, "forward": ms}``. The blocks' module-level ``unfold``
    and ``fold`` are wrapped with a timer for the duration of the call and restored afterwards.
    ``clock="cpu"`` uses the process's CPU time (steadier on a shared machine with one thread),
    ``"wall"`` the wall clock."""
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    spent = {"unfold": 0.0, "fold": 0.0}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = now()
            out = fn(*args, **kwargs)
            spent[name] += now() - t0
            return out
        return wrapper

    original = block_module.unfold, block_module.fold
    block_module.unfold = timed("unfold", original[0])
    block_module.fold = timed("fold", original[1])
    samples: list[dict[str, float]] = []
    try:
        with eval_mode(model), threads(num_threads), torch.inference_mode():
            for i in range(warmup + repeats):
                spent.update(unfold=0.0, fold=0.0)
                t0 = now()
                model(x)
                total = now() - t0
                if i >= warmup:
                    samples.append({"unfold": 1000 * spent["unfold"], "fold": 1000 * spent["fold"],
                                    "forward": 1000 * total})
    finally:
        block_module.unfold, block_module.fold = original
    if not any(s["unfold"] for s in samples) and not any(s["fold"] for s in samples):
        raise ValueError("the model never called unfold/fold: is it a MobileViT?")
    return {k: statistics.median(s[k] for s in samples) for k in ("unfold", "fold", "forward")}


# --- comparing runtimes ----------------------------------------------------------------------
@dataclass
class RuntimeLatency:
    """Timings of several models in several runtimes, taken in turns in one process."""

    timings: dict[str, dict[str, Timing]]  # model label -> runtime key -> Timing
    compile_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 1
    batch: int = 1
    image_size: tuple[int, int] = (256, 256)

    def ms(self, label: str, runtime: str, clock: str = "cpu") -> float | None:
        """Median milliseconds per batch (``clock="cpu"``: process CPU time; ``"wall"``), or
        None if that runtime was not timed for that model (e.g. compiling failed)."""
        t = self.timings.get(label, {}).get(runtime)
        if t is None:
            return None
        return t.median_cpu_ms if clock == "cpu" else t.median_ms

    @property
    def runtimes(self) -> list[str]:
        return [k for k in RUNTIMES if any(k in t for t in self.timings.values())]

    def table(self, macs_g: dict[str, float] | None = None, clock: str = "cpu") -> str:
        """A text table: one row per model, median ms per runtime, MACs (G) if given."""
        cols = self.runtimes
        head = f"{'model':22s}" + (f"{'GMACs':>7s}" if macs_g else "")
        head += "".join(f"{RUNTIMES[c]:>{max(14, len(RUNTIMES[c]) + 2)}s}" for c in cols)
        lines = [head]
        for label in self.timings:
            row = f"{label:22s}" + (f"{macs_g[label]:>7.3f}" if macs_g else "")
            for c in cols:
                v = self.ms(label, c, clock)
                width = max(14, len(RUNTIMES[c]) + 2)
                row += f"{v:>{width}.1f}" if v is not None else f"{'-':>{width}s}"
            lines.append(row)
        return "\n".join(lines)


def compare_runtimes(
    models: dict[str, nn.Module],
    onnx_files: dict[str, str | os.PathLike],
    *,
    images: torch.Tensor | None = None,
    image_size: int | tuple[int, int] = 256,
    batch: int = 1,
    num_threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    compile: bool | Sequence[str] = True,
    runtimes: Sequence[str] = ("eager", "eager_fast", "compiled", "onnxruntime"),
) -> RuntimeLatency:
    """Time every model in every runtime on the same input, all candidates in turns
    (``latency.time_interleaved``), with ``num_threads`` threads for PyTorch and ONNX Runtime.

    Runtimes: ``eager`` (the model as is), ``eager_fast`` (``optimize_for_inference``: BN
    folded, channels-last), ``compiled`` (``compile_model`` of the fast copy: inductor with
    frozen weights; models it fails on, or not named in ``compile``, are left out and the reason
    kept in ``compile_info``), ``onnxruntime`` (the model's file in ``onnx_files``, if any).
    Every runtime's output is checked against eager mode (1e-4 relative to the largest logit)
    before timing."""
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; known: {list(RUNTIMES)}")
    if images is None:
        h, w = to_pair(image_size, "image_size")
        if h != w:
            raise ValueError("photo_batch makes square images; pass images= for other sizes")
        images = photo_batch(batch, h, seed=2)
    batch, size = images.shape[0], tuple(images.shape[-2:])
    to_compile = set(models) if compile is True else set() if compile is False else set(compile)
    calls: dict[str, Callable[[], Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    with threads(num_threads):
        for label, model in models.items():
            model.eval()
            with torch.inference_mode():
                reference = model(images).float()
            tol = 1e-4 * max(1.0, reference.abs().max().item())
            candidates: dict[str, Callable[[], Any]] = {}
            if "eager" in runtimes:
                candidates["eager"] = _inference_call(model, images)
            fast = None
            if "eager_fast" in runtimes or "compiled" in runtimes:
                fast = optimize_for_inference(model)
            if "eager_fast" in runtimes:
                candidates["eager_fast"] = _inference_call(fast, images)
            if "compiled" in runtimes:
                if label in to_compile:
                    compiled, info[label] = compile_model(fast, images)
                    if info[label]["compiled"]:
                        candidates["compiled"] = lambda c=compiled: c(images)
                else:
                    info[label] = {"compiled": False, "error": "not requested"}
            if "onnxruntime" in runtimes and label in onnx_files:
                runner = onnx_session(onnx_files[label], num_threads)
                candidates["onnxruntime"] = runner.runner(images)
            for key, call in candidates.items():
                out = call()
                out = out if isinstance(out, torch.Tensor) else torch.from_numpy(out)
                diff = (out.float() - reference).abs().max().item()
                if not diff <= tol:
                    raise RuntimeError(f"{label} in {key} differs from eager by {diff:.3g}")
                calls[f"{label}\t{key}"] = call
    timed = time_interleaved(calls, repeats=repeats, warmup=warmup, num_threads=num_threads,
                             batch=batch)
    out: dict[str, dict[str, Timing]] = {label: {} for label in models}
    for name, timing in timed.items():
        label, key = name.split("\t")
        timing.label = f"{label}, {RUNTIMES[key]}"
        out[label][key] = timing
    return RuntimeLatency(out, info, threads=num_threads, batch=batch, image_size=size)


def _inference_call(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return call
