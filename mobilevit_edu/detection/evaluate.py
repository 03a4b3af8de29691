"""Table 1's COCO mAP as the official code measures it: released weights in, COCOeval out.

Paper §4.2.1 reports mAP@[.5:.95] on MS-COCO val2017. The official evaluation (apple/ml-cvnets
v0.1, ``engine/eval_detection.py``: ``predict_labeled_dataset``, ``predict_and_save``;
``data/datasets/detection/coco.py``: ``COCODetection.evaluation_transforms``;
``engine/detection_utils/coco_map.py``: ``coco_evaluation``), run as the README's
``cvnets-eval-det ... --evaluation.detection.resize-input-images``, does this per image of
``instances_val2017.json`` (all of them, in the file's order):

1. read it with OpenCV (**BGR**, uint8), remember its original ``(height, width)``;
2. resize it to 320 x 320 (``cv2.resize``, bilinear), divide by 255 (no mean / std);
3. ``predict``: softmax, per-class threshold, NMS (:mod:`~mobilevit_edu.detection.postprocess`);
4. scale the boxes (relative to the input) by the *original* width and height and clip them to
   ``[0, width] x [0, height]``;
5. map the contiguous labels 1..80 back to COCO's category ids (sorted ids, as here);

then score all boxes with ``pycocotools`` against the original annotation file:
``COCO(file).loadRes(results)``, ``COCOeval(..., "bbox")``. So crowd regions are what COCOeval
makes of them (``iscrowd`` annotations are ignore regions: a detection on one is neither a true
nor a false positive) and the small / medium / large split uses each annotation's ``area`` field.
:func:`evaluate_coco` does exactly that, in batches (every image is resized to the same size and
BatchNorm runs in eval mode, so batching changes nothing). Three details differ: images are
decoded by PIL, not OpenCV (JPEG decoders can differ by a grey level); our resize is torch's
bilinear without anti-aliasing, rounded to uint8 like OpenCV's (whose fixed-point arithmetic can
differ by one grey level); and we run in float32 where cvnets used float16 autocast on a GPU
(``common.mixed_precision: true``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.data.readers import load_rgb
from mobilevit_edu.data.transforms import resize_image
from mobilevit_edu.detection.checkpoints import detect_ssdlite_layout, ssdlite_to_ours
from mobilevit_edu.detection.coco import COCO_STAT_NAMES
from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.detection.postprocess import PostprocessConfig
from mobilevit_edu.detection.ssdlite import SSDLite, create_ssdlite
from mobilevit_edu.models.checkpoints import CheckpointError, read_state_dict
from mobilevit_edu.nn.layers import to_pair

__all__ = ["ORIGIN_PREPROCESS", "load_detector", "read_detection_image", "evaluate_coco"]

# How each origin's weights expect their input: channel order and resize.
ORIGIN_PREPROCESS: dict[str, dict[str, str]] = {
    # apple/ml-cvnets v0.1: cv2.imread (BGR), cv2.resize INTER_LINEAR on uint8, / 255
    "cvnets": {"channels": "bgr", "resize": "cv2"},
    # this library's own training: PIL (RGB), anti-aliased bilinear (CocoDetection(image_size=))
    "ours": {"channels": "rgb", "resize": "antialias"},
}

_HEAD0_BIAS = {"ours": "heads.0.loc_cls.pw.conv.bias",
               "cvnets": "ssd_heads.0.loc_cls_layer.pw_conv.block.conv.bias"}
_SIZES = ("xxs", "xs", "s")


def load_detector(weights: str | os.PathLike | Mapping[str, torch.Tensor], name: str | None = None,
                  num_classes: int | None = None) -> tuple[SSDLite, str]:
    """An SSDLite-MobileViT with the weights of ``weights`` (a file or a state dict), in eval mode,
    and the layout the weights came in (``"cvnets"`` or ``"ours"``: the origin that decides
    the preprocessing, see :data:`ORIGIN_PREPROCESS`).

    The layout is read from the key names; ``num_classes`` (background included: 81 for COCO)
    from the shape of the first head's output; the backbone size (``xxs``/``xs``/``s``) is the
    one whose shapes fit every tensor. Give ``name`` or ``num_classes`` to check them instead.
    A file that fits no SSDLite raises CheckpointError listing what does not fit."""
    sd = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else dict(weights)
    layout = detect_ssdlite_layout(sd)
    anchors = SSDConfig().anchors_per_location[0]
    bias = sd.get(_HEAD0_BIAS[layout])
    if bias is None:
        raise CheckpointError(f"{_HEAD0_BIAS[layout]} is missing: not a complete SSDLite "
                              f"checkpoint ({layout} layout). Fix: pass the whole detector's "
                              "weights")
    inferred, rest = divmod(bias.numel(), anchors)
    if rest or inferred <= 4:
        raise CheckpointError(f"{_HEAD0_BIAS[layout]} has {bias.numel()} outputs, not {anchors} "
                              "anchors x (4 + classes): not SSDLite's default config")
    inferred -= 4
    if num_classes is not None and num_classes != inferred:
        raise CheckpointError(f"the checkpoint has {inferred} classes (background included), "
                              f"not num_classes={num_classes}. Fix: pass num_classes={inferred} "
                              "or None")
    errors = []
    for size in [name] if name is not None else _SIZES:
        model = create_ssdlite(size, num_classes=inferred)
        try:
            model.load_state_dict(ssdlite_to_ours(sd, model, layout))
        except CheckpointError as err:
            errors.append(f"{size}: {err}")
            continue
        return model.eval(), layout
    if name is not None:
        raise CheckpointError(errors[0])
    raise CheckpointError(f"the checkpoint fits no SSDLite-MobileViT (xxs, xs, s) with {inferred} "
                          "classes. " + " || ".join(e[:300] for e in errors))


def read_detection_image(path: str | Path, image_size: int | tuple[int, int] = 320,
                         origin: str = "cvnets", channels: str | None = None
                         ) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image file as the detector of ``origin`` expects it: ``[3, h, w]`` in [0, 1] at
    ``image_size`` (BGR for ``"cvnets"``, RGB for ``"ours"``, or as ``channels`` says), and the
    original ``(height, width)``."""
    if origin not in ORIGIN_PREPROCESS:
        raise ValueError(f"unknown origin {origin!r}; known: {sorted(ORIGIN_PREPROCESS)}")
    channels = channels or ORIGIN_PREPROCESS[origin]["channels"]
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    image = load_rgb(path)  # [3, H0, W0] RGB in [0, 1]
    h0, w0 = image.shape[-2:]
    size = to_pair(image_size, "image_size")
    if ORIGIN_PREPROCESS[origin]["resize"] == "cv2":  # bilinear, no anti-aliasing, uint8 again
        image = F.interpolate(image[None] * 255, size=size, mode="bilinear", align_corners=False)
        image = image[0].round().clamp(0, 255) / 255  # [1, 3, h, w] -> [3, h, w]
    else:
        image = resize_image(image, size).clamp(0, 1)  # [3, H0, W0] -> [3, h, w]
    if channels == "bgr":
        image = image.flip(0)  # RGB -> BGR
    return image, (int(h0), int(w0))


