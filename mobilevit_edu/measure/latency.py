"""Timing a network properly (timing only: making it fast is ``mobilevit_edu.deploy.inference``).

Paper: Tables 3, 6, 10 and 11 and Fig. 10 report inference *time* beside parameters and FLOPs,
on an iPhone 12 (CPU and Neural Engine, CoreML, mean of 100 runs) and an NVIDIA V100. The paper's
point (§4.1, App. D) is that FLOPs do not predict time: MobileViT-XS has fewer FLOPs than DeiT
and about twice those of MobileNetV2, yet runs far slower than MobileNetV2 on a phone. Book
chapter 07 measures this on a CPU; chapter 14 compares runtimes.

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

``matmul_gmacs`` and ``exp_ns`` price what the machine does best (a large matmul) and what a
MAC count leaves out (an exponential); ``machine_info`` records what a timing depends on. Where
the time of a forward pass goes, operator by operator, is ``mobilevit_edu.measure.operators``.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "Timing",
    "threads",
    "time_callable",
    "time_forward",
    "time_interleaved",
    "time_train_step",
    "matmul_gmacs",
    "exp_ns",
    "machine_info",
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
    h, w = to_pair(image_size, "image_size")
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
    nothing about them. With ``operators.count_exponentials`` it turns into a time floor for a
    network."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    out = torch.empty_like(x)
    t = time_callable(lambda: torch.sigmoid(x, out=out), repeats=repeats, warmup=2,
                      num_threads=num_threads, label=f"sigmoid over {n} floats")
    return t.median_ms * 1e6 / n, t


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
