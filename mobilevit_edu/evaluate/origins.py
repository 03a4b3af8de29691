"""What each origin of the classification weights expects as input, and the transform that
gives it: the evaluation preprocessing of cvnets v0.1 (and Hugging Face), timm and the book.

Paper §4.1 evaluates a single 256 x 256 centre crop. The weights in every released layout come
from apple/ml-cvnets v0.1; what each origin's own evaluation fed them:

* **cvnets v0.1** (the ``.pt`` files; the Hugging Face ``apple/mobilevit-*`` files are converted
  from them and keep the same input). ``data/datasets/dataset_base.py::read_image`` reads with
  ``cv2.imread`` (BGR, never converted to RGB); ``data/datasets/classification/imagenet.py``
  ``validation_transforms`` resizes the shorter side to crop + 32 = 288 and centre-crops 256
  (``data/transforms/image.py``: ``Resize``, ``CenterCrop`` with offset ``(h - 256) // 2``);
  ``ToTensor`` divides by 255, no mean/std. Hugging Face's ``preprocessor_config.json`` says the
  same (``do_flip_channel_order``, ``shortest_edge`` 288, crop 256, rescale 1/255). We use
  :func:`mobilevit_edu.models.checkpoints.official_preprocess` (PIL bilinear, as Hugging Face's
  processor): OpenCV's ``INTER_LINEAR`` does not anti-alias when it shrinks and OpenCV decodes
  JPEGs with its own libjpeg, so expect differences of about a tenth of a point, not more.
* **timm** (``mobilevit_*.cvnets_in1k``). ``timm/models/mobilevit.py`` ``_cfg``: input
  ``(3, 256, 256)``, ``crop_pct`` 0.9, interpolation ``"bicubic"``, mean ``(0, 0, 0)``, std
  ``(1, 1, 1)``; ``timm/data/transforms_factory.py::transforms_imagenet_eval`` resizes the
  shorter side to ``floor(256 / 0.9) = 284`` (PIL bicubic), centre-crops 256 (torchvision's
  offset ``round((h - 256) / 2)``) and hands the network **RGB** (PIL), scaled to [0, 1].
  timm's ``results/results-imagenet.csv`` reports 78.298 / 74.618 / 68.936 top-1 (S / XS / XXS)
  with that pipeline, within 0.1 of cvnets' README (78.3 / 74.7 / 69.0). timm's source does not
  say whether its conversion flipped the stem's input channels (its ``regnet.py`` does say so for
  pycls' BGR weights), so a timm file is evaluated with timm's own pipeline, which reproduces
  timm's published number either way; ``channels="bgr"`` tries the other order. (Checked against
  huggingface/pytorch-image-models ``main`` at aa4b585, August 2026.)
* **ours** (:func:`~mobilevit_edu.models.checkpoints.save_checkpoint` of a book model): the book
  trains on RGB and validates with :func:`mobilevit_edu.data.transforms.eval_transform` (torch,
  anti-aliased bilinear, shorter side crop + 32, centre crop), so that is what it gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from mobilevit_edu.data.transforms import CenterCrop, Compose, Resize
from mobilevit_edu.models.checkpoints import official_preprocess

__all__ = ["Channels", "Preprocessing", "ORIGINS", "LAYOUT_ORIGIN", "preprocessing_for"]

Channels = Literal["bgr", "rgb"]


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, scale to [0, 1]
    (no mean/std: none of the origins uses one) and hand the network ``channels`` order.

    ``resizer``: ``"pil"`` (cvnets v0.1 / Hugging Face through ``official_preprocess``, timm)
    or ``"torch"`` (the book's ``eval_transform``). Call it on a PIL image, a uint8 ``[H, W, 3]``
    RGB array or a float RGB tensor ``[3, H, W]`` in [0, 1] (what
    :class:`mobilevit_edu.data.readers.ImageFolder` reads); returns float ``[3, crop, crop]``.
    """

    origin: str
    channels: Channels
    resize: int
    crop: int
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    resizer: Literal["pil", "torch"] = "pil"
    source: str = ""

    def describe(self) -> str:
        """One line, e.g. ``cvnets v0.1: BGR, shorter side 288 (PIL bilinear), centre crop 256``."""
        return (f"{self.origin}: {self.channels.upper()}, shorter side {self.resize} "
                f"({'PIL' if self.resizer == 'pil' else 'torch'} "
                f"{self.interpolation}), centre crop {self.crop}, [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "channels": self.channels, "resize": self.resize,
                "crop": self.crop, "interpolation": self.interpolation, "resizer": self.resizer,
                "source": self.source}

    def __call__(self, image: Any) -> torch.Tensor:
        if self.resizer == "torch":
            x = Compose([Resize(self.resize), CenterCrop(self.crop)])(_as_float(image))  # RGB
        elif self.interpolation == "bilinear":
            # cvnets v0.1 / Hugging Face: exactly official_preprocess, which returns BGR
            x = official_preprocess(_as_pil(image), self.resize, self.crop).flip(0)  # -> RGB
        else:
            x = _timm_resize_crop(_as_pil(image), self.resize, self.crop)  # RGB
        return x.flip(0).contiguous() if self.channels == "bgr" else x  # [3, h, w] RGB -> BGR


