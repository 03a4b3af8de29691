"""Segmentation data: PASCAL VOC 2012 and the book's shapes (paper §4.2.2; book chapter 13).

The paper fine-tunes and scores DeepLabv3 on PASCAL VOC 2012 (21 classes, boundary pixels
labelled 255). :class:`VOCSegmentation` reads VOC's own folder layout; :func:`voc_palette` and
:func:`save_voc_mask` are its colour map and mask format. :class:`ShapesSegmentation` turns the
book's procedurally drawn shapes into a small segmentation data set that trains on a CPU.
Both return ``(image [3, H, W] float in [0, 1], mask [H, W] int64)`` and take a joint
``transform(image, mask) -> (image, mask)``, such as the official training augmentation (random
short side 256-1024, crop 512, flip: cvnets v0.1 ``PascalVOCDataset.training_transforms``) in
:mod:`mobilevit_edu.data.segmentation_transforms`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mobilevit_edu.data.readers import load_rgb
from mobilevit_edu.data.shapes import SHAPES, ShapesDataset, parse_key
from mobilevit_edu.data.transforms import resize_image
from mobilevit_edu.nn.layers import to_pair
from mobilevit_edu.segmentation.deeplabv3 import IGNORE_INDEX
from mobilevit_edu.segmentation.metrics import check_target

__all__ = [
    "VOC_CLASSES",
    "voc_palette",
    "save_voc_mask",
    "resize_image_and_mask",
    "VOCSegmentation",
    "ShapesSegmentation",
]

# a joint transform of (image [3, H, W], mask [H, W]), e.g. deeplab_train_transform()
PairTransform = Callable[..., tuple[torch.Tensor, torch.Tensor]]

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``[n, 3]`` uint8: class ``c``'s colour is built from the bits of
    ``c`` (bit 0 -> red, 1 -> green, 2 -> blue, then the next bits one level dimmer). Index 0 is
    black (background), 255 is cream (224, 224, 192): the boundary / ignore label."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        r = g = b = 0
        label = c
        for j in range(8):
            r |= ((label >> 0) & 1) << (7 - j)
            g |= ((label >> 1) & 1) << (7 - j)
            b |= ((label >> 2) & 1) << (7 - j)
            label >>= 3
        palette[c] = (r, g, b)
    return palette


def save_voc_mask(mask: torch.Tensor | np.ndarray, path: str | Path) -> Path:
    """Write a label map ``[H, W]`` (values 0..254 and 255) as a VOC-style palette PNG (mode "P",
    pixel value = class index, colours from :func:`voc_palette`)."""
    from PIL import Image

    array = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if array.ndim != 2 or array.min() < 0 or array.max() > 255:
        raise ValueError(f"a VOC mask is [H, W] with values in 0..255, got shape {array.shape}")
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())  # [256, 3] -> [768]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def resize_image_and_mask(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image [3, H, W]`` bilinearly (anti-aliased) and ``mask [H, W]`` by nearest neighbour
    (labels must not be blended) to ``size = (h, w)``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    image = resize_image(image, size)  # [3, H, W] -> [3, h, w]
    mask = mask[None, None].float()  # [H, W] -> [1, 1, H, W]
    mask = F.interpolate(mask, size=size, mode="nearest")[0, 0].long()  # -> [1, 1, h, w] -> [h, w]
    return image.clamp(0, 1), mask


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation, read from its own folder layout::

        VOC2012/JPEGImages/<id>.jpg
        VOC2012/SegmentationClass/<id>.png      palette PNG: value = class 0..20, 255 = boundary
        VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt   one <id> per line

    ``root`` is the ``VOC2012`` folder or one above it (``VOCdevkit`` or its parent).
    ``ds[i]`` -> ``(image [3, H, W] float RGB in [0, 1], mask [H, W] int64)``.

    * Evaluation: ``image_size=None`` (the default) returns the image and mask exactly as stored,
      unresized; the official protocol scores against these original masks
      (:func:`~mobilevit_edu.segmentation.evaluate.evaluate_voc`).
    * Training: ``transform(image, mask) -> (image, mask)`` runs on the pair at the file's size
      (e.g. ``deeplab_train_transform(crop=512)``, the official random scale, crop and flip).
    * ``image_size`` (or a key ``(h, w, i)``) resizes the pair last: image bilinear, mask nearest.

    ``mask_folder="SegmentationClassAug"`` reads the extra SBD annotations of the official
    ``train_aug`` split (grayscale PNGs of class indices) instead of ``SegmentationClass``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | tuple[int, int] | None = None,
        transform: PairTransform | None = None,
        *,
        classes: Sequence[str] = VOC_CLASSES,
        mask_folder: str = "SegmentationClass",
    ) -> None:
        self.mask_folder = mask_folder
        self.root = self._find_root(Path(root))
        self.split = split
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.image_size = to_pair(image_size, "image_size") if image_size is not None else None
        self.transform = transform
        sets = self.root / "ImageSets" / "Segmentation"
        split_file = sets / f"{split}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise FileNotFoundError(f"no split file {split_file}; splits found: {have or 'none'}")
        self.ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"{split_file} lists no images")
        missing = [p for i in self.ids for p in (self._image_path(i), self._mask_path(i))
                   if not p.is_file()]
        if missing:
            more = f" ... and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(f"{len(missing)} file(s) listed in {split_file.name} are "
                                    f"missing: {', '.join(map(str, missing[:5]))}{more}")

    def _find_root(self, root: Path) -> Path:
        for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
            if (candidate / "JPEGImages").is_dir() and (candidate / self.mask_folder).is_dir():
                return candidate
        raise FileNotFoundError(
            f"no PASCAL VOC 2012 tree under {root}: expected JPEGImages/, {self.mask_folder}/ and "
            "ImageSets/Segmentation/ in it, in VOC2012/ or in VOCdevkit/VOC2012/"
        )

    def _image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def _mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_folder / f"{image_id}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, image_size={self.image_size})")

    def read_mask(self, index: int) -> torch.Tensor:
        """The label map ``[H, W]`` of image ``index`` at its own size."""
        from PIL import Image

        path = self._mask_path(self.ids[index])
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(
                    f"{path} is a {im.mode} image; VOC masks are palette ('P') PNGs whose pixel "
                    "values are the class indices. Map colours to indices first (voc_palette() "
                    "gives the colour of each class) and save with save_voc_mask()"
                )
            mask = torch.from_numpy(np.array(im, dtype=np.int64))  # [H, W] class indices
        check_target(mask, self.num_classes, IGNORE_INDEX, f"mask {path.name}")
        return mask

    def read_image(self, index: int) -> torch.Tensor:
        """The image ``[3, H, W]`` (RGB in [0, 1]) of ``index`` at its own size."""
        return load_rgb(self._image_path(self.ids[index]))

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        size, i = parse_key(key, self.image_size, len(self))
        image = self.read_image(i)  # [3, H, W]
        mask = self.read_mask(i)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise ValueError(f"{self.ids[i]}: mask {tuple(mask.shape)} and image "
                             f"{tuple(image.shape[-2:])} differ in size")
        if self.transform is not None:  # at the file's size, before any resizing
            image, mask = self.transform(image, mask)
        if size is not None:
            image, mask = resize_image_and_mask(image, mask, size)
        return image, mask


class ShapesSegmentation(Dataset):
    """The book's shapes (``ShapesDataset(task="shape")``) as a segmentation data set: every pixel
    labelled 0 (background) or 1 + the index of the shape that covers it (``SHAPES``: circle,
    square, triangle, ring, cross), distractors included. One large object and 0-2 small ones per
    image; the scene of sample ``i`` is the same at every resolution.

    ``ds[i]`` -> ``(image [3, H, W], mask [H, W] int64)`` at ``image_size``; ``ds[(h, w, i)]``
    renders at ``h x w``. ``cache=True`` keeps rendered samples in memory (masks as uint8).
    ``transform(image, mask) -> (image, mask)`` runs on every rendered pair (after the cache, so a
    random augmentation differs at each epoch), e.g. the official random scale, crop and flip
    scaled to the shapes' size."""

    def __init__(self, size: int, image_size: int | tuple[int, int] = 128, seed: int = 0,
                 cache: bool = True, transform: PairTransform | None = None) -> None:
        self.shapes = ShapesDataset(size, task="shape", image_size=image_size, seed=seed)
        self.image_size = self.shapes.image_size
        self.classes: tuple[str, ...] = ("background", *SHAPES)
        self.num_classes = len(self.classes)
        self.transform = transform
        self._cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] | None = (
            {} if cache else None)

    def __len__(self) -> int:
        return len(self.shapes)

    def __repr__(self) -> str:
        return (f"ShapesSegmentation(size={len(self)}, image_size={self.image_size}, "
                f"seed={self.shapes.seed}, classes={list(self.classes)})")

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._render(key)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def _render(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        size, i = parse_key(key, self.image_size, len(self))
        h, w = size
        if self._cache is not None and (h, w, i) in self._cache:
            image, mask = self._cache[(h, w, i)]
            return image, mask.long()
        sample = self.shapes.render(i, h, w)
        if self._cache is not None:
            self._cache[(h, w, i)] = (sample.image, sample.mask.to(torch.uint8))
        return sample.image, sample.mask
