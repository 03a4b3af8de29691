"""Timing a network properly, and making it fast on a CPU.

Paper: Tables 3, 6, 10 and 11 and Fig. 10 report inference *time* beside parameters and FLOPs,
on an iPhone 12 (CPU and Neural Engine, CoreML, mean of 100 runs) and an NVIDIA V100. The paper's
point (§4.1, App. D) is that FLOPs do not predict time: MobileViT-XS has fewer FLOPs than DeiT
and about twice those of MobileNetV2, yet runs far slower than MobileNetV2 on a phone.

A forward pass is a noisy quantity. The harness here times it the way one should:

* ``torch.inference_mode()`` and ``model.eval()`` (no autograd bookkeeping, no dropout);
* a fixed, *stated* number of threads (``torch.set_num_threads``), restored afterwards;
* denormal numbers flushed to zero (``torch.set_flush_denormal``): tiny values in a randomly
  initialised network can make float arithmetic 10-100x slower on x86;
* warm-up calls first (one-off costs: memory allocation, oneDNN kernel selection, lazy init);
* many timed calls, reported as the median with the spread (min, quartiles, max), never a mean
  of a handful of runs;
* ``time_interleaved`` times several candidates in turns (A, B, C, A, B, C, ...), so a busy
  machine slows them all alike and their *ratio* stays meaningful even when absolute times drift.

Making it fast (``optimize_for_inference``, all opt-in, all checked against the plain model):
BatchNorm folded into the preceding convolution (exact up to float rounding), channels-last
memory layout (what oneDNN's convolutions want on a CPU), and optionally ``torch.compile``
(inductor, with weight freezing), with a clean fall-back to eager mode when compiling fails.
``reuse_freed_memory`` stops glibc from handing large freed blocks back to the kernel, which on a
virtual machine otherwise costs a page fault per 4 KiB every time a big activation is allocated.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "Timing",
    "threads",
    "time_callable",
    "time_forward",
    "time_interleaved",
    "time_train_step",
    "matmul_gmacs",
    "exp_ns",
    "count_exponentials",
    "machine_info",
    "reuse_freed_memory",
    "fold_batchnorm",
    "optimize_for_inference",
    "compile_model",
    "calibrate_batchnorm",
    "photo_batch",
    "OP_CATEGORIES",
    "op_category",
    "time_by_operator",
    "plot_latency_vs_macs",
    "plot_time_vs_macs_share",
]


# --- the measurement -------------------------------------------------------------------------
@dataclass
class Timing:
    """``repeats`` wall-clock samples (milliseconds) of one call, and how they were taken."""

    label: str
    samples_ms: list[float]  # wall clock per call
    batch: int = 1
    threads: int = 1
    warmup: int = 0
    note: str = ""
    cpu_ms: list[float] = field(default_factory=list)  # CPU time of the process per call
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("a Timing needs at least one sample")
        if self.cpu_ms and len(self.cpu_ms) != len(self.samples_ms):
            raise ValueError("need one CPU-time sample per wall-clock sample")

    @property
    def median_cpu_ms(self) -> float:
        """Median CPU time per call (all threads of the process together). With one thread this
        is a stand-in for latency that a busy machine disturbs much less than wall time: time
        spent waiting for the core does not count."""
        if not self.cpu_ms:
            raise ValueError("no CPU-time samples were recorded")
        return statistics.median(self.cpu_ms)

    @property
    def repeats(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def quantile_ms(self, q: float) -> float:
        """Linear-interpolated quantile ``q`` in [0, 1] of the samples."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        s = sorted(self.samples_ms)
        pos = q * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    @property
    def iqr_ms(self) -> float:
        """Inter-quartile range: the spread of the middle half of the samples."""
        return self.quantile_ms(0.75) - self.quantile_ms(0.25)

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / self.median_ms

    def summary(self) -> str:
        return (f"{self.label}: median {self.median_ms:.2f} ms (IQR {self.iqr_ms:.2f}, "
                f"min {self.min_ms:.2f}, max {self.max_ms:.2f}; n={self.repeats}, "
                f"batch {self.batch}, {self.threads} thread{'s' * (self.threads != 1)})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the raw samples plus the summary statistics."""
        d = asdict(self)
        d.update(median_ms=self.median_ms, min_ms=self.min_ms, max_ms=self.max_ms,
                 q25_ms=self.quantile_ms(0.25), q75_ms=self.quantile_ms(0.75),
                 images_per_s=self.images_per_s,
                 median_cpu_ms=self.median_cpu_ms if self.cpu_ms else None)
        return d


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads (``None``: leave as is), restored afterwards.

    Also flushes denormals to zero (left on). Yields the thread count in force."""
    if n is not None and n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_flush_denormal(True)
    try:
        if n is not None:
            torch.set_num_threads(n)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def time_callable(
    fn: Callable[[], Any],
    *,
    repeats: int = 20,
    warmup: int = 3,
    num_threads: int | None = None,
    label: str = "",
    batch: int = 1,
) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed (wall clock)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    with threads(num_threads) as n:
        for _ in range(warmup):
            fn()
        samples, cpu = [], []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            samples.append(1000.0 * (time.perf_counter() - t0))
            cpu.append(1000.0 * (time.process_time() - c0))
    return Timing(label, samples, batch=batch, threads=n, warmup=warmup, cpu_ms=cpu)


def _images(batch: int, image_size: int | tuple[int, int], channels_last: bool) -> torch.Tensor:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def time_forward(
    model: nn.Module | Callable[[torch.Tensor], Any],
    batch: int = 1,
    image_size: int | tuple[int, int] = 256,
    *,
    repeats: int = 20,
    warmup: int = 3,
    num_threads: int | None = None,
    channels_last: bool = False,
    label: str = "",
) -> Timing:
    """Median-of-``repeats`` latency of ``model(x)`` for a ``[batch, 3, H, W]`` input.

    The model is put in eval mode and called under ``torch.inference_mode()``."""
    if isinstance(model, nn.Module):
        model.eval()
    x = _images(batch, image_size, channels_last)

    def call() -> None:
        with torch.inference_mode():
            model(x)

    return time_callable(call, repeats=repeats, warmup=warmup, num_threads=num_threads,
                         label=label or type(model).__name__, batch=batch)


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    repeats: int = 20,
    warmup: int = 3,
    num_threads: int | None = None,
    batch: int = 1,
) -> dict[str, Timing]:
    """Time several candidates in turns: one call of each per round, ``repeats`` rounds.

    Background load that comes and goes then lands on every candidate alike. The order inside a
    round rotates, so no candidate always runs first (right after another one's memory traffic).
    """
    if not fns:
        raise ValueError("nothing to time")
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    with threads(num_threads) as n:
        for name in names:
            for _ in range(warmup):
                fns[name]()
        for r in range(repeats):
            for i in range(len(names)):
                name = names[(i + r) % len(names)]
                c0, t0 = time.process_time(), time.perf_counter()
                fns[name]()
                samples[name].append(1000.0 * (time.perf_counter() - t0))
                cpu[name].append(1000.0 * (time.process_time() - c0))
    return {k: Timing(k, v, batch=batch, threads=n, warmup=warmup, cpu_ms=cpu[k])
            for k, v in samples.items()}


def time_train_step(
    model: nn.Module,
    batch: int = 16,
    image_size: int = 256,
    *,
    repeats: int = 5,
    warmup: int = 2,
    num_threads: int | None = None,
    channels_last: bool = False,
    lr: float = 2e-4,
    label: str = "",
) -> Timing:
    """Time one training step: forward, cross-entropy, backward, AdamW update."""
    model.train()
    x = _images(batch, image_size, channels_last)
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return time_callable(step, repeats=repeats, warmup=warmup, num_threads=num_threads,
                         label=label or f"{type(model).__name__} train step", batch=batch)


def matmul_gmacs(
    n: int = 2048, *, repeats: int = 5, num_threads: int | None = None
) -> tuple[float, Timing]:
    """Multiply-accumulates per second (in G) of an ``n x n`` by ``n x n`` float32 matmul.

    A large matmul is the most efficient thing a CPU does with PyTorch (one BLAS call, n^3 MACs);
    its rate is a practical ceiling to compare a network's achieved MACs per second with."""
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    b = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    t = time_callable(lambda: a @ b, repeats=repeats, warmup=1, num_threads=num_threads,
                      label=f"matmul {n}x{n}x{n}")
    return n**3 / (t.median_ms * 1e-3) / 1e9, t


def exp_ns(
    n: int = 1 << 20, *, repeats: int = 9, num_threads: int | None = None
) -> tuple[float, Timing]:
    """Nanoseconds per element of ``torch.sigmoid`` over ``n`` floats (4 MiB by default).

    The price of one exponential with PyTorch's vectorised kernel: SiLU is ``x * sigmoid(x)``
    and softmax one ``exp`` per score, and neither is a multiply-add, so ``matmul_gmacs`` says
    nothing about them. With ``count_exponentials`` it turns into a time floor for a network."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    out = torch.empty_like(x)
    t = time_callable(lambda: torch.sigmoid(x, out=out), repeats=repeats, warmup=2,
                      num_threads=num_threads, label=f"sigmoid over {n} floats")
    return t.median_ms * 1e6 / n, t


def count_exponentials(model: nn.Module | Callable[[torch.Tensor], Any],
                       x: torch.Tensor) -> dict[str, int]:
    """How many exponentials one forward pass of ``model`` on ``x`` evaluates, by source.

    ``"activation"``: one per output element of every SiLU and sigmoid;
    ``"attention"``: one per attention score, ``B * h * N_q * N_k`` for every
    scaled-dot-product attention and one per element of every softmax; ``"total"``: the sum.
    Read from the aten operators the pass runs (``TorchDispatchMode``), so it counts what
    actually runs, whichever attention path that is."""
    from torch.utils._python_dispatch import TorchDispatchMode

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


def machine_info() -> dict[str, Any]:
    """What a timing depends on: CPU, cores, threads, load average, library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["loadavg"] = list(os.getloadavg())
    return info


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
    from torch.utils._python_dispatch import TorchDispatchMode

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


# --- making it fast --------------------------------------------------------------------------
def photo_batch(batch: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    """``[batch, 3, size, size]``: random crops (and horizontal flips) of a real photograph
    (``figures.sample_photo``), so activations look like a real image's, not like noise's."""
    from mobilevit_edu.data.photos import sample_photo

    g = torch.Generator().manual_seed(seed)
    margin = size // 4
    photo = sample_photo(size + margin)
    crops = []
    for _ in range(batch):
        top, left = (int(v) for v in torch.randint(0, margin + 1, (2,), generator=g))
        crop = photo[:, top:top + size, left:left + size]
        crops.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
    return torch.stack(crops)


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, steps: int = 3) -> nn.Module:
    """Give a randomly initialised network realistic BatchNorm statistics.

    Runs ``steps`` forward passes in train mode (no gradients) and sets every BatchNorm's running
    mean and variance to the average of the batch statistics it saw (cumulative averaging,
    ``momentum=None``, restored afterwards). Eval-mode activations then have the scale a trained
    network's have, instead of drifting to huge or denormal values through 30 layers. Returns the
    model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for _ in range(steps):
                model(images)
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return model.eval()


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x)) == fused(x)`` in eval mode: scale the filters, add a bias."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
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
                parent._modules[first] = _fold_pair(conv, bn)
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


# --- figures (chapter 07) ----------------------------------------------------------------------
def plot_latency_vs_macs(
    points: Sequence[dict[str, Any]],
    *,
    xlabel: str = "multiply-adds per image (G)",
    ylabel: str = "CPU latency per image (ms)",
    title: str = "",
    name: str = "07_latency_vs_macs",
):
    """Scatter of latency against MACs, one labelled point per model, with a least-squares line
    through the origin ("time proportional to MACs") for reference.

    ``points``: dicts with ``label``, ``macs_g``, ``ms`` and optionally ``group`` (points of one
    group share a colour and a legend entry) and ``offset`` (the label's offset in points,
    default ``(6, 4)``, to move labels of points that sit close together).
    Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    if not points:
        raise ValueError("nothing to plot")
    groups: list[str] = []
    for p in points:
        if p.get("group", "") not in groups:
            groups.append(p.get("group", ""))
    colours = dict(zip(groups, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for g in groups:
        pts = [p for p in points if p.get("group", "") == g]
        ax.scatter([p["macs_g"] for p in pts], [p["ms"] for p in pts], s=46, color=colours[g],
                   label=g or None, zorder=3)
    for p in points:
        ax.annotate(p["label"], (p["macs_g"], p["ms"]), textcoords="offset points",
                    xytext=p.get("offset", (6, 4)), fontsize=8.5)
    xs = [p["macs_g"] for p in points]
    ys = [p["ms"] for p in points]
    slope = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    top = 1.1 * max(xs)
    ax.plot([0, top], [0, slope * top], linestyle="--", color="grey", linewidth=1,
            label=f"if time were proportional to MACs ({slope:.1f} ms per G)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.15 * max(max(ys), slope * top))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8.5, loc="upper left")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_time_vs_macs_share(
    macs: dict[str, float],
    time_ms: dict[str, float],
    *,
    title: str = "",
    name: str = "07_time_vs_macs_share",
):
    """Two stacked horizontal bars, each 100 %: how the multiply-adds split over operator
    categories, and how the measured time does. ``macs`` and ``time_ms`` map a category to an
    amount (a ``"total"`` key is ignored). Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    macs = {k: v for k, v in macs.items() if k != "total" and v > 0}
    time_ms = {k: v for k, v in time_ms.items() if k != "total" and v > 0}
    if not macs or not time_ms:
        raise ValueError("need positive MACs and times")
    cats = list(macs) + [c for c in time_ms if c not in macs]
    colours = dict(zip(cats, (plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)))
    fig, ax = plt.subplots(figsize=(8.6, 2.9))
    for row, (label, values) in enumerate((("multiply-adds", macs), ("time", time_ms))):
        total, left = sum(values.values()), 0.0
        for c in cats:
            share = 100.0 * values.get(c, 0.0) / total
            if share <= 0:
                continue
            ax.barh(row, share, left=left, color=colours[c], edgecolor="white",
                    label=c if row == 0 or c not in macs else None)
            if share >= 5:
                ax.text(left + share / 2, row, f"{share:.0f}%", ha="center", va="center",
                        fontsize=8.5, color="white")
            left += share
    ax.set_yticks([0, 1], ["multiply-adds", "time"])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share (%)")
    ax.grid(False, axis="y")
    if title:
        ax.set_title(title, fontsize=11)
    ax.legend(ncol=4, fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
