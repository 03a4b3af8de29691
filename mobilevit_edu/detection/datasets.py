"""Detection data (paper §4.2.1): samples, batches, COCO's detection JSON, the book's shapes.

The paper fine-tunes and evaluates on MS-COCO; :class:`CocoDetection` reads its
``instances_*.json`` and images. The book trains on :class:`ShapesDetection`, the rendered shapes
of chapter 3 as a five-class detection set, which fits a CPU. Boxes are corner form
``(x0, y0, x1, y1)`` in pixels; label 0 is the background, object classes are 1..K.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from mobilevit_edu.data.readers import load_rgb
from mobilevit_edu.data.shapes import SHAPES, ShapesDataset, render_scene
from mobilevit_edu.data.transforms import resize_image
from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "DetectionTransform",
    "resize_with_boxes",
    "DetectionSample",
    "DetectionBatch",
    "detection_collate",
    "CocoDetection",
    "ShapesDetection",
]


# ``t(image [3, H, W] in [0, 1], boxes [N, 4] corner form in pixels, labels [N]) -> the same
# three``: the detection transforms of ``mobilevit_edu.data.detection_transforms``.
DetectionTransform = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class DetectionSample(NamedTuple):
    """One image and its objects: ``image [3, H, W]`` in [0, 1], ``boxes [K, 4]`` corner form in
    pixels, ``labels [K]`` in 1..K (0 is the background), and an integer ``image_id``."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    image_id: int


class DetectionBatch(NamedTuple):
    """A batch: ``images [B, 3, H, W]`` and per image its boxes, labels and id."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    image_ids: list[int]


def detection_collate(samples: Sequence[DetectionSample]) -> DetectionBatch:
    """Stack the images (all of one size) and keep the per-image boxes and labels as lists."""
    sizes = {tuple(s.image.shape) for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"images of one batch must share a size, got {sorted(sizes)}; "
                         "give the data set an image_size")
    return DetectionBatch(torch.stack([s.image for s in samples]), [s.boxes for s in samples],
                          [s.labels for s in samples], [int(s.image_id) for s in samples])


def resize_with_boxes(image: torch.Tensor, boxes: torch.Tensor,
                      size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``image [3, H0, W0]`` resized to ``size`` (anti-aliased bilinear) and its pixel boxes
    ``[K, 4]`` scaled along (x by ``w / W0``, y by ``h / H0``); unchanged at that size."""
    h, w = to_pair(size, "size")
    h0, w0 = image.shape[-2:]
    if (h0, w0) == (h, w):
        return image, boxes
    image = resize_image(image, (h, w)).clamp(0, 1)  # [3, H0, W0] -> [3, h, w]
    return image, boxes * torch.tensor([w / w0, h / h0, w / w0, h / h0])


class CocoDetection(Dataset):
    """A COCO detection set: ``instances_*.json`` plus a folder of images (read with PIL, RGB).

    ``ds[i]`` is a :class:`DetectionSample`. ``transform(image, boxes, labels)`` (e.g.
    ``mobilevit_edu.data.detection_transforms.ssd_train_transform()``, drawing from the global
    torch RNG) is applied to the image as read, before any resize; then, with ``image_size``,
    the image is resized to it (SSD's square resize, boxes scaled along). ``ds.original_size(i)``
    is the ``(height, width)`` of the file and ``ds.image_id(i)`` its COCO id. COCO category ids
    (1..90 with gaps) map to contiguous labels 1..K in increasing id order; ``ds.categories``
    names them and ``ds.category_ids[label - 1]`` maps back.

    ``skip_crowd`` (default ``True``) leaves out the ``iscrowd`` annotations, as the official
    training does (``COCODetection._get_annotation``): a crowd box is a region, not an object to
    match. Evaluation must not drop them: COCO's evaluator treats them as regions where a
    detection counts neither for nor against, which is why
    :func:`mobilevit_edu.detection.evaluate.evaluate_coco` scores against the annotation file,
    not against these samples."""

    def __init__(self, image_dir: str | Path, annotation_file: str | Path,
                 image_size: int | tuple[int, int] | None = None, skip_crowd: bool = True,
                 transform: DetectionTransform | None = None) -> None:
        self.image_dir, path = Path(image_dir), Path(annotation_file)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder not found: {self.image_dir}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with images/annotations/categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path}: no {key!r} list; is this a COCO instances_*.json?")
        self.image_size = to_pair(image_size, "image_size") if image_size is not None else None
        self.transform, self.skip_crowd = transform, skip_crowd
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids: list[int] = [int(c["id"]) for c in cats]
        self.categories: list[str] = [str(c.get("name", c["id"])) for c in cats]
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.images = [img for img in data["images"]]
        for img in self.images:
            if not {"id", "file_name"} <= set(img):
                raise ValueError(f"{path}: image entry without 'id' or 'file_name': {img}")
        index = {int(img["id"]): i for i, img in enumerate(self.images)}
        self._objects: list[list[tuple[list[float], int]]] = [[] for _ in self.images]
        for ann in data["annotations"]:
            if skip_crowd and ann.get("iscrowd", 0):
                continue
            img_id, cat = int(ann.get("image_id", -1)), int(ann.get("category_id", -1))
            if img_id not in index:
                raise ValueError(f"{path}: annotation {ann.get('id')} refers to unknown image {img_id}")
            if cat not in label_of:
                raise ValueError(f"{path}: annotation {ann.get('id')} has unknown category {cat}")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise ValueError(f"{path}: annotation {ann.get('id')} needs bbox [x, y, w, h], got {bbox}")
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0:
                raise ValueError(f"{path}: annotation {ann.get('id')} has a negative box size {bbox}")
            if w > 0 and h > 0:  # COCO has a few degenerate boxes; they cannot be matched
                self._objects[index[img_id]].append(([x, y, x + w, y + h], label_of[cat]))

    def __len__(self) -> int:
        return len(self.images)

    def _file(self, i: int) -> Path:
        info = self.images[i]
        file = self.image_dir / info["file_name"]
        if not file.is_file():
            raise FileNotFoundError(f"image {info['file_name']!r} (id {info['id']}) not found in "
                                    f"{self.image_dir}")
        return file

    def image_id(self, i: int) -> int:
        """The COCO id of image ``i``."""
        return int(self.images[i]["id"])

    def original_size(self, i: int) -> tuple[int, int]:
        """``(height, width)`` of image ``i`` as stored: the JSON's fields, else the file's."""
        info = self.images[i]
        if "height" in info and "width" in info:
            return int(info["height"]), int(info["width"])
        from PIL import Image

        with Image.open(self._file(i)) as im:
            return im.height, im.width

    def __getitem__(self, i: int) -> DetectionSample:
        image = load_rgb(self._file(i))  # [3, H0, W0]
        objs = self._objects[i]
        boxes = torch.tensor([b for b, _ in objs], dtype=torch.float32)  # [K, 4], or [0] if K = 0
        boxes = boxes.reshape(-1, 4)  # -> [K, 4] (an image without objects: [0, 4])
        labels = torch.tensor([lab for _, lab in objs], dtype=torch.long)
        if self.transform is not None:
            image, boxes, labels = self.transform(image, boxes, labels)
        if self.image_size is not None:
            image, boxes = resize_with_boxes(image, boxes, self.image_size)
        return DetectionSample(image, boxes, labels, self.image_id(i))


