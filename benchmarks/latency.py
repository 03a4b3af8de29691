"""CPU latency of our MobileViT against Hugging Face's, same weights, same threads, one process.

Run from the repository root (see benchmarks/README.md):

    .venv/bin/python benchmarks/latency.py                  # the full run (20-40 min on 2 cores)
    .venv/bin/python benchmarks/latency.py --quick          # XXS, batch 1, a few repeats

For every size (XXS, XS, S) and batch (1, 8) it times, in turns (A, B, C, A, B, C, ...):

* ``hf``: ``transformers.MobileViTForImageClassification``, eager, as a reader would run it;
* ``ours_eager``: ``mobilevit_edu`` as built, eager;
* ``ours_fold``: BatchNorm folded into the convolutions (``deploy.inference.fold_batchnorm``);
* ``ours_fast``: folded and channels-last (``deploy.inference.optimize_for_inference``);
* ``ours_compiled``: ``ours_fast`` through ``torch.compile`` (inductor, weights frozen);
* ``ours_onnxruntime``: ours exported to ONNX (``mobilevit_edu.deploy.export``, 256 x 256, the batch
  fixed to the one timed) and run by ONNX Runtime (``deploy.onnx_runtime``) with the same threads
  (``--no-onnx`` skips it);

and one training step (forward, cross-entropy, backward, AdamW; batch 16, 256 x 256) for ``hf``,
``ours_eager``, ``ours_cl`` (channels-last) and ``ours_compiled``. Every model gets the same
realistic weights (random init, BatchNorm statistics calibrated on a real photograph); outputs
are checked equal to 1e-4 before anything is timed. Writes JSON (default
``benchmarks/results/latency_cpu.json``) with every sample, the medians, the ratios, the achieved
GMAC/s against a large matmul's, the machine, the thread count and the load average at start.

Each size and batch also gets a ``goal`` entry: what the issue's target (2x faster than hf for
inference, 1.5x for the training step) asks of this machine. Its ``needs_fraction_of_matmul_rate``
is the share of the 2048^3 matmul's GMAC/s the whole network would have to average, and its
``exp_budget_ns`` the time per exponential (SiLU, softmax) left over if every multiply-add ran
at that rate, beside the measured price of one (``torch.sigmoid``, ``sigmoid_1m`` at the top).

Parts: this file (the command line, inference, unfold / fold), ``benchmarks/hf_pair.py`` (the
two models with the same weights, their differences, the goal arithmetic) and
``benchmarks/train_step.py`` (the training step). A mistake on the command line (an unknown
size, a count below 1, an output path that is a folder, a missing optional dependency) gets one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hf_pair import HF_SIZES, TOLERANCE, build_pair, goal, log, max_diff  # noqa: E402
from benchmarks.train_step import bench_training  # noqa: E402
from mobilevit_edu.data.photos import photo_batch  # noqa: E402
from mobilevit_edu.deploy.export import export_onnx  # noqa: E402
from mobilevit_edu.deploy.inference import (  # noqa: E402
    compile_model, fold_batchnorm, optimize_for_inference, reuse_freed_memory,
)
from mobilevit_edu.deploy.onnx_runtime import onnx_session  # noqa: E402
from mobilevit_edu.measure.flops import count_macs  # noqa: E402
from mobilevit_edu.measure.latency import (  # noqa: E402
    exp_ns, machine_info, matmul_gmacs, threads, time_interleaved,
)
from mobilevit_edu.measure.operators import count_exponentials  # noqa: E402
from mobilevit_edu.nn.patches import fold, unfold  # noqa: E402

__all__ = ["goal", "bench_inference", "bench_training", "bench_unfold_fold", "parse_args", "main"]


def _infer(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        with torch.inference_mode():
            fn()
    return call


# --- inference -------------------------------------------------------------------------------
def ort_runner(model: nn.Module, size: str, x: torch.Tensor,
               args: argparse.Namespace) -> Callable[[], torch.Tensor]:
    """``model`` exported for ``x``'s shape (fixed batch, 256 x 256: ONNX Runtime then folds
    every shape computation into constants) and run by ONNX Runtime."""
    path = Path(tempfile.gettempdir()) / f"mobilevit_edu_bench_{size}_{os.getpid()}.onnx"
    log(f"{size} batch {len(x)}: exporting to ONNX ...")
    export_onnx(model, path, 256, dynamic_batch=False, batch=len(x))
    run = onnx_session(path, threads=args.threads).runner(x)
    path.unlink()  # the session holds the model
    return lambda: torch.from_numpy(run())


def bench_inference(size: str, batches: list[int], args: argparse.Namespace,
                    matmul_rate: float, peak_rate: float, sigmoid_ns: float) -> dict[str, Any]:
    ours, hf = build_pair(size)
    macs = count_macs(ours, 256).macs
    exps = count_exponentials(ours, photo_batch(1))["total"]
    folded = fold_batchnorm(copy.deepcopy(ours))
    fast = optimize_for_inference(ours)
    out: dict[str, Any] = {"macs_per_image": macs, "exps_per_image": exps, "batches": {}}
    for batch in batches:
        x = photo_batch(batch, seed=10 + batch)
        candidates: dict[str, Callable[[], Any]] = {
            "hf": lambda: hf(pixel_values=x).logits,
            "ours_eager": lambda: ours(x),
            "ours_fold": lambda: folded(x),
            "ours_fast": lambda: fast(x),
        }
        compile_info: dict[str, Any] = {"compiled": False, "error": "--no-compile"}
        if args.compile:
            log(f"{size} batch {batch}: compiling ...")
            with threads(args.threads):
                compiled, compile_info = compile_model(fast, x)
            log(f"{size} batch {batch}: compiled={compile_info['compiled']} "
                f"in {compile_info.get('compile_s', 0):.0f} s {compile_info.get('error', '')}")
            if compile_info["compiled"]:
                candidates["ours_compiled"] = lambda: compiled(x)
        if args.onnx:
            candidates["ours_onnxruntime"] = ort_runner(ours, size, x, args)
        with torch.inference_mode():
            reference = hf(pixel_values=x).logits
            diffs = {k: max_diff(fn(), reference) for k, fn in candidates.items() if k != "hf"}
        bad = {k: v for k, v in diffs.items() if not v < TOLERANCE}
        if bad:
            raise AssertionError(f"{size} batch {batch}: outputs differ from HF by {bad}")
        repeats = args.repeats if batch == 1 else max(3, args.repeats // 2)
        log(f"{size} batch {batch}: timing {list(candidates)} x {repeats} ...")
        res = time_interleaved({k: _infer(f) for k, f in candidates.items()}, repeats=repeats,
                               warmup=args.warmup, num_threads=args.threads, batch=batch)
        hf_t = res["hf"]
        rows = {}
        for name, t in res.items():
            rate = macs * batch / (t.median_ms * 1e-3) / 1e9
            rows[name] = {
                **t.as_dict(),
                "speedup_vs_hf": hf_t.median_ms / t.median_ms,
                "speedup_vs_hf_cpu_time": hf_t.median_cpu_ms / t.median_cpu_ms,
                "gmacs_per_s": rate,
                "fraction_of_matmul_rate": rate / matmul_rate,
                "max_abs_diff_vs_hf": diffs.get(name, 0.0),
            }
            log(f"  {name:14s} median {t.median_ms:8.1f} ms (IQR {t.iqr_ms:6.1f}; CPU "
                f"{t.median_cpu_ms:8.1f} ms)  x{rows[name]['speedup_vs_hf']:.2f} vs hf "
                f"(CPU time x{rows[name]['speedup_vs_hf_cpu_time']:.2f})  {rate:5.1f} GMAC/s")
        met = goal(2.0, res, macs * batch, exps * batch, peak_rate, sigmoid_ns)
        log(f"  goal 2x: {met['target_ms']:.1f} ms needs {100 * met['needs_fraction_of_matmul_rate']:.0f} % "
            f"of the matmul rate; best {met['best']} x{met['best_speedup']:.2f}")
        out["batches"][str(batch)] = {"timings": rows, "compile": compile_info, "goal": met}
    return out


# --- unfold / fold: the official five steps vs one permute ----------------------------------
def unfold_official(x: torch.Tensor, ph: int = 2, pw: int = 2) -> torch.Tensor:
    """The official code's five-step unfold (for the comparison only)."""
    b, c, h, w = x.shape
    nh, nw = h // ph, w // pw
    x = x.reshape(b * c * nh, ph, nw, pw).transpose(1, 2)  # -> [B*C*nh, nw, ph, pw]
    x = x.reshape(b, c, nh * nw, ph * pw).transpose(1, 3)  # -> [B, P, N, C]
    return x.reshape(b * ph * pw, nh * nw, c)  # -> [B*P, N, C]


