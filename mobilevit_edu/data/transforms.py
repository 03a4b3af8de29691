"""The paper's augmentations in plain torch: random resized crop, horizontal flip, and the
official evaluation (resize the shorter side, central crop).

Paper: §4.1 trains on ImageNet-1k with "basic data augmentation (i.e., random resized cropping
and horizontal flipping)"; evaluation resizes to 288 and crops 256 (apple/ml-cvnets). The
multi-scale sampler (§3.3, ``mobilevit_edu.data.sampler``) asks for each batch at its own
resolution, so every transform here can be re-targeted to a new output size
(:func:`transform_at_size`), and :func:`apply_at_size` is how a data set applies one at the size
a key asks for.

Every transform takes a float image ``[3, H, W]`` and an optional ``torch.Generator`` (so a
seeded generator gives the same draws), and returns a float image.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "Size",
    "resize_image",
    "Resize",
    "CenterCrop",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "Compose",
    "train_transform",
    "eval_transform",
    "transform_at_size",
    "apply_at_size",
    "fit_to_size",
]

Size = tuple[int, int]


def _check_image(img: torch.Tensor) -> None:
    if not (isinstance(img, torch.Tensor) and img.dim() == 3 and img.is_floating_point()):
        raise TypeError("transforms take a float tensor [3, H, W] (got "
                        f"{type(img).__name__} {getattr(img, 'shape', '')} {getattr(img, 'dtype', '')})")


def resize_image(img: torch.Tensor, size: Size) -> torch.Tensor:
    """``img [C, H, W]`` resized to ``size = (h, w)``: bilinear with anti-aliasing (returned as is
    when it already has that size). Shared by every loader that resizes (COCO, PASCAL VOC)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    out = F.interpolate(img[None], size=tuple(size), mode="bilinear", align_corners=False,  # [1, C, h, w]
                        antialias=True)
    return out[0]  # [1, C, h, w] -> [C, h, w]


class Resize:
    """``Resize(256)``: shorter side to 256, aspect kept; ``Resize((h, w))``: exactly ``h x w``.
    Bilinear with anti-aliasing."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = size if isinstance(size, int) else to_pair(size)

    def output_size(self, h: int, w: int) -> Size:
        if isinstance(self.size, int):
            if h <= w:
                return self.size, max(1, int(self.size * w / h))
            return max(1, int(self.size * h / w)), self.size
        return self.size

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(img)
        return resize_image(img, self.output_size(*img.shape[-2:]))

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central ``h x w`` (padding with zeros if the image is smaller)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = to_pair(size)

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(img)
        th, tw = self.size
        h, w = img.shape[-2:]
        if th > h or tw > w:  # pad symmetrically first
            ph, pw = max(0, th - h), max(0, tw - w)
            img = F.pad(img, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            h, w = img.shape[-2:]
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return img[:, top : top + th, left : left + tw]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class RandomResizedCrop:
    """The Inception crop used by the paper: a random area in ``scale`` of the image, a random
    aspect ratio in ``ratio`` (log-uniform), resized to ``size``; ten tries, then a central crop.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"scale and ratio must be (min, max), got {scale}, {ratio}")
        self.size = to_pair(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def get_params(self, h: int, w: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """``(top, left, crop_h, crop_w)``."""
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(*self.scale, generator=generator).item()
            aspect = math.exp(torch.empty(1).uniform_(*log_ratio, generator=generator).item())
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, w - cw + 1, (1,), generator=generator).item())
                return top, left, ch, cw
        in_ratio = w / h  # fallback: the largest central crop with a ratio inside the range
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(img)
        top, left, ch, cw = self.get_params(img.shape[-2], img.shape[-1], generator)
        return resize_image(img[:, top : top + ch, left : left + cw], self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(img)
        if torch.rand(1, generator=generator).item() < self.p:
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence[Callable[..., torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            img = t(img, generator=generator) if _takes_generator(t) else t(img)
        return img

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def _takes_generator(t: Any) -> bool:
    return isinstance(t, (Compose, Resize, CenterCrop, RandomResizedCrop, RandomHorizontalFlip))


def train_transform(size: int | Sequence[int] = 256) -> Compose:
    """The paper's training augmentation: random resized crop + horizontal flip."""
    return Compose([RandomResizedCrop(size), RandomHorizontalFlip()])


def eval_transform(size: int | Sequence[int] = 256, margin: int = 32) -> Compose:
    """The official evaluation: shorter side to ``size + 32`` (288 for 256), central crop."""
    h, w = to_pair(size)
    return Compose([Resize(min(h, w) + margin), CenterCrop((h, w))])


def transform_at_size(transform: Callable[..., torch.Tensor], size: Size) -> Callable[..., torch.Tensor]:
    """A copy of ``transform`` whose output is ``size``: crops get the new size, ``Resize`` to a
    shorter side is scaled by the same factor (the official pipeline applies the training
    ``RandomResizedCrop`` at the (h, w) each multi-scale batch asks for)."""
    if isinstance(transform, Compose):
        final = None
        for t in transform.transforms:
            if isinstance(t, (RandomResizedCrop, CenterCrop)) or (isinstance(t, Resize) and not isinstance(t.size, int)):
                final = to_pair(t.size)
        factor = size[0] / final[0] if final else 1.0
        return Compose([_one_at_size(t, size, factor) for t in transform.transforms])
    return _one_at_size(transform, size, 1.0)


def _one_at_size(t: Any, size: Size, factor: float) -> Any:
    if isinstance(t, (RandomResizedCrop, CenterCrop)):
        if tuple(t.size) == tuple(size):
            return t
        t = copy.copy(t)
        t.size = tuple(size)
        return t
    if isinstance(t, Resize):
        t = copy.copy(t)
        t.size = max(1, int(round(t.size * factor))) if isinstance(t.size, int) else tuple(size)
        return t
    if isinstance(t, Compose):
        return transform_at_size(t, size)
    return t


def apply_at_size(transform: Callable[..., torch.Tensor], image: torch.Tensor, size: Size) -> torch.Tensor:
    """Apply ``transform`` re-targeted to ``size`` (:func:`transform_at_size`); if its output
    still has another size (a transform that ignores it), resize the result to ``size``.
    How every data set of the library applies its ``transform`` to a ``(h, w, i)`` key."""
    out = transform_at_size(transform, size)(image)
    if tuple(out.shape[-2:]) != tuple(size):
        out = resize_image(out, size)
    return out


def fit_to_size(image: torch.Tensor, size: Size) -> torch.Tensor:
    """Without a transform: scale the shorter side to cover ``size``, then crop the centre."""
    h, w = image.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return image
    s = max(th / h, tw / w)
    image = resize_image(image, (max(th, int(round(h * s))), max(tw, int(round(w * s)))))
    return CenterCrop(size)(image)
