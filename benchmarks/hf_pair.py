"""Our MobileViT beside Hugging Face's for ``benchmarks/latency.py``: the same weights in both,
their differences, and what "N x faster than Hugging Face" asks of this machine.

Paper: Tables 3, 10 and 11 time MobileViT; book chapters 07 and 14 cite these benchmark results.
The Hugging Face model (``transformers.MobileViTForImageClassification``) is built from the
sizes of transformers' own conversion script and loaded with our weights through the checkpoint
key map (``mobilevit_edu.models.checkpoints``).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from mobilevit_edu import create_model
from mobilevit_edu.data.photos import photo_batch
from mobilevit_edu.models.batchnorm import calibrate_batchnorm
from mobilevit_edu.models.checkpoints import from_ours, to_ours

__all__ = ["HF_SIZES", "TOLERANCE", "log", "build_pair", "max_diff", "goal", "hf_grads_as_ours"]

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
    calibrate_batchnorm(ours, photo_batch(16, seed=seed + 1), passes=4)
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


def hf_grads_as_ours(
    hf: nn.Module, grads: dict[str, torch.Tensor], size: str
) -> dict[str, torch.Tensor]:
    """HF's gradients under our parameter names (via the checkpoint key map)."""
    sd = {k: grads.get(k, v) for k, v in hf.state_dict().items()}
    ours = create_model(f"mobilevit_{size}")
    params = {k for k, _ in ours.named_parameters()}
    return {k: v for k, v in to_ours(sd, ours, "hf").items() if k in params}
