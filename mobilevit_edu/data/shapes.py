"""The shapes data set: procedurally rendered scenes with labels, boxes and masks, at any
resolution, with nothing to download.

Paper: §3.3 (the multi-scale sampler asks for each image at a resolution chosen per batch) and
§4.1 (ImageNet classification), §4.2 (detection and segmentation), on a data set small enough
for a laptop CPU (book chapters 08-13). Every data set of the library accepts two kinds of key:

* ``ds[i]``          -> ``(image [3, H, W] float in [0, 1], label)`` at ``ds.image_size``;
* ``ds[(h, w, i)]``  -> the same sample at ``h x w`` (the sampler's format, :func:`parse_key`).

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

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mobilevit_edu.data.transforms import Size, apply_at_size
from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "SHAPES",
    "PALETTE",
    "TASKS",
    "ShapeObject",
    "Scene",
    "Sample",
    "ShapesDataset",
    "render_scene",
    "make_scene",
    "parse_key",
]

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


def parse_key(key: Any, default: Size, length: int) -> tuple[Size, int]:
    """A data set key, ``i`` or ``(h, w, i)`` (the sampler's format), as ``((h, w), i)``: ``default``
    is the size for a plain index, and ``i`` is checked against ``length`` (negative ``i`` counts
    from the end). Every data set of the library (shapes, CIFAR-10, ImageFolder, COCO, VOC) reads
    its keys with it."""
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
        img = img + (rgb - img) * alpha[None]  # alpha [H, W] -> [1, H, W], blended into [3, H, W]
        mask[alpha >= 0.5] = obj.label + 1
        x0, y0, x1, y1 = obj.box
        boxes.append((max(0.0, x0 * w), max(0.0, y0 * h), min(float(w), x1 * w), min(float(h), y1 * h)))
        labels.append(obj.label)
    # clip in NumPy: a torch clamp_ on this fresh tensor spins up the thread pool for one image
    image = torch.from_numpy(np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32))
    return Sample(
        image=image,
        label=scene.label,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # [K, 4], also for K = 0
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
        self.image_size: Size = to_pair(image_size, "image_size")
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
        _, i = parse_key(index, self.image_size, self.size)
        return make_scene(self.task, self.seed, i, self.num_classes)

    def render(self, index: int, h: int | None = None, w: int | None = None) -> Sample:
        """Image, label, boxes, box labels and mask of sample ``index`` at ``h x w``."""
        hh, ww = self.image_size
        return render_scene(self.scene(index), h or hh, w or ww)

    def label(self, index: int) -> int:
        """The label without rendering."""
        _, i = parse_key(index, self.image_size, self.size)
        return i % self.num_classes

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        (h, w), i = parse_key(key, self.image_size, self.size)
        if self._cache is not None and (h, w, i) in self._cache:
            image, label = self._cache[(h, w, i)]
        else:
            sample = render_scene(make_scene(self.task, self.seed, i, self.num_classes), h, w)
            image, label = sample.image, sample.label
            if self._cache is not None:
                self._cache[(h, w, i)] = (image, label)
        if self.transform is not None:
            image = apply_at_size(self.transform, image, (h, w))
        return image, label
