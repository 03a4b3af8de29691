"""Data for the book: a procedurally rendered shapes data set, loaders for readers' data
(CIFAR-10 python batches, ImageFolder trees) and the paper's augmentations in plain torch.

Paper: §4.1 trains on ImageNet-1k with "basic data augmentation (i.e., random resized cropping
and horizontal flipping)"; the multi-scale sampler (§3.3, ``mobilevit_edu.data.sampler``) asks the
data set for each image at a resolution chosen per batch. Every data set here therefore accepts
two kinds of key:

* ``ds[i]``          -> ``(image [3, H, W] float in [0, 1], label)`` at ``ds.image_size``;
* ``ds[(h, w, i)]``  -> the same sample at ``h x w`` (the sampler's format).

``ShapesDataset`` renders every scene natively at the asked resolution (no resampling), from
analytic shapes with anti-aliased edges (the coverage of each pixel is taken from the shape's
signed distance), so sample ``i`` is the same scene at 64 x 64 and at 320 x 320. One generator
gives the class label, the boxes and the segmentation mask. Two tasks:

* ``"shape"`` (local): which shape the large object is; small distractors are drawn under it.
* ``"same_colour"`` (global): two small objects in opposite regions of the image; label 1 when
  they have the same palette colour. A network that pools per-object evidence and then applies a
  linear classifier cannot solve it (for any per-object score ``f``, ``f(c) + f(c) > t`` and
  ``f(c') + f(c') > t`` imply ``f(c) + f(c') > t``): some feature must see both objects at once.

Nothing is cached on disk; ``cache=True`` keeps rendered samples in memory.
"""

from __future__ import annotations

import copy
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "SHAPES",
    "PALETTE",
    "TASKS",
    "ShapeObject",
    "Scene",
    "Sample",
    "ShapesDataset",
    "CIFAR10",
    "ImageFolder",
    "IMAGE_EXTENSIONS",
    "Compose",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "Resize",
    "CenterCrop",
    "train_transform",
    "eval_transform",
    "transform_at_size",
    "plot_shapes_gallery",
    "plot_augmentations",
]

Size = tuple[int, int]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "ring", "cross")
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.18, 0.16),
    "green": (0.22, 0.76, 0.26),
    "blue": (0.22, 0.42, 0.96),
    "yellow": (0.96, 0.86, 0.18),
    "magenta": (0.86, 0.26, 0.82),
    "cyan": (0.22, 0.86, 0.86),
}
TASKS: dict[str, str] = {
    "shape": "local: which shape is the large object",
    "same_colour": "global: do the two far-apart objects share a colour",
}


def _pair(size: int | Sequence[int]) -> Size:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _parse_key(key: Any, default: Size, length: int) -> tuple[Size, int]:
    """``i`` or ``(h, w, i)`` -> ``((h, w), i)`` with ``i`` checked against ``length``."""
    if isinstance(key, (tuple, list)):
        if len(key) != 3:
            raise TypeError(f"expected an index i or a tuple (h, w, i), got {key!r}")
        h, w, i = (int(k) for k in key)
        hw = (h, w)
    else:
        hw, i = default, int(key)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {i} out of range for a data set of {length} samples")
    return hw, i