class _CocoImages(Dataset):
    """The images of a COCO annotation file, preprocessed for the detector."""

    def __init__(self, image_dir: Path, files: list[tuple[int, str]], image_size, origin,
                 channels) -> None:
        self.image_dir, self.files = image_dir, files
        self.image_size, self.origin, self.channels = image_size, origin, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, tuple[int, int], int]:
        image_id, name = self.files[i]
        path = self.image_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"image {name!r} (id {image_id}) not found in {self.image_dir}."
                                    " Fix: pass the folder that holds the annotation file's images")
        image, size = read_detection_image(path, self.image_size, self.origin, self.channels)
        return image, size, image_id


def _collate(items):
    images, sizes, ids = zip(*items)
    return torch.stack(images), list(sizes), list(ids)


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


@torch.no_grad()
def evaluate_coco(model: nn.Module, image_dir: str | Path, annotation_file: str | Path, *,
                  origin: str, image_size: int | tuple[int, int] = 320,
                  postprocess: str | PostprocessConfig = "v0.1", batch_size: int = 16,
                  device: str | torch.device | None = None, limit: int | None = None,
                  progress: bool = True, channels: str | None = None, workers: int = 0,
                  return_results: bool = False) -> dict[str, Any]:
    """COCO mAP of a detector as apple/ml-cvnets measures it (see the module's docstring).

    ``model``: an SSDLite (or anything with ``num_classes`` and ``predict(images, settings=)``
    returning boxes in the pixels of ``images``); ``origin``: where its weights come from, which
    fixes the preprocessing (:data:`ORIGIN_PREPROCESS`: ``"cvnets"`` BGR, ``"ours"`` RGB;
    ``channels="rgb"/"bgr"`` overrides); ``postprocess``: ``"v0.1"`` (the paper's), ``"main"``
    or a :class:`PostprocessConfig`. Boxes are scaled to each image's original pixels, clipped to
    it, labelled with COCO's category ids and scored by ``COCOeval`` against
    ``annotation_file`` itself. ``limit`` evaluates only the file's first ``limit`` images
    (``params.imgIds`` is set to them). Returns the twelve ``COCOeval.stats`` by name
    (``"mAP"``, ``"AP50"``, ...) and as ``"stats"``, ``"images"``, ``"detections"``, pycocotools'
    printout as ``"summary"`` and, with ``return_results``, the COCO results list."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from tqdm.auto import tqdm

    if origin not in ORIGIN_PREPROCESS:
        raise ValueError(f"unknown origin {origin!r}; known: {sorted(ORIGIN_PREPROCESS)} (the "
                         "second value load_detector returns)")
    image_dir, annotation_file = Path(image_dir), Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}. Fix: pass "
                                "e.g. coco/annotations/instances_val2017.json")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {image_dir}. Fix: pass e.g. "
                                "coco/val2017")
    with _quiet():
        coco = COCO(str(annotation_file))
    ids = list(coco.imgs)[:limit] if limit is not None else list(coco.imgs)
    cat_ids = sorted(coco.getCatIds())
    if model.num_classes != len(cat_ids) + 1:
        raise ValueError(f"the model has {model.num_classes} outputs (background included) but "
                         f"{annotation_file.name} has {len(cat_ids)} categories. Fix: use a model "
                         f"with num_classes={len(cat_ids) + 1}")
    files = [(i, coco.imgs[i]["file_name"]) for i in ids]
    data = _CocoImages(image_dir, files, image_size, origin, channels)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate)
    params = list(model.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params
                                                            else torch.device("cpu"))
    results: list[dict[str, Any]] = []
    for images, sizes, batch_ids in tqdm(loader, desc="COCO", unit="batch", disable=not progress):
        h_in, w_in = images.shape[-2:]
        for det, (h0, w0), image_id in zip(model.predict(images.to(dev), settings=postprocess),
                                           sizes, batch_ids):
            boxes = det.boxes.detach().float().cpu()
            scale = torch.tensor([w0 / w_in, h0 / h_in, w0 / w_in, h0 / h_in])
            boxes = boxes * scale  # input pixels -> original pixels
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w0)  # as cvnets' np.clip after NMS
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h0)
            for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), det.scores.tolist(),
                                                      det.labels.tolist()):
                results.append({"image_id": int(image_id), "category_id": cat_ids[int(label) - 1],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    out: dict[str, Any] = {"images": len(ids), "detections": len(results)}
    if return_results:
        out["results"] = [dict(r, bbox=list(r["bbox"])) for r in results]
    if not results:  # loadRes refuses an empty list; nothing detected scores 0
        stats = [0.0] * 12
        return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats, "summary": "", **out}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ev = COCOeval(coco, coco.loadRes(results), iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats, "summary": text.getvalue(), **out}
