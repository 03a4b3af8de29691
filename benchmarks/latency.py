"""CPU latency of our MobileViT against Hugging Face's, same weights, same threads, one process.

Run from the repository root (see benchmarks/README.md):

    .venv/bin/python benchmarks/latency.py                  # the full run (20-40 min on 2 cores)
    .venv/bin/python benchmarks/latency.py --quick          # XXS, batch 1, a few repeats

For every size (XXS, XS, S) and batch (1, 8) it times, in turns (A, B, C, A, B, C, ...):

* ``hf``: ``transformers.MobileViTForImageClassification``, eager, as a reader would run it;
* ``ours_eager``: ``mobilevit_edu`` as built, eager;
* ``ours_fold``: BatchNorm folded into the convolutions (``fold_batchnorm``);
* ``ours_fast``: folded and channels-last (``optimize_for_inference``);
* ``ours_compiled``: ``ours_fast`` through ``torch.compile`` (inductor, weights frozen);
* ``ours_onnxruntime``: ours exported to ONNX (``mobilevit_edu.deploy.export``, 256 x 256, the batch
  fixed to the one timed) and run by ONNX Runtime with the same threads (``--no-onnx`` skips it);

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
"""

from __future__ import annotations

import argparse
import copy
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

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.models.checkpoints import from_ours  # noqa: E402
from mobilevit_edu.measure.flops import count_flops  # noqa: E402
from mobilevit_edu.measure.latency import (  # noqa: E402
    calibrate_batchnorm, compile_model, count_exponentials, exp_ns, fold_batchnorm, machine_info,
    matmul_gmacs, optimize_for_inference, photo_batch, reuse_freed_memory, threads,
    time_interleaved,
)
from mobilevit_edu.nn.patches import fold, unfold  # noqa: E402