# --- 1. the shapes data set ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene, in coordinates relative to the image (x right, y down, 0..1).

    ``size`` is the half-extent (radius) relative to the image side; ``angle`` in radians.
    """

    shape: str
    colour: str
    cx: float
    cy: float
    size: float
    angle: float

    @property
    def label(self) -> int:
        return SHAPES.index(self.shape)

    @property
    def rgb(self) -> tuple[float, float, float]:
        return PALETTE[self.colour]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Tight box ``(x0, y0, x1, y1)`` in relative coordinates."""
        pts = _outline(self)
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw one sample at any resolution."""

    task: str
    label: int
    objects: tuple[ShapeObject, ...]  # in drawing order (later objects on top)
    background: tuple[tuple[float, float, float], tuple[float, float, float], float] = field(
        repr=False, default=((0.2, 0.2, 0.2), (0.2, 0.2, 0.2), 0.0)
    )


class Sample(NamedTuple):
    """A rendered scene: image ``[3, H, W]``, class label, boxes ``[K, 4]`` (x0, y0, x1, y1 in
    pixels), their shape labels ``[K]``, and a mask ``[H, W]`` (0 = background, shape + 1)."""

    image: torch.Tensor
    label: int
    boxes: torch.Tensor
    box_labels: torch.Tensor
    mask: torch.Tensor


_CROSS_ARM = 0.36  # half-width of a cross's arm, relative to its size


def _polygon(n: int, obj: ShapeObject, apothem: float) -> np.ndarray:
    """Vertices (relative coords) of a regular n-gon whose edge normals are at angle + 2pi k/n."""
    r = apothem / math.cos(math.pi / n)
    ang = obj.angle + np.arange(n) * 2 * math.pi / n + math.pi / n
    return np.stack([obj.cx + r * np.cos(ang), obj.cy + r * np.sin(ang)], 1)


def _outline(obj: ShapeObject) -> np.ndarray:
    """Points whose bounding box is the object's tight box."""
    s = obj.size
    if obj.shape in ("circle", "ring"):
        return np.array([[obj.cx - s, obj.cy - s], [obj.cx + s, obj.cy + s]])
    if obj.shape == "square":
        return _polygon(4, obj, 0.85 * s)
    if obj.shape == "triangle":
        return _polygon(3, obj, 0.55 * s)
    # cross: the corners of its two arms
    c, si = math.cos(obj.angle), math.sin(obj.angle)
    pts = []
    for hu, hv in ((s, _CROSS_ARM * s), (_CROSS_ARM * s, s)):
        for du, dv in ((hu, hv), (hu, -hv), (-hu, hv), (-hu, -hv)):
            pts.append((obj.cx + du * c - dv * si, obj.cy + du * si + dv * c))
    return np.array(pts)


def _sdf(obj: ShapeObject, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (relative units, < 0 inside) from pixel centres to the object's edge.

    Circles and rings are exact; polygons use the largest distance to an edge line, exact inside
    and near the edges (which is all the anti-aliasing needs)."""
    dx, dy = x - obj.cx, y - obj.cy  # [1, W] and [H, 1] broadcast to [H, W]
    s = obj.size
    if obj.shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - s
    if obj.shape == "ring":
        return np.abs(np.sqrt(dx * dx + dy * dy) - 0.7 * s) - 0.3 * s
    c, si = math.cos(obj.angle), math.sin(obj.angle)
    u, v = dx * c + dy * si, -dx * si + dy * c  # object frame
    if obj.shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * s
    if obj.shape == "triangle":
        d = None
        for k in range(3):
            a = 2 * math.pi * k / 3
            dk = u * math.cos(a) + v * math.sin(a) - 0.55 * s
            d = dk if d is None else np.maximum(d, dk)
        return d
    if obj.shape == "cross":
        au, av = np.abs(u), np.abs(v)
        arm1 = np.maximum(au - s, av - _CROSS_ARM * s)
        arm2 = np.maximum(au - _CROSS_ARM * s, av - s)
        return np.minimum(arm1, arm2)
    raise ValueError(f"unknown shape {obj.shape!r}; shapes are {SHAPES}")


_GRIDS: dict[Size, tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, relative: x ``[1, W]``, y ``[H, 1]``."""
    if (h, w) not in _GRIDS:
        if len(_GRIDS) > 64:
            _GRIDS.clear()
        x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]  # [1, W]
        y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]  # [H, 1]
        _GRIDS[(h, w)] = (x, y)
    return _GRIDS[(h, w)]