def fold_official(seq: torch.Tensor, b: int, c: int, h: int, w: int, ph: int = 2,
                  pw: int = 2) -> torch.Tensor:
    nh, nw = h // ph, w // pw
    x = seq.reshape(b, ph * pw, nh * nw, c).transpose(1, 3)  # -> [B, C, N, P]
    x = x.reshape(b * c * nh, nw, ph, pw).transpose(1, 2)  # -> [B*C*nh, ph, nw, pw]
    return x.reshape(b, c, h, w)  # -> [B, C, H, W]


def bench_unfold_fold(args: argparse.Namespace) -> dict[str, Any]:
    """layer3 of MobileViT-S at batch 8: [8, 144, 32, 32]."""
    out = {}
    for layout in ("nchw", "nhwc"):
        x = torch.randn(8, 144, 32, 32)
        if layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        seq, grid = unfold(x, 2)
        assert torch.equal(unfold_official(x), seq)
        assert torch.equal(fold_official(seq, 8, 144, 32, 32), fold(seq, grid))
        nhwc = layout == "nhwc"
        res = time_interleaved({
            "official_5_steps": lambda: fold_official(unfold_official(x), 8, 144, 32, 32),
            "one_permute": lambda: fold(unfold(x, 2)[0], grid, channels_last=nhwc),
        }, repeats=args.repeats * 2, warmup=3, num_threads=args.threads)
        out[layout] = {k: t.as_dict() for k, t in res.items()}
        out[layout]["speedup"] = res["official_5_steps"].median_ms / res["one_permute"].median_ms
        log(f"unfold+fold {layout}: official {res['official_5_steps'].median_ms:.2f} ms, "
            f"one permute {res['one_permute'].median_ms:.2f} ms")
    return out


