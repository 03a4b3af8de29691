"""SSD's feature maps and anchors (paper §4.2.1; SSD, Liu et al. 2016).

SSDLite looks at six maps of a 320 x 320 input: the backbone's output stride (OS) 16 and 32 maps,
three extra stride-2 layers (OS 64, 128, 256) and one global 1 x 1 map. At every location of
map ``k`` it places anchors (``(cx, cy, w, h)`` relative to the image, as in the official
``cvnets/misc/anchor_generator.py``): a square of side ``s_k``, a larger square of side
``sqrt(s_k s_{k+1})``, and for every aspect ratio ``r`` the boxes ``s_k sqrt(r) x s_k / sqrt(r)``
and its transpose; ``s = linspace(0.1, 1.05, 7)``; aspect ratios ``{2, 3}`` (``{2}`` on the
global map), so 6, 6, 6, 6, 6 and 4 anchors per location, 3,232 in all at 320 x 320.

"Clipping" (``clip=True``, the official default) clamps each number of ``(cx, cy, w, h)`` to
[0, 1], exactly as cvnets' ``torch.clamp(default_anchors_ctr, min=0.0, max=1.0)``. Centres are
inside the image anyway, so all it does is cap a width or height at the image side: at 320 x 320
it changes 18 of the 3,232 anchors (16 on the OS-256 map, 2 on the global map, whose
``s_k sqrt(r)`` exceeds 1). It does **not** clip the boxes to the image: 1,080 anchors still
reach past the border after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.nn.layers import to_pair

__all__ = ["MIN_IMAGE_SIZE", "ssd_feature_sizes", "ssd_anchors", "AnchorGenerator"]

# The smallest side for which every extra stride-2 layer halves a map larger than 1 x 1.
MIN_IMAGE_SIZE = 129


def _halve(n: int, times: int) -> int:
    """Size after ``times`` stride-2 'same'-padded 3 x 3 convs: ceil(n / 2) each time."""
    for _ in range(times):
        n = (n - 1) // 2 + 1
    return n


def ssd_feature_sizes(image_size: int | Sequence[int],
                      output_strides: Sequence[int] = SSDConfig.output_strides
                      ) -> list[tuple[int, int]]:
    """The ``(h, w)`` of the six feature maps for an input of ``image_size``.

    ``320 -> [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]``. Raises a ``ValueError`` when
    the image is too small for six distinct maps: the OS-128 map must be at least 2 x 2 so that
    the OS-256 layer still down-samples something (each side > 128 px).
    """
    h, w = to_pair(image_size, "image_size")
    if min(h, w) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image size {h} x {w} is too small for SSDLite's six feature maps (OS 16 ... 256 and "
            f"global): each side must be at least {MIN_IMAGE_SIZE} px so that the OS-128 map is "
            "larger than 1 x 1 (the paper uses 320 x 320)"
        )
    sizes = []
    for os_ in output_strides:
        if os_ == -1:
            sizes.append((1, 1))
        else:
            k = int(round(math.log2(os_)))
            sizes.append((_halve(h, k), _halve(w, k)))
    return sizes


def ssd_anchors(feature_sizes: Sequence[tuple[int, int]], aspect_ratios: Sequence[Sequence[float]],
                min_scale: float = 0.1, max_scale: float = 1.05, clip: bool = True) -> torch.Tensor:
    """All anchors of all feature maps, ``[N, 4]`` in ``(cx, cy, w, h)`` relative to the image.

    Map ``k`` (of ``K``) uses the scales ``s = linspace(min_scale, max_scale, K + 1)``: a square
    of side ``s_k``, a square of side ``sqrt(s_k s_{k+1})``, and for each aspect ratio ``r`` the
    boxes ``(s_k sqrt(r), s_k / sqrt(r))`` and ``(s_k / sqrt(r), s_k sqrt(r))``. The order is
    map by map, then row by row, column by column, then anchor by anchor: the order in which
    the heads emit their predictions. ``clip`` clamps each of ``(cx, cy, w, h)`` to [0, 1] (the
    official behaviour: it caps a side at 1, it does not cut the box at the image border)."""
    if len(feature_sizes) != len(aspect_ratios):
        raise ValueError("need one list of aspect ratios per feature map")
    scales = np.linspace(min_scale, max_scale, len(feature_sizes) + 1)
    out = []
    for k, ((h, w), ratios) in enumerate(zip(feature_sizes, aspect_ratios)):
        s, s_big = float(scales[k]), math.sqrt(scales[k] * scales[k + 1])
        shapes = [(s, s), (s_big, s_big)]
        for r in ratios:
            q = math.sqrt(r)
            shapes += [(s * q, s / q), (s / q, s * q)]
        wh = torch.tensor(shapes, dtype=torch.float32)  # [A, 2]
        cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                indexing="ij")  # [h, w] each
        centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2)  # [h, w, 2] -> [h*w, 1, 2]
        a = torch.cat([centres.expand(-1, len(shapes), 2),
                       wh[None].expand(h * w, -1, 2)], dim=-1)  # [h*w, A, 4]
        out.append(a.reshape(-1, 4))  # [h*w, A, 4] -> [h*w*A, 4]
    anchors = torch.cat(out)
    return anchors.clamp(0.0, 1.0) if clip else anchors


class AnchorGenerator:
    """SSD's anchors for a config, cached per set of feature-map sizes."""

    def __init__(self, config: SSDConfig = SSDConfig()) -> None:
        self.config = config
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def scales(self) -> list[float]:
        """``linspace(min_scale, max_scale, maps + 1)``: 0.1, 0.2583, ..., 1.05 by default."""
        c = self.config
        return [float(v) for v in np.linspace(c.min_scale, c.max_scale, len(c.output_strides) + 1)]

    @property
    def anchors_per_location(self) -> list[int]:
        return self.config.anchors_per_location

    def num_anchors(self, feature_sizes: Sequence[tuple[int, int]]) -> int:
        return sum(h * w * a for (h, w), a in zip(feature_sizes, self.anchors_per_location))

    def __call__(self, feature_sizes: Sequence[tuple[int, int]],
                 device: torch.device | str = "cpu") -> torch.Tensor:
        key = (tuple(tuple(s) for s in feature_sizes), str(device))
        if key not in self._cache:
            c = self.config
            self._cache[key] = ssd_anchors(feature_sizes, c.aspect_ratios, c.min_scale,
                                           c.max_scale, c.clip_anchors).to(device)
        return self._cache[key]
