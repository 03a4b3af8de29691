"""Unfolding a feature map into a sequence of patches, and folding it back.

Paper: §3.1, Fig. 1b and Eq. (1). The MobileViT block unfolds X_L in R^{H x W x d} into
X_U in R^{P x N x d}, where P = w * h is the number of pixels in a patch and N = HW / P the
number of patches; the transformer then relates, for every pixel position p in 1..P, the N pixels
that sit at that position in every patch ("inter-patch" relations). Folding inverts it exactly,
so "neither the patch order nor the spatial order of pixels within each patch is lost".

Three implementations of the same map, from obviously right to fast:

* ``unfold_loop`` / ``fold_loop``: Python loops over patches and positions (slow, for teaching);
* ``unfold_einops`` / ``fold_einops``: one ``einops.rearrange`` each, which says the idea;
* ``unfold`` / ``fold``: the official code's reshapes and transposes (collapsed into one permute,
  which gives the same tensor with one copy instead of two), with the bilinear resize the
  official code applies when H or W is not a multiple of the patch size, undone by ``fold``.
  This is the one the MobileViT block uses.

All three produce ``[B*P, N, C]`` in the same order: row index ``b*P + p`` with ``p = i*pw + j``
for the pixel (i, j) inside the patch, column ``n = r*nw + c`` for the patch in row r, column c.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange

from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "PatchGrid",
    "patch_grid",
    "unfold",
    "fold",
    "unfold_loop",
    "fold_loop",
    "unfold_einops",
    "fold_einops",
]


class PatchGrid(NamedTuple):
    """What ``fold`` needs to undo ``unfold``: the input's size and the patch grid used."""

    batch: int
    channels: int
    height: int  # the feature map's own size ...
    width: int
    new_height: int  # ... and the size after resizing to a multiple of the patch size
    new_width: int
    patch_h: int
    patch_w: int

    @property
    def patch_area(self) -> int:  # P
        return self.patch_h * self.patch_w

    @property
    def num_patches(self) -> int:  # N
        return (self.new_height // self.patch_h) * (self.new_width // self.patch_w)

    @property
    def resized(self) -> bool:
        return (self.new_height, self.new_width) != (self.height, self.width)


def patch_grid(x: torch.Tensor, patch_size: int | tuple[int, int]) -> PatchGrid:
    """The grid ``unfold`` will use for ``x``: H and W rounded up to multiples of the patch."""
    if x.dim() != 4:
        raise ValueError(
            f"expected a feature map [B, C, H, W], got a tensor with shape {tuple(x.shape)}"
        )
    ph, pw = to_pair(patch_size, "patch size")
    b, c, h, w = x.shape
    new_h, new_w = math.ceil(h / ph) * ph, math.ceil(w / pw) * pw
    return PatchGrid(b, c, h, w, new_h, new_w, ph, pw)


def _require_divisible(x: torch.Tensor, ph: int, pw: int) -> None:
    h, w = x.shape[-2:]
    if h % ph or w % pw:
        raise ValueError(
            f"feature map {h}x{w} is not divisible by the patch size {ph}x{pw}; "
            "use unfold(), which resizes, or crop/resize the input first"
        )


def _check_patches(patches: torch.Tensor, grid: PatchGrid) -> None:
    expected = (grid.batch * grid.patch_area, grid.num_patches, grid.channels)
    if tuple(patches.shape) != expected:
        raise ValueError(
            f"patches have shape {tuple(patches.shape)} but the grid {grid} expects "
            f"[B*P, N, C] = {list(expected)}"
        )


# --- 1. loops: obviously right ---------------------------------------------------------------
def unfold_loop(x: torch.Tensor, patch_size: int | tuple[int, int] = 2) -> torch.Tensor:
    """``[B, C, H, W] -> [B*P, N, C]`` by visiting every patch and every pixel in it."""
    ph, pw = to_pair(patch_size, "patch size")
    if x.dim() != 4:
        raise ValueError(f"expected [B, C, H, W], got shape {tuple(x.shape)}")
    _require_divisible(x, ph, pw)
    b, c, h, w = x.shape
    nh, nw = h // ph, w // pw
    out = x.new_empty(b * ph * pw, nh * nw, c)
    for bi in range(b):
        for r in range(nh):  # patch row
            for col in range(nw):  # patch column
                n = r * nw + col  # which patch
                for i in range(ph):  # pixel row inside the patch
                    for j in range(pw):  # pixel column inside the patch
                        p = i * pw + j  # which position inside the patch
                        out[bi * ph * pw + p, n] = x[bi, :, r * ph + i, col * pw + j]
    return out


def fold_loop(patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """``[B*P, N, C] -> [B, C, H, W]``: put every pixel back where ``unfold_loop`` found it."""
    _check_patches(patches, grid)
    b, c, ph, pw = grid.batch, grid.channels, grid.patch_h, grid.patch_w
    nh, nw = grid.new_height // ph, grid.new_width // pw
    x = patches.new_empty(b, c, grid.new_height, grid.new_width)
    for bi in range(b):
        for r in range(nh):
            for col in range(nw):
                for i in range(ph):
                    for j in range(pw):
                        x[bi, :, r * ph + i, col * pw + j] = patches[
                            bi * ph * pw + i * pw + j, r * nw + col
                        ]
    return x


# --- 2. einops: the idea in one line ---------------------------------------------------------
def unfold_einops(x: torch.Tensor, patch_size: int | tuple[int, int] = 2) -> torch.Tensor:
    """``[B, C, H, W] -> [B*P, N, C]`` with one rearrange."""
    ph, pw = to_pair(patch_size, "patch size")
    _require_divisible(x, ph, pw)
    # [B, C, nh*ph, nw*pw] -> [B*ph*pw, nh*nw, C]
    return rearrange(x, "b c (nh ph) (nw pw) -> (b ph pw) (nh nw) c", ph=ph, pw=pw)


def fold_einops(patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """``[B*P, N, C] -> [B, C, H, W]`` with the inverse rearrange."""
    _check_patches(patches, grid)
    # [B*ph*pw, nh*nw, C] -> [B, C, nh*ph, nw*pw]
    return rearrange(
        patches, "(b ph pw) (nh nw) c -> b c (nh ph) (nw pw)",
        b=grid.batch, ph=grid.patch_h, pw=grid.patch_w, nh=grid.new_height // grid.patch_h,
    )


# --- 3. the official reshapes, with the resize path --------------------------------------------
def unfold(
    x: torch.Tensor, patch_size: int | tuple[int, int] = 2
) -> tuple[torch.Tensor, PatchGrid]:
    """``[B, C, H, W] -> [B*P, N, C]`` as the official code does it; returns the grid for ``fold``.

    If H or W is not a multiple of the patch size, the map is first resized bilinearly
    (``align_corners=False``) up to the next multiple, e.g. 7 x 7 -> 8 x 8 at the last stage of a
    224 x 224 input; ``fold`` resizes back. Padding would need masking in attention; resizing
    does not.
    """
    grid = patch_grid(x, patch_size)
    b, c, ph, pw = grid.batch, grid.channels, grid.patch_h, grid.patch_w
    if grid.resized:
        x = F.interpolate(
            x, size=(grid.new_height, grid.new_width), mode="bilinear", align_corners=False
        )
    nh, nw = grid.new_height // ph, grid.new_width // pw
    n, p = nh * nw, ph * pw
    # The official code takes five steps, [B*C*nh, ph, nw, pw] -> [B*C*nh, nw, ph, pw] ->
    # [B, C, N, P] -> [B, P, N, C] -> [B*P, N, C], and copies the data twice on the way.
    # The same reordering as one permute copies it once (and reads channels-last memory well):
    x = x.reshape(b, c, nh, ph, nw, pw)  # [B, C, H, W] -> [B, C, nh, ph, nw, pw] (a view)
    x = x.permute(0, 3, 5, 2, 4, 1)  # -> [B, ph, pw, nh, nw, C]
    x = x.reshape(b * p, n, c)  # -> [B*P, N, C] (the one copy)
    return x, grid


def fold(
    patches: torch.Tensor, grid: PatchGrid, *, channels_last: bool = False
) -> torch.Tensor:
    """``[B*P, N, C] -> [B, C, H, W]``, the exact inverse of ``unfold`` (up to its resize).

    ``channels_last=True`` writes the map in NHWC memory order (still indexed ``[B, C, H, W]``),
    which is what a channels-last network's next convolution wants; the values are the same."""
    _check_patches(patches, grid)
    b, c, ph, pw = grid.batch, grid.channels, grid.patch_h, grid.patch_w
    nh, nw = grid.new_height // ph, grid.new_width // pw
    x = patches.reshape(b, ph, pw, nh, nw, c)  # [B*P, N, C] -> [B, ph, pw, nh, nw, C] (a view)
    if channels_last:
        x = x.permute(0, 3, 1, 4, 2, 5)  # -> [B, nh, ph, nw, pw, C]
        x = x.reshape(b, nh * ph, nw * pw, c)  # -> [B, H', W', C]
        x = x.permute(0, 3, 1, 2)  # -> [B, C, H', W'] (a view: NHWC in memory)
    else:
        x = x.permute(0, 5, 3, 1, 4, 2)  # -> [B, C, nh, ph, nw, pw]
        x = x.reshape(b, c, nh * ph, nw * pw)  # -> [B, C, H', W']
    if grid.resized:
        x = F.interpolate(
            x, size=(grid.height, grid.width), mode="bilinear", align_corners=False
        )
    return x
