"""The row types of the MobileViT paper's numbers (see :mod:`mobilevit_edu.book.paper`).

Chapter 01 and every chapter that compares with the paper read these rows. Each is a small frozen
dataclass holding only what the paper (Mehta & Rastegari, ICLR 2022, arXiv 2110.02178v2) prints:
``Entry`` (a model and its scores), ``Latency`` (one model on the three devices of Table 11),
``Ablation`` (one setting of one knob, App. C), ``TrainingCost`` (the sampler's efficiency, §3.3)
and ``MemoryRow`` (Table 8); a ``Table`` is one table or figure of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

__all__ = ["Entry", "Latency", "Ablation", "TrainingCost", "MemoryRow", "Row", "Table"]


@dataclass(frozen=True)
class Entry:
    """One model in one of the paper's comparisons.

    Only the columns the source reports are set; the rest stay ``None``. ``top1``/``top5`` are
    ImageNet-1k validation accuracy (%), ``map`` COCO mAP@0.50:0.05:0.95, ``miou`` PASCAL VOC
    (or COCO-mapped) mIOU, ``flops_g`` in G (the paper's "FLOPs" are multiply-adds),
    ``latency_ms`` on the device named in ``device``.
    """

    model: str
    source: str
    params_m: float | None = None
    top1: float | None = None
    top5: float | None = None
    map: float | None = None
    miou: float | None = None
    flops_g: float | None = None
    latency_ms: float | None = None
    device: str | None = None
    aug: str | None = None  # "basic" or "advanced" (Fig. 9b)
    setting: str = ""  # e.g. "patches (8,4,2)", "SSDLite-320", "classification"
    note: str = ""

    @property
    def metric(self) -> float | None:
        """The row's headline score: top-1, else mAP, else mIOU."""
        for value in (self.top1, self.map, self.miou):
            if value is not None:
                return value
        return None

    @property
    def is_mobilevit(self) -> bool:
        return self.model.startswith("MobileViT")


@dataclass(frozen=True)
class Latency:
    """One model's inference time on the three devices of the paper's Table 11 (ms, 256 x 256)."""

    model: str
    source: str
    iphone12_cpu_ms: float
    iphone12_neural_engine_ms: float
    v100_ms: float
    note: str = ""


@dataclass(frozen=True)
class Ablation:
    """One setting of one knob, all on MobileViT-S unless ``model`` says otherwise."""

    knob: str  # "weight decay", "fusion", "patch sizes", "label smoothing / EMA"
    value: str  # the setting, as the paper writes it
    top1: float
    source: str
    model: str = "MobileViT-S"
    params_m: float | None = None
    latency_ms: float | None = None
    is_default: bool = False  # the setting the released MobileViT uses
    note: str = ""


@dataclass(frozen=True)
class TrainingCost:
    """Training with the standard vs the multi-scale sampler (Fig. 7b, Table 5)."""

    model: str
    sampler: str  # "standard" or "multi-scale"
    source: str
    params_m: float | None = None
    epochs: int | None = None
    updates_k: float | None = None  # optimiser steps, thousands
    top1: float | None = None
    train_time_ks: float | None = None  # total training time, thousands of seconds
    sec_per_epoch: float | None = None
    note: str = ""


@dataclass(frozen=True)
class MemoryRow:
    """Table 8: memory at one output stride, MobileNetv2-1.0 vs MobileViT-XS (units not given)."""

    output_stride: int
    mobilenetv2: float
    mobilevit_xs: float
    source: str = "Table 8"


Row = Union[Entry, Latency, Ablation, TrainingCost, MemoryRow]


@dataclass(frozen=True)
class Table:
    """One table or figure of the paper: its rows plus what to keep in mind when comparing."""

    name: str
    source: str  # "Fig. 8b", "Table 3", ...
    caption: str
    rows: tuple[Row, ...]
    caveats: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