def render_scene(scene: Scene, h: int, w: int) -> Sample:
    """Draw ``scene`` at ``h x w``: background gradient, then each object alpha-blended with its
    anti-aliased coverage ``clip(0.5 - sdf_in_pixels, 0, 1)``."""
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h} x {w}")
    x, y = _grid(h, w)
    (c0, c1, phi) = scene.background
    t = np.clip((x - 0.5) * math.cos(phi) + (y - 0.5) * math.sin(phi) + 0.5, 0, 1)  # [H, W]
    c0a = np.asarray(c0, np.float32)[:, None, None]
    c1a = np.asarray(c1, np.float32)[:, None, None]
    img = c0a + (c1a - c0a) * t[None]  # [3, H, W]
    mask = np.zeros((h, w), np.int64)
    px = float(min(h, w))  # relative units -> pixels
    boxes, labels = [], []
    for obj in scene.objects:
        alpha = np.clip(0.5 - _sdf(obj, x, y) * px, 0.0, 1.0).astype(np.float32)  # [H, W]
        rgb = np.asarray(obj.rgb, np.float32)[:, None, None]
        img = img + (rgb - img) * alpha[None]
        mask[alpha >= 0.5] = obj.label + 1
        x0, y0, x1, y1 = obj.box
        boxes.append((max(0.0, x0 * w), max(0.0, y0 * h), min(float(w), x1 * w), min(float(h), y1 * h)))
        labels.append(obj.label)
    # clip in NumPy: a torch clamp_ on this fresh tensor spins up the thread pool for one image
    image = torch.from_numpy(np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32))
    return Sample(
        image=image,
        label=scene.label,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        box_labels=torch.tensor(labels, dtype=torch.long),
        mask=torch.from_numpy(mask),
    )


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def make_scene(task: str, seed: int, index: int, num_classes: int) -> Scene:
    """The scene of sample ``index``: a function of ``(task, seed, index)`` only.

    Labels are balanced exactly: sample ``i`` has label ``i % num_classes``; everything else is
    drawn from ``numpy.random.default_rng([seed, index])``."""
    rng = np.random.default_rng([seed, index])
    label = index % num_classes
    colours = list(PALETTE)
    bg = (
        tuple(float(v) for v in rng.uniform(0.05, 0.40, 3)),
        tuple(float(v) for v in rng.uniform(0.05, 0.40, 3)),
        _uniform(rng, 0, 2 * math.pi),
    )
    objects: list[ShapeObject] = []
    if task == "shape":
        for _ in range(int(rng.integers(0, 3))):  # 0-2 small distractors, drawn first
            s = _uniform(rng, 0.05, 0.08)
            objects.append(ShapeObject(SHAPES[int(rng.integers(len(SHAPES)))],
                                       colours[int(rng.integers(len(colours)))],
                                       _uniform(rng, s, 1 - s), _uniform(rng, s, 1 - s), s,
                                       _uniform(rng, 0, 2 * math.pi)))
        s = _uniform(rng, 0.17, 0.30)
        m = s + 0.02
        objects.append(ShapeObject(SHAPES[label], colours[int(rng.integers(len(colours)))],
                                   _uniform(rng, m, 1 - m), _uniform(rng, m, 1 - m), s,
                                   _uniform(rng, 0, 2 * math.pi)))
    elif task == "same_colour":
        # two objects in opposite regions: left/right, top/bottom or opposite corners
        layout = int(rng.integers(4))
        first = colours[int(rng.integers(len(colours)))]
        if label == 1:
            second = first
        else:
            others = [c for c in colours if c != first]
            second = others[int(rng.integers(len(others)))]
        pair = [first, second]
        if rng.random() < 0.5:
            pair.reverse()
        for k, colour in enumerate(pair):
            s = _uniform(rng, 0.07, 0.11)
            lo, hi = s + 0.02, 1 - s - 0.02
            near = (lo, 0.30) if k == 0 else (0.70, hi)  # this object's third of the axis
            free = (lo, hi)
            if layout == 0:  # left / right
                cx, cy = _uniform(rng, *near), _uniform(rng, *free)
            elif layout == 1:  # top / bottom
                cx, cy = _uniform(rng, *free), _uniform(rng, *near)
            elif layout == 2:  # top-left / bottom-right
                cx, cy = _uniform(rng, *near), _uniform(rng, *near)
            else:  # top-right / bottom-left
                cx = _uniform(rng, *((0.70, hi) if k == 0 else (lo, 0.30)))
                cy = _uniform(rng, *near)
            objects.append(ShapeObject(SHAPES[int(rng.integers(len(SHAPES)))], colour, cx, cy, s,
                                       _uniform(rng, 0, 2 * math.pi)))
    else:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return Scene(task=task, label=label, objects=tuple(objects), background=bg)  # type: ignore[arg-type]


