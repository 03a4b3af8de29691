"""A real photograph for the visual chapters (the book's data plan: matplotlib ships sample
images, so no download is needed). Used by chapters 01-08 and 14 to show what a block, an
attention head or a receptive field does to a real image."""

from __future__ import annotations

__all__ = ["sample_photo"]


def sample_photo(size: int = 256):
    """A real photograph shipped with matplotlib (Grace Hopper), as a float tensor
    ``[3, size, size]`` in RGB, values in [0, 1], centre-cropped to a square and resized."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = torch.from_numpy(img[top : top + s, left : left + s]).permute(2, 0, 1)  # [H,W,3]->[3,H,W]
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)


