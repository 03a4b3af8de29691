"""DeepLabv3's training augmentation for PASCAL VOC (paper §4.2.2), in plain torch.

Source: apple/ml-cvnets at tag ``cvnets-v0.1``, ``data/datasets/segmentation/pascal_voc.py``,
``PascalVOCDataset.training_transforms``: ``RandomResize, RandomCrop(size), RandomHorizontalFlip,
NumpyToTensor``; ``validation_transforms``: ``Resize(size), NumpyToTensor`` (all from
``data/transforms/image.py``), with ``config/segmentation/deeplabv3_mobilevit_*.yaml``:
``random_resize: {min_size: 256, max_size: 1024}``, ``random_crop: {mask_fill: 255,
resize_if_needed: true}``, ``random_horizontal_flip``, crop 512 x 512 (``sampler.bs``),
``ignore_idx: 255``. Not here: the dataset side of the recipe (VOC ``train_aug`` plus the COCO
images mapped to VOC classes, ``use_coco_data: true``).

Every transform is ``t(image, mask, generator=None) -> (image, mask)``: ``image`` a float tensor
``[3, H, W]`` in [0, 1], ``mask`` a long tensor ``[H, W]`` of class indices (255 = ignore),
``generator`` a ``torch.Generator`` (None: the global torch RNG) for every draw. The image is
resized bilinear as OpenCV's ``INTER_LINEAR`` (half-pixel centres, no anti-aliasing), the mask
nearest as OpenCV's ``INTER_NEAREST`` (source index ``floor(i * in / out)``, which is torch's
``"nearest"``), so mask values are only ever copied, never mixed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "IGNORE_INDEX",
    "resize_pair",
    "short_side_size",
    "RandomShortSideResize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Resize",
    "Compose",
    "deeplab_train_transform",
    "deeplab_eval_transform",
]

IGNORE_INDEX = 255
Pair = tuple[torch.Tensor, torch.Tensor]


def check_pair(image: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Raise unless ``image`` is float ``[3, H, W]`` and ``mask`` (if given) integer ``[H, W]``."""
    if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.is_floating_point()):
        raise TypeError("segmentation transforms take a float image [3, H, W] in [0, 1], got "
                        f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}")
    if mask is None:
        return
    if mask.is_floating_point() or mask.shape != image.shape[-2:]:
        raise TypeError(f"the mask must be an integer tensor [H, W] = {tuple(image.shape[-2:])} of "
                        f"class indices, got {mask.dtype} {tuple(mask.shape)}; use mask.long()")


def randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """One draw of Python's ``random.randint(low, high)`` (both ends included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """v0.1 ``_resize_fn`` with an int ``size``: the shorter side becomes ``size`` and the other
    ``int(size * long / short)`` (truncated); a square goes to ``size x size``."""
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize_pair(image: torch.Tensor, mask: torch.Tensor | None, size: Sequence[int]) -> tuple:
    """``image`` bilinear (OpenCV ``INTER_LINEAR``) and ``mask`` nearest (``INTER_NEAREST``) to
    ``size`` = (h, w); both returned as they are when they already have it."""
    size = to_pair(size)
    if tuple(image.shape[-2:]) == size:
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear",  # [1, 3, h, w]
                          align_corners=False)[0]  # [1, 3, h, w] -> [3, h, w]
    if mask is not None:
        m = F.interpolate(mask[None, None].float(), size=size, mode="nearest")  # [1, 1, h, w]
        mask = m[0, 0].to(mask.dtype)  # [1, 1, h, w] -> [h, w]
    return image, mask


class RandomShortSideResize:
    """v0.1 ``RandomResize`` (``data/transforms/image.py``): draw ``size`` uniformly among the
    integers ``min_size..max_size`` (``random.randint``, both included; yaml 256 and 1024) and
    resize so that the **shorter side** is ``size`` (aspect kept, :func:`short_side_size`);
    nothing happens when it already is. A side length, not a scale factor: small and large
    images land in the same range. Bilinear (v0.1 reads its interpolation option under a
    misspelt key, so it is always bilinear); the mask nearest."""

    def __init__(self, min_size: int = 256, max_size: int = 1024) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = int(min_size), int(max_size)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Pair:
        check_pair(image, mask)
        size = randint(self.min_size, self.max_size, generator)
        h, w = image.shape[-2:]
        if min(h, w) == size:
            return image, mask
        return resize_pair(image, mask, short_side_size(h, w, size))

    def __repr__(self) -> str:
        return f"RandomShortSideResize(min_size={self.min_size}, max_size={self.max_size})"


class RandomCrop:
    """v0.1 ``RandomCrop(size)`` (``data/transforms/image.py``), crop ``size`` = 512 x 512.

    First make the image at least ``size``. With ``resize_if_needed=True`` (the yaml's
    setting): v0.1 ``resize_if_needed`` resizes so that the shorter side is
    ``min(max(h, H_crop), max(w, W_crop))`` (nothing happens when it already is), so an image
    under 512 is scaled up and nothing is padded. With ``resize_if_needed=False`` (v0.1's
    ``pad_if_needed``): pad at the bottom and right, the image with 0 and the mask with
    ``ignore_index`` (yaml ``mask_fill: 255``). Then ``top = randint(0, H - H_crop)``,
    ``left = randint(0, W - W_crop)`` (both ends included; no draw when the sizes are equal).
    A non-square crop can leave one side short after v0.1's resize (v0.1 then fails); here
    that side is padded as above.
    """

    def __init__(self, size: int | Sequence[int] = 512, ignore_index: int = IGNORE_INDEX,
                 resize_if_needed: bool = True) -> None:
        self.size, self.ignore_index = to_pair(size), int(ignore_index)
        self.resize_if_needed = bool(resize_if_needed)

    def pad(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Pad bottom and right up to ``size``: image with 0, mask with ``ignore_index``."""
        ph, pw = max(0, self.size[0] - image.shape[-2]), max(0, self.size[1] - image.shape[-1])
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            mask = F.pad(mask, (0, pw, 0, ph), value=self.ignore_index)
        return image, mask

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Pair:
        check_pair(image, mask)
        (th, tw), (h, w) = self.size, image.shape[-2:]
        if self.resize_if_needed:
            side = min(max(h, th), max(w, tw))
            if min(h, w) != side:
                image, mask = resize_pair(image, mask, short_side_size(h, w, side))
        image, mask = self.pad(image, mask)
        h, w = image.shape[-2:]
        if (h, w) == (th, tw):
            return image, mask
        top, left = randint(0, h - th, generator), randint(0, w - tw, generator)
        return image[:, top : top + th, left : left + tw], mask[top : top + th, left : left + tw]

    def __repr__(self) -> str:
        return (f"RandomCrop({self.size}, ignore_index={self.ignore_index}, "
                f"resize_if_needed={self.resize_if_needed})")