class ShapesDataset(Dataset):
    """A procedurally rendered data set of shapes, deterministic from ``(seed, index)``.

    ``ShapesDataset(size, task="shape", image_size=64, seed=0)``; ``ds[i]`` renders at
    ``image_size``, ``ds[(h, w, i)]`` renders the same scene natively at ``h x w``.
    Use different seeds for training and validation sets (the same seed gives the same scenes).
    """

    def __init__(
        self,
        size: int,
        task: str = "shape",
        image_size: int | Sequence[int] = 64,
        seed: int = 0,
        transform: Callable[..., torch.Tensor] | None = None,
        cache: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.size = int(size)
        self.task = task
        self.image_size: Size = _pair(image_size)
        self.seed = int(seed)
        self.transform = transform
        self.classes: list[str] = list(SHAPES) if task == "shape" else ["different", "same"]
        self.num_classes: int = len(self.classes)
        self._cache: dict[tuple[int, int, int], tuple[torch.Tensor, int]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"ShapesDataset(size={self.size}, task={self.task!r}, image_size={self.image_size}, "
                f"seed={self.seed}, classes={self.classes})")

    def scene(self, index: int) -> Scene:
        """The scene of sample ``index`` (objects with shape, colour and box in relative coords)."""
        _, i = _parse_key(index, self.image_size, self.size)
        return make_scene(self.task, self.seed, i, self.num_classes)

    def render(self, index: int, h: int | None = None, w: int | None = None) -> Sample:
        """Image, label, boxes, box labels and mask of sample ``index`` at ``h x w``."""
        hh, ww = self.image_size
        return render_scene(self.scene(index), h or hh, w or ww)

    def label(self, index: int) -> int:
        """The label without rendering."""
        _, i = _parse_key(index, self.image_size, self.size)
        return i % self.num_classes

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        (h, w), i = _parse_key(key, self.image_size, self.size)
        if self._cache is not None and (h, w, i) in self._cache:
            image, label = self._cache[(h, w, i)]
        else:
            sample = render_scene(make_scene(self.task, self.seed, i, self.num_classes), h, w)
            image, label = sample.image, sample.label
            if self._cache is not None:
                self._cache[(h, w, i)] = (image, label)
        if self.transform is not None:
            image = _apply(self.transform, image, (h, w))
        return image, label


# --- 2. augmentations in plain torch -------------------------------------------------------------


def _check_image(img: torch.Tensor) -> None:
    if not (isinstance(img, torch.Tensor) and img.dim() == 3 and img.is_floating_point()):
        raise TypeError("transforms take a float tensor [3, H, W] (got "
                        f"{type(img).__name__} {getattr(img, 'shape', '')} {getattr(img, 'dtype', '')})")


def _resize(img: torch.Tensor, size: Size) -> torch.Tensor:
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    out = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0]  # [1, 3, h, w] -> [3, h, w]


