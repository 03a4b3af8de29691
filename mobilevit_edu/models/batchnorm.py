"""BatchNorm statistics without training: re-estimate running means and variances from data.

Not a part of the paper's network but of how the book uses it: a randomly initialised model
needs realistic BatchNorm statistics before its activations (chapters 07, 08, 14) or its
latency (denormal floats) mean anything, and a trained model evaluated at a new resolution
(chapters 11, 13) can re-estimate them there. Every caller in the library uses this one function.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["calibrate_batchnorm"]


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: torch.Tensor | Iterable, *,
                        passes: int = 1) -> nn.Module:
    """Set every BatchNorm's running mean and variance to the plain average of the batch
    statistics it sees on ``batches``, ``passes`` times over.

    ``batches`` is one image batch ``[B, C, H, W]`` or an iterable of batches, each a tensor or
    an ``(images, ...)`` tuple (a data loader). The model runs in train mode without gradients,
    with ``momentum=None`` (a cumulative average), restored afterwards; parameters do not change.
    Returns the model in eval mode.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    device = next(model.parameters()).device
    seen = 0
    try:
        for _ in range(passes):
            for batch in batches:
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(images.to(device))
                seen += 1
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    if seen == 0:
        raise ValueError("calibrate_batchnorm got no batches; pass a tensor or a non-empty loader")
    return model.eval()