class RandomHorizontalFlip:
    """v0.1 ``RandomHorizontalFlip``: mirror image and mask when ``random.random() <= p``,
    ``p`` = 0.5."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Pair:
        check_pair(image, mask)
        if torch.rand(1, generator=generator).item() <= self.p:
            return image.flip(-1), mask.flip(-1)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """v0.1 ``Resize(size)``: a pair ``(h, w)`` resizes to exactly that (the validation
    transform uses the crop size, 512 x 512), an int makes it the shorter side. With
    ``resize_mask=False`` the mask is returned untouched, as ``cvnets-eval-seg
    --evaluation.segmentation.resize-input-images`` does (the prediction is resized back to
    the original mask instead)."""

    def __init__(self, size: int | Sequence[int], resize_mask: bool = True) -> None:
        self.size = int(size) if isinstance(size, int) else to_pair(size)
        self.resize_mask = bool(resize_mask)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None,
                 generator: torch.Generator | None = None) -> Pair:
        check_pair(image, mask if self.resize_mask else None)
        h, w = image.shape[-2:]
        if isinstance(self.size, int):
            if min(h, w) == self.size:
                return image, mask
            size = short_side_size(h, w, self.size)
        else:
            size = self.size
        new_image, new_mask = resize_pair(image, mask if self.resize_mask else None, size)
        return new_image, (new_mask if self.resize_mask else mask)

    def __repr__(self) -> str:
        return f"Resize({self.size}, resize_mask={self.resize_mask})"


class Compose:
    """Apply segmentation transforms in order with the same generator (v0.1 ``Compose``)."""

    def __init__(self, transforms: Sequence[Callable[..., Pair]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Pair:
        for t in self.transforms:
            image, mask = t(image, mask, generator=generator)
        return image, mask

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def deeplab_train_transform(crop: int | Sequence[int] = 512, min_size: int = 256,
                            max_size: int = 1024, ignore_index: int = IGNORE_INDEX) -> Compose:
    """v0.1 ``PascalVOCDataset.training_transforms`` with the yaml: shorter side random in
    256..1024, random crop 512 (resize if needed), horizontal flip (p = 0.5)."""
    return Compose([RandomShortSideResize(min_size, max_size),
                    RandomCrop(crop, ignore_index=ignore_index, resize_if_needed=True),
                    RandomHorizontalFlip()])


def deeplab_eval_transform(size: int | Sequence[int] = 512, resize_mask: bool = True) -> Compose:
    """v0.1 ``PascalVOCDataset.validation_transforms``: image and mask to ``size`` x ``size``
    (512; aspect not kept). ``resize_mask=False``: only the image, as the official evaluation
    (``cvnets-eval-seg --evaluation.segmentation.resize-input-images``) scores against the
    original mask."""
    return Compose([Resize(to_pair(size), resize_mask=resize_mask)])
