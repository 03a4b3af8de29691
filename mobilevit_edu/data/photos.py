"""A real photograph for the visual chapters, and batches of crops of it.

Book chapters 01-08 and 14 (no paper section: the book's data plan). The plotting library ships
sample images, so no download is needed: ``sample_photo`` reads its Grace Hopper portrait
straight from the installed package's data folder (the file only; the plotting package itself
is never imported here, so the data layer stays free of drawing code). ``photo_batch`` makes a
batch of crops of it, which is what the cost and deployment chapters (07, 14) feed a randomly
initialised network so that its activations look like a real image's, not like noise's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["sample_photo_path", "sample_photo", "photo_batch"]

_PHOTO_PACKAGE = "matplotlib"  # the installed package whose sample data holds the photograph
_PHOTO_FILE = ("mpl-data", "sample_data", "grace_hopper.jpg")


def sample_photo_path() -> Path:
    """Where the sample photograph lies on disk (found without importing its package)."""
    spec = importlib.util.find_spec(_PHOTO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the sample photograph ships with {_PHOTO_PACKAGE}, which is not "
                                f"installed: pip install {_PHOTO_PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_PHOTO_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"no sample photograph at {path}; reinstall {_PHOTO_PACKAGE}")
    return path


def sample_photo(size: int = 256) -> torch.Tensor:
    """A real photograph (Grace Hopper), as a float tensor ``[3, size, size]`` in RGB, values in
    [0, 1], centre-cropped to a square and resized."""
    from PIL import Image

    with Image.open(sample_photo_path()) as im:
        img = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = torch.from_numpy(img[top : top + s, left : left + s]).permute(2, 0, 1)  # [H,W,3]->[3,H,W]
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,  # [1, 3, s, s]
                      align_corners=False)
    return x[0].clamp(0, 1)  # [1, 3, size, size] -> [3, size, size]


def photo_batch(batch: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    """``[batch, 3, size, size]``: random crops (and horizontal flips) of the sample photograph
    (``sample_photo``), so activations look like a real image's, not like noise's."""
    g = torch.Generator().manual_seed(seed)
    margin = size // 4
    photo = sample_photo(size + margin)
    crops = []
    for _ in range(batch):
        top, left = (int(v) for v in torch.randint(0, margin + 1, (2,), generator=g))
        crop = photo[:, top:top + size, left:left + size]
        crops.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
    return torch.stack(crops)  # batch x [3, size, size] -> [batch, 3, size, size]
