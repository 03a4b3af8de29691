"""SSD's multibox loss with hard-negative mining (paper §4.2.1; SSD, Liu et al. 2016).

As the official loss (apple/ml-cvnets v0.1, ``loss_fn/detection_loss_fns/ssd_multibox_loss.py``):
smooth-L1 on the positives' offsets plus cross-entropy on the positives and on the hardest
negatives, three negatives per positive; both sums divided by the number of positives.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["hard_negative_mining", "SSDLossOutput", "ssd_loss"]


def hard_negative_mining(loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int = 3
                         ) -> torch.Tensor:
    """The anchors the classification loss sees: every positive, plus per image the
    ``neg_pos_ratio x (its positives)`` negatives with the highest background loss.

    ``loss [B, N]`` (e.g. ``-log p(background)``), ``labels [B, N]`` -> mask ``[B, N]``. An image
    without positives contributes no negatives (as in the official code)."""
    pos = labels > 0
    num_neg = pos.sum(dim=1, keepdim=True) * neg_pos_ratio  # [B, 1]
    loss = loss.masked_fill(pos, -math.inf)  # positives sort last
    order = loss.argsort(dim=1, descending=True)  # [B, N]: anchor indices, hardest first
    rank = order.argsort(dim=1)  # [B, N]: each anchor's place in that order
    return pos | (rank < num_neg)


class SSDLossOutput(NamedTuple):
    """The loss (``total = loc + cls``), its two parts, each per positive anchor, and the
    number of positive anchors in the batch."""

    total: torch.Tensor
    loc: torch.Tensor
    cls: torch.Tensor
    num_pos: int


def ssd_loss(scores: torch.Tensor, locations: torch.Tensor, gt_labels: torch.Tensor,
             gt_locations: torch.Tensor, neg_pos_ratio: int = 3) -> SSDLossOutput:
    """SSD's multibox loss: (smooth-L1 over the positives' offsets + cross-entropy over the
    positives and the mined negatives) / number of positives.

    ``scores [B, N, K]`` logits, ``locations [B, N, 4]``, ``gt_labels [B, N]``,
    ``gt_locations [B, N, 4]`` (from :func:`encode_targets`)."""
    k = scores.shape[-1]
    pos = gt_labels > 0
    num_pos = int(pos.sum())
    loc = F.smooth_l1_loss(locations[pos], gt_locations[pos], reduction="sum")  # [P, 4] pairs
    with torch.no_grad():
        background_loss = -F.log_softmax(scores, dim=2)[:, :, 0]  # [B, N]
        mask = hard_negative_mining(background_loss, gt_labels, neg_pos_ratio)
    picked = scores[mask].reshape(-1, k)  # [B, N, K] masked -> [M, K], M mined anchors
    cls = F.cross_entropy(picked, gt_labels[mask], reduction="sum")
    n = max(1, num_pos)
    return SSDLossOutput((loc + cls) / n, loc / n, cls / n, num_pos)
