"""Figures of chapter 12, object detection with SSDLite (paper §4.2.1, Table 1).

SSD's anchors per feature map and the ones matched to objects, detections over images, and the
training curves of a detector. Like every ``plot_*`` function of the library, each returns the
figure and saves it to ``figures/<name>.png`` only when given ``name=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mobilevit_edu.detection.anchors import AnchorGenerator, ssd_feature_sizes
from mobilevit_edu.detection.boxes import check_boxes, cxcywh_to_xyxy
from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.detection.datasets import DetectionSample
from mobilevit_edu.detection.matching import match_anchors
from mobilevit_edu.detection.postprocess import Detections
from mobilevit_edu.plots.save import finish

__all__ = ["DETECTION_COLOURS", "show_image", "plot_anchors", "plot_detections",
           "plot_detector_training"]

# One colour per feature map (plot_anchors) or per class (plot_detections); colour-blind safe.
DETECTION_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def show_image(ax: Any, image: torch.Tensor) -> None:
    """Draw ``image [3, H, W]`` (values in [0, 1]) on ``ax`` without ticks."""
    ax.imshow(image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3, H, W] -> [H, W, 3]
    ax.set_xticks([])
    ax.set_yticks([])


def _rect(ax: Any, box: Sequence[float], **kw: Any) -> None:
    """An unfilled corner-form box ``(x0, y0, x1, y1)`` in pixels."""
    ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, **kw))


def plot_anchors(image: torch.Tensor, gt_boxes: torch.Tensor, config: SSDConfig = SSDConfig(),
                 *, name: str | None = None) -> Figure:
    """SSD's anchors on an image of the book's data set.

    Six small panels, one per feature map: the map's cell centres (dots) and the anchors of the
    cell nearest the image centre. One large panel: the ground-truth boxes (white, dashed) and
    the anchors that :func:`~mobilevit_edu.detection.matching.match_anchors` makes positive for
    them (IoU >= threshold, plus each box's best), coloured by their map. ``image [3, H, W]``,
    ``gt_boxes [K, 4]`` in pixels. Saved as ``figures/<name>.png`` when ``name`` is given."""
    check_boxes(gt_boxes, "gt_boxes")
    h, w = image.shape[-2:]
    sizes = ssd_feature_sizes((h, w), config.output_strides)
    gen = AnchorGenerator(config)
    anchors = gen(sizes)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    per_map = [fh * fw * a for (fh, fw), a in zip(sizes, gen.anchors_per_location)]
    starts = np.concatenate([[0], np.cumsum(per_map)])

    fig = plt.figure(figsize=(12.0, 5.4))
    grid = fig.add_gridspec(2, 5, width_ratios=[1, 1, 1, 0.15, 2.05], wspace=0.08, hspace=0.3)

    def frame(ax) -> None:
        show_image(ax, image)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)

    for k, ((fh, fw), a, os_) in enumerate(zip(sizes, gen.anchors_per_location,
                                              config.output_strides)):
        ax = fig.add_subplot(grid[k // 3, k % 3])
        frame(ax)
        colour = DETECTION_COLOURS[k % len(DETECTION_COLOURS)]
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh * h, (np.arange(fw) + 0.5) / fw * w,
                             indexing="ij")  # [fh, fw] each
        ax.scatter(cx.ravel() - 0.5, cy.ravel() - 0.5,  # [fh, fw] -> [fh*fw]
                   s=3 if fh * fw > 50 else 8, color="white", alpha=0.7, linewidths=0)
        r, c = (fh - 1) // 2, (fw - 1) // 2  # the cell at (or just before) the centre
        first = int(starts[k]) + (r * fw + c) * a
        for box in (cxcywh_to_xyxy(anchors[first : first + a]) * scale).tolist():
            _rect(ax, box, edgecolor=colour, linewidth=1.4)
        label = "global" if os_ == -1 else f"OS {os_}"
        ax.set_title(f"{label}: {fh} x {fw} map\n{a} anchors per cell", fontsize=9, color=colour)

    ax = fig.add_subplot(grid[:, 4])
    frame(ax)
    matched, labels = match_anchors(gt_boxes / scale, torch.ones(len(gt_boxes), dtype=torch.long),
                                    anchors, config.iou_threshold)
    pos = torch.nonzero(labels > 0).flatten().tolist()  # [P, 1] -> [P]
    for idx in pos:
        k = int(np.searchsorted(starts, idx, side="right")) - 1  # which map the anchor is on
        _rect(ax, (cxcywh_to_xyxy(anchors[idx]) * scale).tolist(),
              edgecolor=DETECTION_COLOURS[k % len(DETECTION_COLOURS)], linewidth=1.2)
    for box in gt_boxes.tolist():
        _rect(ax, box, edgecolor="white", linestyle="--", linewidth=2.0)
    ax.set_title(f"{len(pos)} positive anchors for {len(gt_boxes)} objects\n"
                 f"(IoU >= {config.iou_threshold}, or an object's best; {len(anchors):,} anchors "
                 "in all)", fontsize=9.5)
    return finish(fig, name, tight=False)


def plot_detections(images: Sequence[torch.Tensor], detections: Sequence[Detections],
                    targets: Sequence[DetectionSample] | None = None,
                    categories: Sequence[str] | None = None, *, score_threshold: float = 0.3,
                    max_per_image: int | None = None, titles: Sequence[str] | None = None,
                    name: str | None = None) -> Figure:
    """Predicted boxes (solid, coloured by class, with label and score) over images, and the
    ground truth (white, dashed) if ``targets`` are given. Only boxes scoring at least
    ``score_threshold`` are drawn, at most the ``max_per_image`` best of each image.
    Saved as ``figures/<name>.png`` when ``name`` is given."""
    n = len(images)
    if n == 0 or len(detections) != n:
        raise ValueError("need one Detections per image (and at least one image)")
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.15 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i, (ax, image, det) in enumerate(zip(axes.flat, images, detections)):
        show_image(ax, image)
        if targets is not None:
            for box in targets[i].boxes.tolist():
                _rect(ax, box, edgecolor="white", linestyle="--", linewidth=1.2)
        shown = 0
        order = det.scores.argsort(descending=True).tolist()
        for j in order:
            box, score, label = det.boxes[j].tolist(), float(det.scores[j]), int(det.labels[j])
            if score < score_threshold or (max_per_image is not None and shown >= max_per_image):
                break
            colour = DETECTION_COLOURS[(int(label) - 1) % len(DETECTION_COLOURS)]
            _rect(ax, box, edgecolor=colour, linewidth=2.0)
            text = categories[int(label) - 1] if categories else str(int(label))
            above = shown % 2 == 0  # alternate above / below the box so labels do not collide
            ax.text(box[0], box[1] if above else box[3], f"{text} {score:.2f}", color="white",
                    fontsize=7, va="bottom" if above else "top",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0})
            shown += 1
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    return finish(fig, name)


def plot_detector_training(history: Any, evals: Mapping[str, Mapping[int, float]] | None = None,
                           *, name: str | None = None) -> Figure:
    """Left: the SSD loss per step (total, smooth-L1 and cross-entropy parts, smoothed), read
    from ``history.steps`` (a ``History`` of ``train_detector``).
    Right (if ``evals``): COCO AP against optimizer steps, ``{"mAP": {step: value}, ...}``.
    Saved as ``figures/<name>.png`` when ``name`` is given."""
    steps = getattr(history, "steps", None)
    if not steps:
        raise ValueError("history has no per-step losses (train it with train_detector)")
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(10.5 if evals else 5.5, 3.6),
                             squeeze=False)
    ax = axes[0][0]
    it = np.array([s["iteration"] for s in steps])
    win = max(1, len(steps) // 25)
    for key, label in (("loss", "total"), ("loc_loss", "box (smooth-L1)"),
                       ("cls_loss", "class (cross-entropy)")):
        v = np.array([s[key] for s in steps])
        smooth = np.convolve(v, np.ones(win) / win, mode="valid")
        line, = ax.plot(it, v, alpha=0.2)
        ax.plot(it[win - 1 :], smooth, color=line.get_color(), label=label)
    ax.set(xlabel="optimizer step", ylabel="loss per positive anchor", title="SSD loss")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    if evals:
        ax = axes[0][1]
        for key, points in evals.items():
            xs = sorted(points)
            ax.plot(xs, [100 * points[x] for x in xs], marker="o", label=key)
        ax.set(xlabel="optimizer step", ylabel="AP (%)", title="validation AP (pycocotools)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    return finish(fig, name)
