"""Training throughput at the experiments' scale: images per second of one training step
(forward, label-smoothed cross-entropy, backward, AdamW) for each model the experiments train,
ours against Hugging Face's MobileViT at the same scale, timed in turns in one run.

Paper §4.1 gives the recipe; the book's small-scale experiments (``mobilevit_edu.experiments``)
run it hundreds of times, so every image per second buys seeds. Candidates per model:

* ``default``: ``TrainConfig``'s defaults (contiguous NCHW tensors, AdamW's loop over tensors);
* ``experiments``: what the experiments use (``channels_last=True, fused_adamw=True``): NHWC
  weights and batches, one fused AdamW kernel; the same recipe to float rounding
  (``tests/test_train.py::test_channels_last_and_fused_adamw_keep_the_loss_curve``);
* ``hf`` (MobileViT-XXS only): ``transformers``' ``MobileViTForImageClassification`` with the
  XXS sizes, eager, its default AdamW.

Writes ``benchmarks/results/train_throughput_cpu.json`` with the medians and the ratios
``experiments / hf`` and ``experiments / default``. Run::

    .venv/bin/python -m benchmarks.train_throughput [--sizes 32 64] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from mobilevit_edu.experiments.catalog import CONTENDERS
from mobilevit_edu.measure.latency import machine_info, time_interleaved
from mobilevit_edu.models.registry import create_model

OUT = Path(__file__).resolve().parent / "results" / "train_throughput_cpu.json"
HF_XXS = dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
              expand_ratio=2.0)


def step_fn(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor, *, fused: bool) -> Callable[[], None]:
    """One training step of ``model`` on the fixed batch ``(x, y)``, as a closure."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01,
                            fused=True if fused else None)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(forward(x), y).backward()
        opt.step()

    return step


def candidates(arm: str, size: int, batch: int, classes: int = 5) -> dict[str, Callable[[], None]]:
    """The timed steps for one model of the experiments at one resolution."""
    cfg = CONTENDERS[arm]
    overrides = dict(cfg["overrides"], **({"image_size": size} if "image_size" in cfg["overrides"]
                                          else {}))
    torch.manual_seed(0)
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, classes, (batch,))
    plain = create_model(cfg["model"], num_classes=classes, **overrides)
    fast = create_model(cfg["model"], num_classes=classes, **overrides)
    fast.load_state_dict(plain.state_dict())
    fast.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fns = {"default": step_fn(plain, plain, x, y, fused=False),
           "experiments": step_fn(fast, fast, x_cl, y, fused=True)}
    if cfg["model"] == "mobilevit_xxs":
        from transformers import MobileViTConfig, MobileViTForImageClassification

        hf = MobileViTForImageClassification(
            MobileViTConfig(num_labels=classes, image_size=size, **HF_XXS))
        fns["hf"] = step_fn(hf, lambda a: hf(pixel_values=a).logits, x, y, fused=False)
    return fns


def run(sizes: list[int], batch: int, threads: int, repeats: int) -> dict[str, Any]:
    torch.set_flush_denormal(True)
    rows = []
    for size in sizes:
        for arm in CONTENDERS:
            timings = time_interleaved(candidates(arm, size, batch), repeats=repeats, warmup=3,
                                       num_threads=threads, batch=batch)
            ips = {k: batch * 1000.0 / t.median_ms for k, t in timings.items()}
            row: dict[str, Any] = {"model": arm, "image_size": size, "batch": batch,
                                   "images_per_s": {k: round(v, 1) for k, v in ips.items()},
                                   "experiments_over_default": round(
                                       ips["experiments"] / ips["default"], 3)}
            if "hf" in ips:
                row["experiments_over_hf"] = round(ips["experiments"] / ips["hf"], 3)
                row["default_over_hf"] = round(ips["default"] / ips["hf"], 3)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"what": "training step images/s (forward, label-smoothed CE, backward, AdamW)",
            "threads": threads, "repeats": repeats, "machine": machine_info(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if min(args.sizes) < 32 or args.batch < 1 or args.threads < 1 or args.repeats < 1:
        print(f"{p.prog}: error: sizes must be >= 32 px and batch, threads, repeats >= 1",
              file=sys.stderr)
        return 2
    result = run(args.sizes, args.batch, args.threads, args.repeats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