class Resize:
    """``Resize(256)``: shorter side to 256, aspect kept; ``Resize((h, w))``: exactly ``h x w``.
    Bilinear with anti-aliasing."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = size if isinstance(size, int) else _pair(size)

    def output_size(self, h: int, w: int) -> Size:
        if isinstance(self.size, int):
            if h <= w:
                return self.size, max(1, int(self.size * w / h))
            return max(1, int(self.size * h / w)), self.size
        return self.size

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(img)
        return _resize(img, self.output_size(*img.shape[-2:]))

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central ``h x w`` (padding with zeros if the image is smaller)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size)

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
        self.size = _pair(size)
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
        return _resize(img[:, top : top + ch, left : left + cw], self.size)

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
    h, w = _pair(size)
    return Compose([Resize(min(h, w) + margin), CenterCrop((h, w))])


def transform_at_size(transform: Callable[..., torch.Tensor], size: Size) -> Callable[..., torch.Tensor]:
    """A copy of ``transform`` whose output is ``size``: crops get the new size, ``Resize`` to a
    shorter side is scaled by the same factor (the official pipeline applies the training
    ``RandomResizedCrop`` at the (h, w) each multi-scale batch asks for)."""
    if isinstance(transform, Compose):
        final = None
        for t in transform.transforms:
            if isinstance(t, (RandomResizedCrop, CenterCrop)) or (isinstance(t, Resize) and not isinstance(t.size, int)):
                final = _pair(t.size)
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


def _apply(transform: Callable[..., torch.Tensor], image: torch.Tensor, size: Size) -> torch.Tensor:
    """Apply ``transform`` (adapted to ``size``); make sure the result is ``size``."""
    out = transform_at_size(transform, size)(image)
    if tuple(out.shape[-2:]) != tuple(size):
        out = _resize(out, size)
    return out


def _fit(image: torch.Tensor, size: Size) -> torch.Tensor:
    """Without a transform: scale the shorter side to cover ``size``, then crop the centre."""
    h, w = image.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return image
    s = max(th / h, tw / w)
    image = _resize(image, (max(th, int(round(h * s))), max(tw, int(round(w * s)))))
    return CenterCrop(size)(image)


# --- 3. readers' data ----------------------------------------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CIFAR10(Dataset):
    """CIFAR-10 from its python pickle batches (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``, ``batches.meta``), as shipped in ``cifar-10-python.tar.gz``.

    ``root`` is the folder holding the batches or its parent holding ``cifar-10-batches-py``.
    Images stay ``uint8`` in memory and are returned as float ``[3, 32, 32]`` in [0, 1] (or at
    ``image_size`` / ``(h, w)``, resized bilinearly).
    """

    TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
    TEST_FILES = ("test_batch",)
    META_FILE = "batches.meta"

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable[..., torch.Tensor] | None = None,
        image_size: int | Sequence[int] = 32,
    ) -> None:
        root = Path(root)
        if (root / "cifar-10-batches-py").is_dir():
            root = root / "cifar-10-batches-py"
        self.root = root
        self.train = train
        self.transform = transform
        self.image_size: Size = _pair(image_size)
        data, labels = [], []
        for name in self.TRAIN_FILES if train else self.TEST_FILES:
            batch = self._load(name)
            for key in (b"data", b"labels"):
                if key not in batch:
                    raise KeyError(f"{root / name} has no key {key!r}; is it a CIFAR-10 python batch?")
            arr = np.asarray(batch[b"data"], dtype=np.uint8)
            if arr.ndim != 2 or arr.shape[1] != 3 * 32 * 32:
                raise ValueError(f"{root / name}: data has shape {arr.shape}, expected [N, 3072]")
            data.append(arr.reshape(-1, 3, 32, 32))  # [N, 3072] -> [N, 3, 32, 32] (R, G, B planes)
            labels.extend(int(v) for v in batch[b"labels"])
        self.data = torch.from_numpy(np.concatenate(data))
        self.targets: list[int] = labels
        meta = self._load(self.META_FILE)
        self.classes: list[str] = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
        self.num_classes = len(self.classes)
        if len(self.targets) != len(self.data):
            raise ValueError(f"{root}: {len(self.data)} images but {len(self.targets)} labels")

    def _load(self, name: str) -> dict:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 file not found: {path}. Download the python version "
                f"(cifar-10-python.tar.gz) from {CIFAR10_URL}, extract it, and pass the folder "
                "'cifar-10-batches-py' (or its parent) as root."
            )
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        size, i = _parse_key(key, self.image_size, len(self))
        image = self.data[i].float() / 255.0  # uint8 [3, 32, 32] -> float in [0, 1]
        image = _apply(self.transform, image, size) if self.transform is not None else _resize(image, size)
        return image, self.targets[i]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_rgb(path: str | Path) -> torch.Tensor:
    """An image file (any format Pillow reads) as RGB floats ``[3, H, W]`` in [0, 1], unresized.
    Shared by every loader of real data (ImageFolder, COCO, PASCAL VOC)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0  # [H, W, 3] -> [3, H, W]


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>`` (ImageNet, Imagenette, your own photos).

    Classes are the sorted sub-folder names; files are sorted within each class. Images are read
    with PIL and converted to RGB float ``[3, H, W]`` in [0, 1]. Without a ``transform`` an image is
    scaled to cover ``image_size`` (or the ``(h, w)`` of the key) and centre-cropped to it; with
    one, the transform is applied at that size (see :func:`transform_at_size`).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | Sequence[int] = 256,
        transform: Callable[..., torch.Tensor] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (expected root/<class>/<image files>)")
        self.image_size: Size = _pair(image_size)
        self.transform = transform
        exts = tuple(e.lower() for e in extensions)
        self.classes: list[str] = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"no class sub-folders in {self.root} (expected root/<class>/<image files>)")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in self.classes:
            files = sorted(p for p in (self.root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self.samples.extend((p, self.class_to_idx[c]) for p in files)
        if not self.samples:
            raise FileNotFoundError(f"no image files ({', '.join(exts)}) in the class folders of {self.root}")
        self.targets: list[int] = [t for _, t in self.samples]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """The image file as a float tensor ``[3, H, W]`` in [0, 1] (no resizing)."""
        return load_rgb(self.samples[index][0])

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        size, i = _parse_key(key, self.image_size, len(self))
        image = self.load(i)
        image = _apply(self.transform, image, size) if self.transform is not None else _fit(image, size)
        return image, self.samples[i][1]


# --- 4. pictures -----------------------------------------------------------------------------------


def plot_shapes_gallery(dataset: ShapesDataset, n: int = 8, size: int = 96, name: str | None = None):
    """The first ``n`` samples of ``dataset`` rendered at ``size``, with labels, boxes and masks."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3))
    for k in range(n):
        s = dataset.render(k, size, size)
        ax = axes[0, k]
        ax.imshow(s.image.permute(1, 2, 0).numpy())  # [3, H, W] -> [H, W, 3]
        for (x0, y0, x1, y1) in s.boxes.tolist():
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.8))
        ax.set_title(dataset.classes[s.label], fontsize=9)
        axes[1, k].imshow(s.mask.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image + boxes", fontsize=8)
    axes[1, 0].set_ylabel("mask", fontsize=8)
    fig.suptitle(f"ShapesDataset, task {dataset.task!r} ({TASKS[dataset.task]})", fontsize=10)
    fig.tight_layout()
    if name:
        save_figure(fig, name)
    return fig


def plot_augmentations(image: torch.Tensor, transform: Callable[..., torch.Tensor], n: int = 6,
                       seed: int = 0, name: str | None = None):
    """``image`` and ``n`` draws of ``transform`` from a seeded ``torch.Generator``."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(1, n + 1, figsize=(1.6 * (n + 1), 1.9))
    axes[0].imshow(image.permute(1, 2, 0).numpy())  # [3, H, W] -> [H, W, 3]
    axes[0].set_title("input", fontsize=9)
    for k in range(n):
        out = transform(image, generator=g)
        axes[k + 1].imshow(out.clamp(0, 1).permute(1, 2, 0).numpy())
        axes[k + 1].set_title(f"draw {k}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    if name:
        save_figure(fig, name)
    return fig
