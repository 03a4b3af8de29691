"""Making a network fast for inference on a CPU: BatchNorm folding, channels-last memory,
``torch.compile``, and an allocator setting.

Paper: §4.3 ("performance on mobile devices") explains part of MobileViT's slowness on a phone by
what CNNs get and transformers did not yet: "device-level optimizations", e.g. BatchNorm fused
into the preceding convolution. Book chapter 07 applies those optimisations on a CPU and chapter
14 times them against other runtimes; ``benchmarks/latency.py`` uses all of them.

All opt-in, all checked against the plain model (``optimize_for_inference``):

* ``fold_batchnorm`` / ``fold_conv_bn``: BatchNorm folded into the preceding convolution
  (exact up to float rounding): one pass over each activation instead of two;
* channels-last memory layout (NHWC, what oneDNN's convolutions want on a CPU);
* ``compile_model``: ``torch.compile`` (inductor, with weight freezing), with a clean fall-back
  to eager mode when compiling fails;
* ``reuse_freed_memory``: stops glibc from handing large freed blocks back to the kernel, which
  on a virtual machine otherwise costs a page fault per 4 KiB every time a big activation is
  allocated.

Timing itself is ``mobilevit_edu.measure.latency``.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import platform
import time
from typing import Any, Callable

import torch
from torch import nn

__all__ = [
    "reuse_freed_memory",
    "fold_conv_bn",
    "fold_batchnorm",
    "optimize_for_inference",
    "compile_model",
]


_REUSE_STATE: dict[str, bool] = {}


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the kernel.

    By default glibc serves large allocations (above a threshold that grows only up to 32 MiB)
    with a fresh ``mmap`` and gives them back with ``munmap`` when freed. A batch of 8 images at
    256 x 256 makes activations of 34-67 MB in the first stages, so every forward pass
    page-faults over those buffers again: an element-wise op on a new 34 MB tensor then takes
    ~25 ms instead of ~3 ms on a virtual machine. ``mallopt(M_MMAP_MAX, 0)`` keeps all blocks on
    the heap and ``M_TRIM_THRESHOLD`` stops the heap from shrinking. Process-wide, affects every
    model alike; returns False where it does not apply (not glibc)."""
    if "done" in _REUSE_STATE:
        return _REUSE_STATE["done"]
    ok = False
    name = ctypes.util.find_library("c")
    if platform.system() == "Linux" and name:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(name)
            m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
            ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    _REUSE_STATE["done"] = ok
    return ok


# --- BatchNorm folding, channels-last, compile ---------------------------------------------------
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of ``conv`` with ``bn`` folded in: ``bn(conv(x)) == fused(x)`` in eval mode.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, the filters become
    ``W * s`` and the bias ``(b - running_mean) * s + beta``."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))  # [C_out] -> [C_out, 1, 1, 1]
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` inside an ``nn.Sequential``
    (``ConvBNAct`` is one) into the convolution, **in place**; returns the model.

    Only valid for inference: the folded model has no BatchNorm left to update, and its
    ``state_dict`` no longer has the ``bn`` keys (keep the original for checkpoints)."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    for parent in list(model.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats):
                parent._modules[first] = fold_conv_bn(conv, bn)
                parent._modules[second] = nn.Identity()
    return model


class _ChannelsLast(nn.Module):
    """Wraps a model: converts the input batch to channels-last memory, then calls the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def optimize_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    compile: bool = False,
    example: torch.Tensor | None = None,
) -> nn.Module:
    """A faster **copy** of ``model`` for inference; the original is left untouched.

    * ``fold_bn``: fold BatchNorm into the convolutions (``fold_batchnorm``): one pass over each
      activation instead of two;
    * ``channels_last``: weights and activations in NHWC memory order, the layout oneDNN's CPU
      convolutions run natively (depth-wise convolutions gain most); inputs are converted on the
      way in, outputs are ordinary tensors;
    * ``compile``: ``compile_model`` (inductor with weight freezing), falling back to eager mode
      if compiling fails; ``example`` is the input used to compile and check it.

    The result must agree with the original to float rounding; ``tests/test_latency.py`` checks
    1e-4 on the logits."""
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(fast)
    if channels_last:
        fast = _ChannelsLast(fast.to(memory_format=torch.channels_last)).eval()
    if compile:
        if example is None:
            raise ValueError("compile=True needs an example input to compile with")
        fast, _ = compile_model(fast, example)
    return fast


def compile_model(
    model: nn.Module, example: torch.Tensor, *, freezing: bool = True, dynamic: bool = False
) -> tuple[nn.Module | Callable, dict[str, Any]]:
    """``torch.compile`` (inductor) for inference, compiled and checked on ``example``.

    With ``freezing`` the weights become constants, so inductor can pre-pack them for oneDNN and
    fuse each convolution with its activation. Compiling happens on the first call; this function
    makes that call, measures how long it took, and compares the output with eager mode. If
    anything fails (no C++ compiler, an unsupported op) it returns the eager model and says why:
    ``info = {"compiled": bool, "compile_s": float, "max_abs_diff": float, "error": str}``."""
    model.eval()
    info: dict[str, Any] = {"compiled": False, "compile_s": 0.0, "error": ""}
    with torch.inference_mode():
        expected = model(example)
    try:
        import torch._dynamo as dynamo
        import torch._inductor.config as inductor_config

        # Every model compiled through the same forward code (e.g. many ``_ChannelsLast``
        # wrappers) adds a cache entry to that code; past the limit (8 by default) dynamo would
        # silently run eager mode. Raise it, and fail loudly rather than fall back unseen.
        limit = ("recompile_limit" if hasattr(dynamo.config, "recompile_limit")
                 else "cache_size_limit")
        setattr(dynamo.config, limit, max(64, getattr(dynamo.config, limit)))
        graphs = dynamo.utils.counters["stats"]["unique_graphs"]
        compiled = torch.compile(model, backend="inductor", dynamic=dynamic)
        t0 = time.perf_counter()
        with inductor_config.patch(freezing=freezing), torch.inference_mode():
            got = compiled(example)
        info["compile_s"] = time.perf_counter() - t0
        if dynamo.utils.counters["stats"]["unique_graphs"] == graphs:
            raise RuntimeError("torch.compile produced no graph (recompile limit hit?)")
        diff = (got.float() - expected.float()).abs().max().item()
        info["max_abs_diff"] = diff
        if not diff < 1e-3 * max(1.0, expected.abs().max().item()):
            raise RuntimeError(f"compiled output differs from eager by {diff:.3g}")
        info["compiled"] = True
        return _FrozenCall(compiled, freezing), info
    except Exception as err:  # noqa: BLE001  (any failure: fall back to eager, say why)
        info["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        return model, info


class _FrozenCall:
    """Calls a compiled model under ``inference_mode`` with the inductor settings it was built
    with (a recompilation, e.g. for a new batch size, then uses the same settings)."""

    def __init__(self, compiled: Callable, freezing: bool) -> None:
        self.compiled, self.freezing = compiled, freezing

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=self.freezing), torch.inference_mode():
            return self.compiled(x)

    def eval(self) -> "_FrozenCall":
        return self