# --- main ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that answers a user's mistake with one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a bad size name, a non-positive count, an output path that is
    a folder or a missing optional dependency stop here with one line and exit status 2."""
    p = _Parser(prog="benchmarks/latency.py", description=__doc__.splitlines()[0])
    size = dict(type=str.lower, choices=list(HF_SIZES))
    p.add_argument("--sizes", nargs="+", default=["xxs", "xs", "s"], **size)
    p.add_argument("--batches", nargs="+", type=_at_least(1), default=[1, 8])
    p.add_argument("--threads", type=_at_least(1), default=1,
                   help="intra-op threads for every model (default 1: see README)")
    p.add_argument("--repeats", type=_at_least(1), default=20,
                   help="timed rounds at batch 1 (half at >1)")
    p.add_argument("--warmup", type=_at_least(0), default=3)
    p.add_argument("--train-batch", type=_at_least(1), default=16)
    p.add_argument("--train-repeats", type=_at_least(1), default=3)
    p.add_argument("--train-sizes", nargs="+", default=None, **size,
                   help="sizes for the training step (default: --sizes)")
    p.add_argument("--train-compile-sizes", nargs="*", default=["xs"], **size,
                   help="sizes whose training step is also compiled (about 5 min each here)")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-onnx", dest="onnx", action="store_false",
                   help="skip the ONNX Runtime candidate (needs the export extra)")
    p.add_argument("--default-allocator", action="store_true",
                   help="do not call reuse_freed_memory() (glibc returns big blocks to the OS)")
    p.add_argument("--quick", action="store_true", help="XXS, batch 1, 5 repeats, no training")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_cpu.json")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats, args.train = ["xxs"], [1], 5, False
    if args.out.is_dir():
        p.error(f"--out {args.out} is a folder; give the path of a .json file")
    if args.out.parent.exists() and not args.out.parent.is_dir():
        p.error(f"--out {args.out}: {args.out.parent} is not a folder")
    if _missing("transformers"):
        p.error("the comparison needs Hugging Face transformers: pip install transformers")
    missing = _missing("onnx", "onnxscript", "onnxruntime") if args.onnx else []
    if missing:
        p.error(f"the ONNX Runtime candidate needs {', '.join(missing)}: "
                "pip install 'mobilevit_edu[export]', or pass --no-onnx")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    started = time.time()
    info = machine_info()
    info["loadavg_start"] = info.pop("loadavg", None)
    torch.set_flush_denormal(True)
    reused = False if args.default_allocator else reuse_freed_memory()
    log(f"machine {info}; reuse_freed_memory={reused}; threads={args.threads}")
    rate, mm = matmul_gmacs(2048, repeats=10, num_threads=args.threads)
    peak = 2048**3 / (mm.min_ms * 1e-3) / 1e9  # the fastest sample: noise only ever slows it
    log(f"matmul 2048^3: {rate:.1f} GMAC/s (median), {peak:.1f} (best)")
    sig_ns, sig = exp_ns(num_threads=args.threads)
    log(f"sigmoid: {sig_ns:.2f} ns per element")
    result: dict[str, Any] = {
        "what": "our MobileViT vs Hugging Face's (same weights), CPU, one process, in turns",
        "command": " ".join(["benchmarks/latency.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": info,
        "threads": args.threads,
        "allocator": "glibc, reuse_freed_memory()" if reused else "glibc default",
        "image_size": 256,
        "tolerance": TOLERANCE,
        "matmul_2048": {"gmacs_per_s": rate, "gmacs_per_s_best": peak, **mm.as_dict()},
        "sigmoid_1m": {"ns_per_element": sig_ns, **sig.as_dict()},
        "inference": {},
        "training": {},
        "gpu": {"skipped": "no GPU was lent to this task (device tool: can_start_another=false), "
                           "so the timm mobilevit_s bf16/channels_last comparison was not run"},
    }
    def save(final: bool = False) -> None:  # after every stage: a crash loses one stage only
        result["machine"]["loadavg_end"] = list(os.getloadavg())
        result["seconds"] = time.time() - started
        result["complete"] = final
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    result["unfold_fold"] = bench_unfold_fold(args)
    for size in args.sizes:
        result["inference"][size] = bench_inference(size, args.batches, args, rate, peak, sig_ns)
        save()
    if args.train:
        for size in args.train_sizes or args.sizes:
            result["training"][size] = bench_training(size, args, peak, sig_ns)
            save()
    save(final=True)
    log(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