# transformers' convert_mlcvnets_to_pytorch.py, get_mobilevit_config
HF_SIZES = {
    "xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                expand_ratio=2.0, hidden_dropout_prob=0.05),
    "xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}
TOLERANCE = 1e-4


def log(*args: Any) -> None:
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def build_pair(size: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Our model with calibrated BatchNorm statistics, and HF's model with the same weights."""
    from transformers import MobileViTConfig, MobileViTForImageClassification

    torch.manual_seed(seed)
    ours = create_model(f"mobilevit_{size}")
    calibrate_batchnorm(ours, photo_batch(16, seed=seed + 1), steps=4)
    hf = MobileViTForImageClassification(MobileViTConfig(num_labels=1000, **HF_SIZES[size]))
    hf.load_state_dict(from_ours(ours, "hf"), strict=True)
    return ours.eval(), hf.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def goal(speedup: float, timings: dict[str, Any], macs: float, exps: float, rate: float,
         sigmoid_ns: float) -> dict[str, Any]:
    """What "``speedup`` x faster than hf" asks of this machine, for one timed call that does
    ``macs`` multiply-adds and evaluates ``exps`` exponentials.

    ``mac_floor_ms``: the time if every multiply-add ran at the 2048^3 matmul's rate (``rate``,
    GMAC/s, from its fastest sample), the best this CPU does in fp32; ``needs_fraction_of_matmul_rate``: the share of that
    rate the whole network must average to meet the target; ``exp_budget_ns``: the time per
    exponential (SiLU's sigmoid, softmax's exp) that is left if every MAC ran at the matmul's
    rate and nothing else cost anything, beside ``sigmoid_ns``, what ``torch.sigmoid`` takes
    here. A budget below the price of an exponential means no fp32 implementation that
    evaluates them with PyTorch's kernels can meet the target on this machine."""
    hf_ms = timings["hf"].median_ms
    target = hf_ms / speedup
    mac_floor = macs / (rate * 1e9) * 1e3
    best = min((k for k in timings if k != "hf"), key=lambda k: timings[k].median_ms)
    best_ms = timings[best].median_ms
    return {
        "speedup": speedup, "target_ms": target, "mac_floor_ms": mac_floor,
        "needs_fraction_of_matmul_rate": mac_floor / target,
        "exps": exps, "exp_budget_ns": (target - mac_floor) * 1e6 / exps,
        "sigmoid_ns": sigmoid_ns, "exp_ms_at_sigmoid_rate": exps * sigmoid_ns * 1e-6,
        "best": best, "best_ms": best_ms, "best_speedup": hf_ms / best_ms,
        "best_fraction_of_matmul_rate": mac_floor / best_ms, "met": best_ms <= target,
    }


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
    from mobilevit_edu.deploy.export import export_onnx, onnx_session

    path = Path(tempfile.gettempdir()) / f"mobilevit_edu_bench_{size}_{os.getpid()}.onnx"
    log(f"{size} batch {len(x)}: exporting to ONNX ...")
    export_onnx(model, path, 256, dynamic_batch=False, batch=len(x))
    run = onnx_session(path, threads=args.threads).runner(x)
    path.unlink()  # the session holds the model
    return lambda: torch.from_numpy(run())


def bench_inference(size: str, batches: list[int], args: argparse.Namespace,
                    matmul_rate: float, peak_rate: float, sigmoid_ns: float) -> dict[str, Any]:
    ours, hf = build_pair(size)
    macs = count_flops(ours, 256).macs
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


# --- training --------------------------------------------------------------------------------
class TrainStep:
    """forward, cross-entropy, backward, AdamW: ``step()`` does one; ``first_step()`` does one and
    returns what to compare (logits, gradients, logits after the update)."""

    def __init__(self, model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3) -> None:
        self.model, self.forward, self.x, self.y = model.train(), forward, x, y
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.forward(self.x), self.y).backward()
        self.opt.step()

    def first_step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        self.opt.zero_grad(set_to_none=True)
        logits = self.forward(self.x)
        nn.functional.cross_entropy(logits, self.y).backward()
        grads = {k: p.grad.detach().clone() for k, p in self.model.named_parameters()}
        self.opt.step()
        after = self.forward(self.x).detach()  # with grad on: the compiled graph is reused
        return logits.detach(), grads, after


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def hf_grads_as_ours(
    hf: nn.Module, grads: dict[str, torch.Tensor], size: str
) -> dict[str, torch.Tensor]:
    """HF's gradients under our parameter names (via the checkpoint key map)."""
    from mobilevit_edu.models.checkpoints import to_ours

    sd = {k: grads.get(k, v) for k, v in hf.state_dict().items()}
    ours = create_model(f"mobilevit_{size}")
    params = {k for k, _ in ours.named_parameters()}
    return {k: v for k, v in to_ours(sd, ours, "hf").items() if k in params}


def bench_training(size: str, args: argparse.Namespace, matmul_rate: float,
                   sigmoid_ns: float) -> dict[str, Any]:
    """Forward + backward + AdamW at batch 16. Dropout is off (p=0) in every model so that the
    first step can be compared with Hugging Face's: the logits to 1e-4 and all gradients to 1e-3
    relative (``||g - g_hf|| / ||g_hf||``). The logits after the AdamW update are recorded but not
    required to agree: the gradient of the key bias is exactly 0 in exact arithmetic (softmax
    ignores a constant added to a row of scores), so it is float noise, and Adam's first step,
    ``lr * g / (|g| + eps)``, scales noise up to +-lr. Then the steps are timed in turns.

    The 1.5x goal is set against 3x the forward pass's MACs (forward, input gradients, weight
    gradients; the stem's input gradient, 0.3 %, is not needed) and 2x its exponentials (PyTorch's
    SiLU backward and the fused attention's backward evaluate them again)."""
    ours, hf = build_pair(size)
    macs = count_flops(ours, 256).macs
    exps = count_exponentials(ours, photo_batch(1))["total"]
    _no_dropout(ours)
    _no_dropout(hf)
    batch = args.train_batch
    x = photo_batch(batch, seed=20)
    xcl = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(2))
    eager = copy.deepcopy(ours)
    cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    steps = {
        "hf": TrainStep(hf, lambda t: hf(pixel_values=t).logits, x, y),
        "ours_eager": TrainStep(eager, eager, x, y),
        "ours_cl": TrainStep(cl, cl, xcl, y),
    }
    compile_info: dict[str, Any] = {"compiled": False, "error": "not requested"}
    if args.compile and size in args.train_compile_sizes:
        comp_model = copy.deepcopy(ours).to(memory_format=torch.channels_last)
        steps["ours_compiled"] = TrainStep(comp_model, torch.compile(comp_model), xcl, y)
    first: dict[str, tuple] = {}
    with threads(args.threads):
        for name, st in list(steps.items()):
            if name == "ours_compiled":
                log(f"{size} train: compiling ...")
            t0 = time.perf_counter()
            try:
                first[name] = st.first_step()
            except Exception as err:  # noqa: BLE001  (compile failed: time the eager ones)
                compile_info = {"compiled": False, "error": f"{type(err).__name__}: {err}"[:300]}
                del steps[name]
                continue
            if name == "ours_compiled":
                compile_info = {"compiled": True, "compile_s": time.perf_counter() - t0,
                                "error": ""}
    hf_logits, hf_grads, hf_after = first["hf"]
    hf_grads = hf_grads_as_ours(hf, hf_grads, size)
    g_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in hf_grads.values())).item()
    equal = {}
    for name in steps:
        if name == "hf":
            continue
        logits, grads, after = first[name]
        d_norm = torch.sqrt(sum(((grads[k].double() - g.double()) ** 2).sum()
                                for k, g in hf_grads.items())).item()
        equal[name] = {
            "logits": max_diff(logits, hf_logits),  # the outputs: must agree to 1e-4
            "grads_max_abs": max(max_diff(grads[k], g) for k, g in hf_grads.items()),
            "grads_relative": d_norm / g_norm,  # ||g - g_hf|| / ||g_hf||: must be < 1e-3
            # after one AdamW step, for information only: Adam's first update is
            # lr * g / (|g| + eps), which turns float noise in near-zero gradients (e.g. the key
            # bias's, exactly 0 in exact arithmetic) into updates of up to lr
            "logits_after_step": max_diff(after, hf_after),
        }
    bad = {k: v for k, v in equal.items()
           if not (v["logits"] < TOLERANCE and v["grads_relative"] < 1e-3)}
    if bad:
        log(f"{size} train: CHECK FAILED, a training step differs from HF's: {bad}")
    log(f"{size} train: compile {compile_info}; differences vs HF {equal}")
    res = time_interleaved({k: st.step for k, st in steps.items()}, repeats=args.train_repeats,
                           warmup=0, num_threads=args.threads, batch=batch)
    hf_t = res["hf"]
    rows = {}
    for name, t in res.items():
        rows[name] = {**t.as_dict(), "speedup_vs_hf": hf_t.median_ms / t.median_ms,
                      "speedup_vs_hf_cpu_time": hf_t.median_cpu_ms / t.median_cpu_ms,
                      "max_abs_diff_vs_hf": equal.get(name, {})}
        log(f"  {name:14s} median {t.median_ms:8.1f} ms (CPU {t.median_cpu_ms:8.1f} ms) "
            f"x{rows[name]['speedup_vs_hf']:.2f} vs hf "
            f"(CPU time x{rows[name]['speedup_vs_hf_cpu_time']:.2f})")
    met = goal(1.5, res, 3 * macs * batch, 2 * exps * batch, matmul_rate, sigmoid_ns)
    log(f"  goal 1.5x: {met['target_ms']:.0f} ms needs "
        f"{100 * met['needs_fraction_of_matmul_rate']:.0f} % of the matmul rate; best "
        f"{met['best']} x{met['best_speedup']:.2f}")
    return {"batch": batch, "image_size": 256, "dropout": "off (p=0) in every model",
            "optimizer": "AdamW(lr=1e-3, weight_decay=0.01, fused=True), the same for all",
            "checked": "first-step logits vs HF to 1e-4 and gradients to 1e-3 relative",
            "check_passed": not bad, "timings": rows, "compile": compile_info, "goal": met}


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
    return x.reshape(b, c, h, w)


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
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["xxs", "xs", "s"], choices=list(HF_SIZES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for every model (default 1: see README)")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds at batch 1 (half at >1)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--train-sizes", nargs="+", default=None, choices=list(HF_SIZES),
                   help="sizes for the training step (default: --sizes)")
    p.add_argument("--train-compile-sizes", nargs="*", default=["xs"], choices=list(HF_SIZES),
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
