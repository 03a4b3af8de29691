"""SSD's training augmentation for the detection fine-tuning (paper §4.2.1), in plain torch.

Source: apple/ml-cvnets at tag ``cvnets-v0.1`` (the code behind the paper's numbers), which builds
the list in ``data/datasets/detection/coco.py``, ``COCODetectionSSD.training_transforms``:
``SSDCroping, PhotometricDistort, RandomHorizontalFlip, BoxPercentCoords, Resize(size),
NumpyToTensor`` (``RandomZoomOut`` is commented out there), all from ``data/transforms/image.py``;
``validation_transforms`` (also used for evaluation) is ``BoxPercentCoords, Resize(size),
NumpyToTensor``. ``config/detection/ssd_mobilevit_*_320.yaml`` has no ``image_augmentation``
block, so every constant is the class default, repeated in each docstring below; size is 320.

v0.1 works on BGR ``uint8`` arrays read by OpenCV; here an image is a float tensor ``[3, H, W]``
in [0, 1] (RGB as read by the library), ``boxes [N, 4]`` corner form ``(x0, y0, x1, y1)`` in
pixels of the current image, ``labels [N]`` long. Every transform is a callable
``t(image, boxes, labels, generator=None) -> (image, boxes, labels)``; ``generator`` (a
``torch.Generator``; None: the global torch RNG) makes every random draw, so a seed fixes the
result. v0.1 draws with Python's ``random`` and NumPy; the laws of the draws are kept, the
streams are torch's (so no seed reproduces a v0.1 run draw for draw). v0.1 keeps boxes as fractions from ``BoxPercentCoords`` on; here they stay in pixels
and :class:`Resize` scales them, which is the same thing.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "SSD_CROP_MODES",
    "SSDCrop",
    "SSDRandomCrop",
    "PhotometricParams",
    "PhotometricDistort",
    "RandomHorizontalFlip",
    "Resize",
    "Compose",
    "ssd_train_transform",
    "ssd_eval_transform",
    "crop_iou",
    "rgb_to_hsv",
    "hsv_to_rgb",
]

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

SSD_CROP_MODES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # SSDCroping.sample_options in v0.1


def check_sample(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise if ``(image, boxes, labels)`` is not ``[3, H, W]`` float, ``[N, 4]`` float, ``[N]``."""
    if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.is_floating_point()):
        raise TypeError("detection transforms take a float image [3, H, W] in [0, 1], got "
                        f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}")
    if not (boxes.dim() == 2 and boxes.shape[-1] == 4 and boxes.is_floating_point()):
        raise TypeError(f"boxes must be a float tensor [N, 4] (x0, y0, x1, y1) in pixels, got "
                        f"{tuple(boxes.shape)} {boxes.dtype}; convert with boxes.float()")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"one label per box: {boxes.shape[0]} boxes but labels of shape "
                         f"{tuple(labels.shape)}")


def uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One draw of U(low, high) (Python's ``random.uniform``) from ``generator``."""
    return low + (high - low) * torch.rand(1, generator=generator).item()


def crop_iou(boxes: torch.Tensor, rects: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """IoU ``[T, N]`` of each rectangle ``[T, 4]`` with each box ``[N, 4]`` (one rectangle
    ``[4]``: IoU ``[N]``), all ``(x0, y0, x1, y1)``: v0.1's ``jaccard_numpy`` in
    ``data/transforms/image.py``."""
    r = torch.as_tensor(rects, dtype=boxes.dtype)
    single = r.dim() == 1
    r = r.reshape(-1, 4)  # [4] or [T, 4] -> [T, 4]
    low = torch.maximum(r[:, None, :2], boxes[None, :, :2])  # [T, N, 2]
    high = torch.minimum(r[:, None, 2:], boxes[None, :, 2:])  # [T, N, 2]
    wh = (high - low).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_r = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    iou = inter / (area_r[:, None] + area_b[None, :] - inter).clamp(min=1e-12)
    return iou[0] if single else iou


class SSDCrop(NamedTuple):
    """One accepted draw of :class:`SSDRandomCrop`: the mode's minimum IoU, the integer
    rectangle ``(left, top, right, bottom)`` and which boxes are kept (centre inside it)."""

    min_iou: float
    rect: tuple[int, int, int, int]
    keep: torch.Tensor


class SSDRandomCrop:
    """SSD's min-IoU random crop: v0.1 ``SSDCroping`` (``data/transforms/image.py``).

    Repeat: draw a mode from ``modes`` = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0) uniformly; 0.0
    returns the sample unchanged. Otherwise try ``trials`` = 40 crops: width
    ``w ~ U(0.3 W, W)``, height ``h ~ U(0.3 H, H)`` (``min_scale`` = 0.3), rejected unless
    ``0.5 <= h / w <= 2`` (``aspect_range``); ``left ~ U(0, W - w)``, ``top ~ U(0, H - h)``,
    truncated to the integer rectangle ``(int(left), int(top), int(left + w), int(top + h))``.
    A crop is kept when the **largest** IoU of a box with it reaches the mode (v0.1 tests
    ``ious.max() < mode``, not the minimum of the original SSD) and at least one box has its
    centre strictly inside; those boxes are kept, clipped to the crop and shifted. If all 40
    trials fail, a new mode is drawn (mode 1.0 practically always fails, so it acts as a
    redraw). v0.1 loops without end; here ``max_rounds`` = 1000 modes at most (then unchanged),
    which with 0.0 among the modes changes nothing but a probability below 1e-60. A sample
    without boxes passes unchanged.
    """

    def __init__(self, modes: Sequence[float] = SSD_CROP_MODES, trials: int = 40,
                 min_scale: float = 0.3, aspect_range: tuple[float, float] = (0.5, 2.0),
                 max_rounds: int = 1000) -> None:
        if not modes or any(not 0.0 <= m <= 1.0 for m in modes):
            raise ValueError(f"modes must be minimum IoUs in [0, 1], got {modes}")
        if not (0 < min_scale <= 1 and 0 < aspect_range[0] <= aspect_range[1]):
            raise ValueError(f"need 0 < min_scale <= 1 and 0 < aspect_range[0] <= aspect_range[1], "
                             f"got {min_scale}, {aspect_range}")
        self.modes = tuple(float(m) for m in modes)
        self.trials, self.max_rounds, self.min_scale = int(trials), int(max_rounds), float(min_scale)
        self.aspect_range = (float(aspect_range[0]), float(aspect_range[1]))

    def sample_crop(self, boxes: torch.Tensor, height: int, width: int,
                    generator: torch.Generator | None = None) -> SSDCrop | None:
        """The draws of one call: an accepted :class:`SSDCrop`, or None (no crop).

        The ``trials`` tries of a mode are drawn at once (four uniforms each, in double
        precision like Python's ``random``) and the first that passes is taken: the same law
        as v0.1's one-by-one loop, which skips ``left`` and ``top`` after a rejected aspect."""
        if boxes.shape[0] == 0:
            return None
        b = boxes.double()
        centres = (b[:, :2] + b[:, 2:]) * 0.5  # [N, 4] -> [N, 2]
        for _ in range(self.max_rounds):
            pick = int(torch.randint(len(self.modes), (1,), generator=generator).item())
            mode = self.modes[pick]
            if mode == 0.0:
                return None
            u = torch.rand(self.trials, 4, generator=generator, dtype=torch.float64)
            w = self.min_scale * width + (1 - self.min_scale) * width * u[:, 0]
            h = self.min_scale * height + (1 - self.min_scale) * height * u[:, 1]
            left, top = (width - w) * u[:, 2], (height - h) * u[:, 3]
            rects = torch.stack([left, top, left + w, top + h], dim=1).floor()  # 4 x [T] -> [T, 4]
            ok = (h / w >= self.aspect_range[0]) & (h / w <= self.aspect_range[1])
            ok &= crop_iou(b, rects).amax(dim=1) >= mode  # [T, N] -> [T]
            keep = ((rects[:, None, 0] < centres[None, :, 0]) & (rects[:, None, 1] < centres[None, :, 1])
                    & (rects[:, None, 2] > centres[None, :, 0])
                    & (rects[:, None, 3] > centres[None, :, 1]))  # [T, N]
            ok &= keep.any(dim=1)
            if ok.any():
                t = int(ok.nonzero()[0, 0])
                rect = tuple(int(v) for v in rects[t].tolist())
                return SSDCrop(mode, rect, keep[t])
        return None

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> Sample:
        check_sample(image, boxes, labels)
        crop = self.sample_crop(boxes, image.shape[-2], image.shape[-1], generator)
        if crop is None:
            return image, boxes, labels
        x0, y0, x1, y1 = crop.rect
        kept = boxes[crop.keep]
        low = torch.tensor([x0, y0], dtype=boxes.dtype)
        high = torch.tensor([x1, y1], dtype=boxes.dtype)
        kept = torch.cat([torch.maximum(kept[:, :2], low) - low,
                          torch.minimum(kept[:, 2:], high) - low], dim=1)  # [K, 2] x 2 -> [K, 4]
        return image[:, y0:y1, x0:x1], kept, labels[crop.keep]

    def __repr__(self) -> str:
        return (f"SSDRandomCrop(modes={self.modes}, trials={self.trials}, "
                f"min_scale={self.min_scale}, aspect_range={self.aspect_range})")


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` RGB in [0, 1] -> HSV, hue in turns [0, 1), as OpenCV's ``COLOR_BGR2HSV``
    computes it on the same pixel in BGR order (V = max, S = (V - min) / V, H by sector)."""
    r, g, b = image.unbind(0)
    v = image.amax(0)
    c = v - image.amin(0)
    s = torch.where(v > 0, c / v.clamp(min=1e-12), torch.zeros_like(v))
    cc = c.clamp(min=1e-12)
    h = torch.where(v == r, (g - b) / cc, torch.where(v == g, 2.0 + (b - r) / cc, 4.0 + (r - g) / cc))
    h = torch.where(c > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v])  # 3 x [H, W] -> [3, H, W]


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv` (hue in turns, taken modulo 1, as OpenCV's
    ``COLOR_HSV2BGR`` wraps hues past 360 degrees)."""
    h, s, v = hsv.unbind(0)
    h6 = (h % 1.0) * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    sector = sector.long() % 6
    table = torch.stack([torch.stack(c) for c in  # 6 sectors x 3 channels x [H, W]
                         [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]])
    index = sector[None, None].expand(1, 3, *sector.shape)  # [H, W] -> [1, 3, H, W]
    return table.gather(0, index)[0]  # [6, 3, H, W] -> [3, H, W]


class PhotometricParams(NamedTuple):
    """The draws of one :class:`PhotometricDistort` call (None: the step is skipped)."""

    contrast: float | None
    brightness: float | None
    saturation: float | None
    hue: int | None
    contrast_after: float | None
    permutation: tuple[int, int, int] | None


class PhotometricDistort:
    """SSD's photometric distortion: v0.1 ``PhotometricDistort`` (``data/transforms/image.py``),
    with its defaults (the yaml sets none): ``p`` = 0.5 for every step, contrast ``alpha`` in
    (0.5, 1.5), brightness ``beta`` in (-0.2, 0.2), saturation ``gamma`` in (0.5, 1.5), hue
    ``delta`` in (-0.05, 0.05).

    v0.1 first draws six uniforms ``r``; step k runs when ``r[k] < p``, in this order (each
    mapped from BGR ``uint8`` in [0, 255] to float [0, 1]):

    1. contrast: ``x *= alpha`` (a plain scaling, as v0.1; not around the mean);
    2. brightness: ``x += beta`` (v0.1 adds ``beta * 255`` to 0..255), then clip to [0, 1];
    3. saturation (HSV): ``S = min(S * gamma, 1)``;
    4. hue (HSV): v0.1 adds ``int(delta * 255)`` (an integer in -12..12) to OpenCV's 8-bit hue,
       whose unit is 2 degrees (0..179), so here ``H += int(delta * 255) / 180`` turns; a hue
       pushed below 0 is clipped to 0 (v0.1 clips to ``uint8``) and one past 360 degrees
       wraps (OpenCV's HSV->BGR does). OpenCV rounds a hue above 359 degrees to 0 (not 180),
       so such a hue is set to 0 before the shift, as in v0.1 a negative shift clips it;
    5. contrast again, only if step 1 did not run (``r[4] < p``), then clip;
    6. "lightning noise": a uniformly random permutation of the three channels (``r[5] < p``).

    OpenCV's BGR->HSV of a BGR pixel gives the same (H, S, V) as :func:`rgb_to_hsv` of the same
    pixel in RGB, and a uniform channel permutation has the same law in either order, so every
    step maps one to one. Left out: v0.1 rounds down to ``uint8`` after steps 2, 4 and 5 and
    stores H, S, V in 8 bits (the HSV round trip loses up to about 1/255 per channel even when
    steps 3-4 are skipped); here values stay float and the round trip runs only when 3 or 4 do.
    Checked once against v0.1's code with OpenCV on 300 random images with the same draws: mean
    difference 0.6/255, 99th percentile at most 5.3/255, 0.005 % of pixels off by more than
    10/255 (hues at OpenCV's 8-bit rounding).
    ``channels="bgr"`` says the image is in BGR order (the colour steps then convert from BGR).
    """

    def __init__(self, p: float = 0.5, contrast: tuple[float, float] = (0.5, 1.5),
                 brightness: tuple[float, float] = (-0.2, 0.2),
                 saturation: tuple[float, float] = (0.5, 1.5), hue: tuple[float, float] = (-0.05, 0.05),
                 channels: str = "rgb") -> None:
        for name, (lo, hi) in {"contrast": contrast, "brightness": brightness,
                               "saturation": saturation, "hue": hue}.items():
            if lo > hi:
                raise ValueError(f"{name} must be (min, max), got {(lo, hi)}")
        if channels not in ("rgb", "bgr"):
            raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
        self.p, self.channels = float(p), channels
        self.contrast, self.brightness = tuple(contrast), tuple(brightness)
        self.saturation, self.hue = tuple(saturation), tuple(hue)

    def sample_params(self, generator: torch.Generator | None = None) -> PhotometricParams:
        """The random draws of one call, in v0.1's order."""
        r = torch.rand(6, generator=generator).tolist()
        on = [x < self.p for x in r]
        alpha = uniform(*self.contrast, generator) if on[0] else None
        beta = uniform(*self.brightness, generator) if on[1] else None
        gamma = uniform(*self.saturation, generator) if on[2] else None
        delta = int(uniform(*self.hue, generator) * 255) if on[3] else None
        alpha2 = uniform(*self.contrast, generator) if (alpha is None and on[4]) else None
        perm = tuple(torch.randperm(3, generator=generator).tolist()) if on[5] else None
        return PhotometricParams(alpha, beta, gamma, delta, alpha2, perm)

    def apply(self, image: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
        """Apply the steps of ``params`` to ``image [3, H, W]`` in [0, 1]."""
        x = image
        if params.contrast is not None:
            x = x * params.contrast
        if params.brightness is not None:
            x = x + params.brightness
        x = x.clamp(0.0, 1.0)
        gamma = params.saturation if params.saturation not in (None, 1.0) else None
        delta = params.hue if params.hue not in (None, 0) else None
        if gamma is not None or delta is not None:
            rgb = x.flip(0) if self.channels == "bgr" else x  # BGR -> RGB: reverse the channels
            h, s, v = rgb_to_hsv(rgb).unbind(0)
            if gamma is not None:
                s = (s * gamma).clamp(max=1.0)
            if delta is not None:  # OpenCV's 8-bit hue rounds 359..360 degrees to 0 first
                h = torch.where(h > 359.0 / 360.0, torch.zeros_like(h), h)
                h = (h + delta / 180.0).clamp(min=0.0) % 1.0
            rgb = hsv_to_rgb(torch.stack([h, s, v])).clamp(0.0, 1.0)  # 3 x [H, W] -> [3, H, W]
            x = rgb.flip(0) if self.channels == "bgr" else rgb
        if params.contrast_after is not None:
            x = (x * params.contrast_after).clamp(0.0, 1.0)
        if params.permutation is not None:
            x = x[list(params.permutation)]
        return x.to(image.dtype)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> Sample:
        check_sample(image, boxes, labels)
        return self.apply(image, self.sample_params(generator)), boxes, labels

    def __repr__(self) -> str:
        return (f"PhotometricDistort(p={self.p}, contrast={self.contrast}, brightness={self.brightness}, "
                f"saturation={self.saturation}, hue={self.hue})")


class RandomHorizontalFlip:
    """v0.1 ``RandomHorizontalFlip`` (``data/transforms/image.py``): mirror when
    ``random.random() <= p``, ``p`` = 0.5; boxes become ``(W - x1, y0, W - x0, y1)``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> Sample:
        check_sample(image, boxes, labels)
        if torch.rand(1, generator=generator).item() <= self.p:
            width = image.shape[-1]
            x0, y0, x1, y1 = boxes.unbind(-1)
            boxes = torch.stack([width - x1, y0, width - x0, y1], dim=-1)  # 4 x [N] -> [N, 4]
            image = image.flip(-1)
        return image, boxes, labels

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """v0.1 ``Resize(size)`` after ``BoxPercentCoords`` (``data/transforms/image.py``): the
    image to exactly ``size`` = (h, w) (320 x 320 for SSDLite; aspect not kept), bilinear as
    OpenCV's ``INTER_LINEAR`` (half-pixel centres, no anti-aliasing when shrinking); v0.1's
    boxes are fractions by then, here pixels scaled by ``w / W`` and ``h / H``."""

    def __init__(self, size: int | Sequence[int] = 320) -> None:
        self.size = to_pair(size)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> Sample:
        check_sample(image, boxes, labels)
        (h, w), (th, tw) = image.shape[-2:], self.size
        if (h, w) != (th, tw):
            image = F.interpolate(image[None], size=(th, tw), mode="bilinear",  # [1, 3, th, tw]
                                  align_corners=False)[0]  # [1, 3, th, tw] -> [3, th, tw]
            scale = torch.tensor([tw / w, th / h, tw / w, th / h], dtype=boxes.dtype)
            boxes = boxes * scale
        return image, boxes, labels

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class Compose:
    """Apply detection transforms in order, passing the same generator to each (v0.1
    ``Compose``)."""

    def __init__(self, transforms: Sequence[Callable[..., Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> Sample:
        for t in self.transforms:
            image, boxes, labels = t(image, boxes, labels, generator=generator)
        return image, boxes, labels

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def ssd_train_transform(size: int | Sequence[int] = 320) -> Compose:
    """v0.1 ``COCODetectionSSD.training_transforms``: SSD crop, photometric distortion,
    horizontal flip, resize to ``size`` (320)."""
    return Compose([SSDRandomCrop(), PhotometricDistort(), RandomHorizontalFlip(), Resize(size)])


def ssd_eval_transform(size: int | Sequence[int] = 320) -> Compose:
    """v0.1 ``COCODetectionSSD.validation_transforms`` (used for evaluation too, and by
    ``cvnets-eval-det --evaluation.detection.resize-input-images``): resize to ``size`` (320)."""
    return Compose([Resize(size)])
