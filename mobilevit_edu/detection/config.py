"""The configuration of the official SSDLite (paper §4.2.1, Table 1).

One frozen dataclass holds every knob of the detector: which feature maps the heads look at, how
many channels the heads project to, the anchors' aspect ratios and scales, the matcher's IoU
threshold and the loss's negative-to-positive ratio. The defaults are
``config/detection/ssd_mobilevit_*_320.yaml`` of apple/ml-cvnets v0.1. The post-processing
thresholds are not here: they differ between the official releases and are named after their
source in :data:`mobilevit_edu.detection.postprocess.POSTPROCESS`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSDConfig"]


@dataclass(frozen=True)
class SSDConfig:
    """The SSDLite knobs; the defaults are ``ssd_mobilevit_*_320.yaml`` of apple/ml-cvnets v0.1."""

    output_strides: tuple[int, ...] = (16, 32, 64, 128, 256, -1)  # -1: the global 1 x 1 map
    proj_channels: tuple[int, ...] = (512, 256, 256, 128, 128, 64)
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3),) * 5 + ((2,),)
    min_scale: float = 0.1
    max_scale: float = 1.05
    clip_anchors: bool = True  # clamp each anchor's (cx, cy, w, h) to [0, 1], as cvnets does
    center_variance: float = 0.1
    size_variance: float = 0.2
    iou_threshold: float = 0.5  # matching
    neg_pos_ratio: int = 3  # hard-negative mining

    def __post_init__(self) -> None:
        n = len(self.output_strides)
        if len(self.proj_channels) != n or len(self.aspect_ratios) != n:
            raise ValueError(
                f"output_strides ({n}), proj_channels ({len(self.proj_channels)}) and "
                f"aspect_ratios ({len(self.aspect_ratios)}) need one entry per feature map"
            )
        if tuple(self.output_strides[:2]) != (16, 32):
            raise ValueError("the first two maps are the backbone's OS 16 and 32 outputs")
        for a, b in zip(self.output_strides[2:], self.output_strides[3:]):
            if b != -1 and b != 2 * a:
                raise ValueError(f"each extra map halves the previous one; got OS {a} then {b}")

    @property
    def anchors_per_location(self) -> list[int]:
        """2 squares + 2 boxes per aspect ratio: ``[6, 6, 6, 6, 6, 4]`` for the defaults."""
        return [2 + 2 * len(ar) for ar in self.aspect_ratios]