def _as_pil(image: Any):
    """PIL image, uint8 [H, W, 3] array or float [3, H, W] tensor in [0, 1] -> PIL RGB image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError("expected a float RGB tensor [3, H, W] in [0, 1], "
                             f"got {tuple(image.shape)}")
        # load_rgb divided uint8 by 255: rounding back recovers the file's bytes exactly
        array = (image.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        return Image.fromarray(array.permute(1, 2, 0).numpy())  # [3, H, W] -> [H, W, 3]
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected a PIL image, a uint8 [H, W, 3] RGB array or a float [3, H, W] "
                         f"tensor, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _as_float(image: Any) -> torch.Tensor:
    """Any accepted image -> float RGB ``[3, H, W]`` in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        return image
    array = np.asarray(_as_pil(image), dtype=np.float32) / 255.0  # [H, W, 3]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # [H, W, 3] -> [3, H, W]


def _timm_resize_crop(image, resize: int, crop: int) -> torch.Tensor:
    """timm's eval transform: torchvision ``Resize(resize, BICUBIC)`` (shorter side, the longer
    one ``int(resize * long / short)``), ``CenterCrop(crop)``, ``ToTensor`` -> RGB [3, crop, crop]."""
    from PIL import Image

    w, h = image.size
    new_w, new_h = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)  # [crop, crop, 3] RGB
    return x.permute(2, 0, 1).contiguous()  # [H, W, 3] -> [3, H, W]


ORIGINS: dict[str, Preprocessing] = {
    "cvnets v0.1": Preprocessing(
        "cvnets v0.1", "bgr", 288, 256, "bilinear", "pil",
        "apple/ml-cvnets cvnets-v0.1: cv2.imread (BGR), Resize(crop + 32), CenterCrop, /255"),
    "timm": Preprocessing(
        "timm", "rgb", 284, 256, "bicubic", "pil",
        "timm/models/mobilevit.py _cfg: crop_pct 0.9, bicubic, mean 0, std 1; PIL RGB"),
    "ours": Preprocessing(
        "ours", "rgb", 288, 256, "bilinear", "torch",
        "mobilevit_edu.data.transforms.eval_transform: Resize(crop + 32), CenterCrop, RGB"),
}

# checkpoint layout (models.checkpoints.detect_layout) -> the origin whose preprocessing it wants
LAYOUT_ORIGIN: dict[str, str] = {"cvnets": "cvnets v0.1", "hf": "cvnets v0.1", "timm": "timm",
                                 "ours": "ours"}


def preprocessing_for(layout: str, *, channels: Channels | None = None,
                      image_size: int | None = None) -> Preprocessing:
    """The evaluation preprocessing for weights of ``layout`` (``"hf"``, ``"timm"``,
    ``"cvnets"``, ``"ours"``), optionally with another channel order or crop ``image_size``
    (the shorter side then scales as the origin does: crop + 32, or crop / 0.9 for timm)."""
    if layout not in LAYOUT_ORIGIN:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUT_ORIGIN)}")
    pre = ORIGINS[LAYOUT_ORIGIN[layout]]
    if channels is not None:
        if channels not in ("bgr", "rgb"):
            raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
        pre = replace(pre, channels=channels)
    if image_size is not None:
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 (MobileViT's output stride), "
                             f"got {image_size}")
        resize = math.floor(image_size / 0.9) if pre.origin == "timm" else image_size + 32
        pre = replace(pre, crop=int(image_size), resize=int(resize))
    return pre
