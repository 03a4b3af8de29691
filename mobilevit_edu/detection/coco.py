"""COCO-format JSON and the COCO evaluator: the mAP of paper §4.2.1 and Table 1.

The paper reports mAP@[.5:.95] on MS-COCO val with the standard evaluator. Ground truth and
detections are converted to COCO JSON (boxes as ``[x, y, w, h]`` in pixels) and scored by
``pycocotools``. :func:`evaluate_detector` does the whole round trip for a data set of
:class:`~mobilevit_edu.detection.datasets.DetectionSample` (the book's shapes, which have no
annotation file): it scores in the pixels of the images the model sees, against ground truth
rebuilt from the samples. For COCO itself use :func:`mobilevit_edu.detection.evaluate.
evaluate_coco`, which scores as apple/ml-cvnets does: original pixels, the original file.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.detection.datasets import DetectionSample, detection_collate
from mobilevit_edu.detection.postprocess import Detections, PostprocessConfig

if TYPE_CHECKING:
    from mobilevit_edu.detection.ssdlite import SSDLite

__all__ = [
    "COCO_STAT_NAMES",
    "coco_ground_truth",
    "coco_detections",
    "coco_evaluate",
    "evaluate_detector",
]

COCO_STAT_NAMES = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                   "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _xywh(box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def coco_ground_truth(samples: Iterable[DetectionSample], categories: Sequence[str],
                      category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """A COCO ``instances`` dict (images, annotations, categories) from detection samples.

    Label ``l`` (1..K) maps to ``category_ids[l - 1]`` (default: ``l``). Boxes are written as
    COCO's ``[x, y, w, h]``; ``area`` is the box area; annotation ids start at 1 (COCOeval
    treats an id of 0 as "unmatched")."""
    cat_ids = list(category_ids) if category_ids is not None else list(range(1, len(categories) + 1))
    images, anns = [], []
    for s in samples:
        h, w = s.image.shape[-2:]
        images.append({"id": int(s.image_id), "width": int(w), "height": int(h)})
        for box, label in zip(s.boxes.tolist(), s.labels.tolist()):
            bbox = _xywh(box)
            anns.append({"id": len(anns) + 1, "image_id": int(s.image_id),
                         "category_id": cat_ids[int(label) - 1], "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": 0})
    cats = [{"id": i, "name": n} for i, n in zip(cat_ids, categories)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_detections(detections: Sequence[Detections], image_ids: Sequence[int],
                    category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """COCO's results format: one ``{image_id, category_id, bbox [x, y, w, h], score}`` per box
    (boxes in pixels)."""
    out = []
    for det, img_id in zip(detections, image_ids):
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            cat = category_ids[int(label) - 1] if category_ids is not None else int(label)
            out.append({"image_id": int(img_id), "category_id": int(cat), "bbox": _xywh(box),
                        "score": float(score)})
    return out


def coco_evaluate(ground_truth: Mapping[str, Any] | str | Path,
                  detections: Sequence[Mapping[str, Any]] | str | Path,
                  *, verbose: bool = False) -> dict[str, Any]:
    """mAP@[.5:.95], AP50, AP75, ... with the standard COCO evaluator (``pycocotools``).

    ``ground_truth``: a COCO ``instances`` dict or the path of its JSON file; ``detections``: a
    list in COCO's results format or the path of its JSON file. Returns the twelve numbers of
    ``COCOeval.summarize()`` by name (``"mAP"``, ``"AP50"``, ``"AP75"``, ...) and as ``"stats"``.
    With no detections at all every AP is 0. ``verbose=True`` shows pycocotools' printout."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(ground_truth, (str, Path)):
        ground_truth = json.loads(Path(ground_truth).read_text())
    if isinstance(detections, (str, Path)):
        detections = json.loads(Path(detections).read_text())
    for key in ("images", "annotations", "categories"):
        if key not in ground_truth:
            raise ValueError(f"ground truth has no {key!r}: not a COCO instances dict")
    detections = list(detections)
    if not detections:
        stats = [0.0] * 12
        return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats}
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ground_truth))  # a private copy pycocotools may edit
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(detections)))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats}


@torch.no_grad()
def evaluate_detector(model: SSDLite, dataset: Dataset, *, batch_size: int = 16,
                      postprocess: str | PostprocessConfig = "v0.1",
                      conf_threshold: float | None = None, device: str | torch.device | None = None,
                      return_detections: bool = False) -> dict[str, Any]:
    """COCO mAP of ``model`` on ``dataset`` (samples as :class:`DetectionSample`), scored in the
    pixels of the images the model sees.

    Detections (post-processing ``postprocess``, ``"v0.1"`` by default; ``conf_threshold``
    overrides its threshold) are clipped to the image, as the official evaluation does after
    NMS. The ground truth is rebuilt from the samples by :func:`coco_ground_truth`: their boxes
    (already resized, crowd regions absent if the data set skipped them), areas computed from
    the boxes. That is right for the book's shapes, which exist only as samples; it is **not**
    COCO's official protocol (original pixels, the annotation file's crowd regions and areas):
    use :func:`mobilevit_edu.detection.evaluate.evaluate_coco` for COCO. The data set's
    ``categories``/``category_ids`` name the classes. With ``return_detections`` the result also
    holds ``"detections"`` (one :class:`Detections` per image)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=detection_collate,
                        generator=torch.Generator())  # leaves the global random state alone
    dets: list[Detections] = []
    ids: list[int] = []
    for batch in loader:
        h, w = batch.images.shape[-2:]
        limits = torch.tensor([w, h, w, h], dtype=torch.float32)
        for d in model.predict(batch.images.to(dev), settings=postprocess,
                               conf_threshold=conf_threshold):
            boxes = torch.minimum(d.boxes.cpu().clamp(min=0), limits)  # clip to the image
            dets.append(Detections(boxes, d.scores.cpu(), d.labels.cpu()))
        ids += batch.image_ids
    cats = getattr(dataset, "categories", None) or [str(i) for i in range(1, model.num_classes)]
    cat_ids = getattr(dataset, "category_ids", None)
    gt = coco_ground_truth((dataset[i] for i in range(len(dataset))), cats, cat_ids)
    result = coco_evaluate(gt, coco_detections(dets, ids, cat_ids))
    if return_detections:
        result["detections"] = dets
    return result