class ShapesDetection(Dataset):
    """The book's rendered shapes as a detection set: every visible object of a scene (the large
    shape and its small distractors) is a box, labelled with its shape (1..5; 0 is the
    background).

    ``ShapesDetection(size, image_size=160, seed=0)``; scenes come from
    ``ShapesDataset(task="shape")``, so the same seed gives the same scenes. The distractors are
    drawn *under* the large shape, and some end up hidden by it; an object of which less than
    ``min_visible`` of its pixels can be seen gets no box (nobody could detect it).

    ``transform(image, boxes, labels)`` (e.g. ``ssd_train_transform(image_size)`` of
    ``mobilevit_edu.data.detection_transforms``; global torch RNG) is applied to each rendered
    scene on every read (the cache holds the untransformed scene); an image it leaves at
    another size is resized back to ``image_size``, boxes along."""

    def __init__(self, size: int, image_size: int = 160, seed: int = 0, min_visible: float = 0.5,
                 cache: bool = True, transform: DetectionTransform | None = None) -> None:
        self.shapes = ShapesDataset(size, task="shape", image_size=image_size, seed=seed)
        self.image_size = (image_size, image_size)
        self.min_visible = min_visible
        self.categories: list[str] = list(SHAPES)
        self.category_ids: list[int] = list(range(1, len(SHAPES) + 1))
        self._cache: dict[int, DetectionSample] | None = {} if cache else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.shapes)

    def visible_fraction(self, i: int) -> list[float]:
        """Per object of scene ``i``: the fraction of its pixels not covered by later objects."""
        scene, (h, w) = self.shapes.scene(i), self.image_size
        out = []
        for k, obj in enumerate(scene.objects):
            if k == len(scene.objects) - 1:  # nothing is drawn over the last object
                out.append(1.0)
                continue
            own = render_scene(dataclasses.replace(scene, objects=(obj,)), h, w).mask > 0
            above = render_scene(dataclasses.replace(scene, objects=scene.objects[k + 1 :]),
                                 h, w).mask > 0
            out.append(float((own & ~above).sum()) / max(1, int(own.sum())))
        return out

    def __getitem__(self, i: int) -> DetectionSample:
        sample = self.scene_sample(i)
        if self.transform is None:
            return sample
        image, boxes, labels = self.transform(sample.image, sample.boxes, sample.labels)
        image, boxes = resize_with_boxes(image, boxes, self.image_size)
        return DetectionSample(image, boxes, labels, sample.image_id)

    def scene_sample(self, i: int) -> DetectionSample:
        """Scene ``i`` as rendered, without the transform."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = self.shapes.render(i, *self.image_size)
        keep = torch.tensor([v >= self.min_visible for v in self.visible_fraction(i)])
        sample = DetectionSample(s.image, s.boxes[keep], s.box_labels[keep] + 1, int(i))
        if self._cache is not None:
            self._cache[i] = sample
        return sample
