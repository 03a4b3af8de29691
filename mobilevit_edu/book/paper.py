"""The MobileViT paper's reported numbers, as data.

Paper: S. Mehta and M. Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
Vision Transformer", ICLR 2022, arXiv 2110.02178 **v2**.

Every number below is *copied* from the paper's tables and figures (or, where the ``source`` says
so, from the MobileViTv2 paper [V2] arXiv 2206.02680, the timm model cards, or the README of the
official code apple/ml-cvnets at tag ``cvnets-v0.1``). Nothing here is measured by this book; the
chapters put these numbers *beside* what the book measures, labelled "paper (Table X)" against
"this book". Caveats that matter when comparing (e.g. "the paper's FLOPs are at 224 x 224, per
apple/ml-cvnets issue #47") travel with the rows as ``note`` strings and with each table as
``Table.caveats``.

Two kinds of data live here:

* ``TABLES``: the paper's tables and figures, one ``Table`` each, keyed by a short name
  (``"fig8b"``, ``"table3"``, ...); ``table(name)`` returns its rows. Rows are small frozen
  dataclasses: ``Entry`` (a model and its scores), ``Latency`` (one model on three devices),
  ``Ablation`` (one setting of one knob), ``TrainingCost`` (sampler efficiency), ``MemoryRow``.
* Architecture facts the book checks exactly: parameter counts, MACs, the multi-scale sampler's
  resolutions and batch sizes. These come from counting the official architecture, not from the
  paper's rounded "1.3 M / 2.3 M / 5.6 M", and the book's models must reproduce them to the unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

__all__ = [
    "PAPER",
    "Entry",
    "Latency",
    "Ablation",
    "TrainingCost",
    "MemoryRow",
    "Table",
    "TABLES",
    "table",
    "table_names",
    "find",
    "PARAMS",
    "PARAMS_M",
    "DEEPLABV3_PARAMS",
    "SSDLITE_PARAMS_M",
    "MACS_G",
    "MACS_256_G",
    "FVCORE_MACS_256",
    "FVCORE_MACS_XS_224",
    "REPORTED_MACS",
    "SAMPLER_RESOLUTIONS",
    "SAMPLER_BASE",
    "SAMPLER_BATCH_V01",
    "SAMPLER_BATCH_CURRENT",
    "SAMPLER_N_GPUS",
]

PAPER = (
    "S. Mehta, M. Rastegari. MobileViT: Light-weight, General-purpose, and Mobile-friendly "
    "Vision Transformer. ICLR 2022. arXiv:2110.02178v2"
)


# --- row types ---------------------------------------------------------------------------------
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


def _entries(source: str, rows: list[tuple], **common) -> tuple[Entry, ...]:
    """``(model, params_m, top1)`` tuples -> ``Entry`` rows sharing ``source`` and ``common``."""
    return tuple(Entry(m, source, params_m=p, top1=t, **common) for m, p, t in rows)


# --- 1. classification -------------------------------------------------------------------------
HEADLINE = Table(
    "headline",
    "§4.1 / Fig. 8",
    "MobileViT on ImageNet-1k (256 x 256, single crop, basic augmentation)",
    (
        Entry("MobileViT-XXS", "§4.1", params_m=1.3, top1=69.0, top5=88.9),
        Entry("MobileViT-XS", "§4.1", params_m=2.3, top1=74.8, top5=92.3),
        Entry("MobileViT-S", "§4.1", params_m=5.6, top1=78.4, top5=94.1),
    ),
)

FIG8B = Table(
    "fig8b",
    "Fig. 8b",
    "Light-weight CNNs at about 2.5 M parameters vs MobileViT-XS (ImageNet-1k top-1)",
    _entries(
        "Fig. 8b",
        [
            ("MobileNetv1", 2.6, 68.4),
            ("MobileNetv2", 2.6, 69.8),
            ("MobileNetv3", 2.5, 67.4),
            ("ShuffleNetv2", 2.3, 69.4),
            ("ESPNetv2", 2.3, 69.2),
            ("MobileViT-XS", 2.3, 74.8),
        ],
    ),
    caveats=("CNN numbers are as reported by their papers, with their own training recipes.",),
)

FIG8C = Table(
    "fig8c",
    "Fig. 8c",
    "Heavy-weight CNNs vs MobileViT-S (ImageNet-1k top-1)",
    _entries(
        "Fig. 8c",
        [
            ("DenseNet-169", 14.0, 76.2),
            ("EfficientNet-B0", 5.3, 76.3),
            ("ResNet-101", 44.5, 77.4),
            ("ResNet-101-SE", 49.3, 77.6),
            ("MobileViT-S", 5.6, 78.4),
        ],
    ),
    caveats=("CNN numbers are as reported by their papers, with their own training recipes.",),
)

_FIG9B = [  # (model, aug, params M, top-1), in the paper's row order R1..R20
    ("DeIT", "basic", 5.7, 68.7),
    ("T2T", "advanced", 4.3, 71.7),
    ("DeIT", "advanced", 5.7, 72.2),
    ("PiT", "basic", 10.6, 72.4),
    ("Mobile-former", "advanced", 4.6, 72.8),
    ("PiT", "advanced", 4.9, 73.0),
    ("CrossViT", "advanced", 6.9, 73.4),
    ("MobileViT-XS", "basic", 2.3, 74.8),
    ("CeiT", "advanced", 6.4, 76.4),
    ("DeIT", "advanced", 10.0, 75.9),
    ("T2T", "advanced", 6.9, 76.5),
    ("ViL", "advanced", 6.7, 76.7),
    ("LocalVit", "advanced", 7.7, 76.1),
    ("Mobile-former", "advanced", 9.4, 76.7),
    ("PVT", "advanced", 13.2, 75.1),
    ("ConViT", "advanced", 10.0, 76.7),
    ("PiT", "advanced", 10.6, 78.1),
    ("BoTNet", "basic", 20.8, 77.0),
    ("BoTNet", "advanced", 20.8, 78.3),
    ("MobileViT-S", "basic", 5.6, 78.4),
]
FIG9B = Table(
    "fig9b",
    "Fig. 9b",
    "ViT-based models vs MobileViT (ImageNet-1k top-1); Aug = basic or advanced augmentation",
    tuple(
        Entry(m, "Fig. 9b", params_m=p, top1=t, aug=a, setting=f"R{i}")
        for i, (m, a, p, t) in enumerate(_FIG9B, 1)
    ),
    caveats=(
        "'basic' = random resized crop + horizontal flip; 'advanced' adds e.g. mixup, CutMix, "
        "RandAugment, random erasing (the paper's point: MobileViT needs only basic).",
        "Model names as the paper spells them (DeIT, LocalVit).",
    ),
)

# --- 2. detection and segmentation -------------------------------------------------------------
TABLE1A = Table(
    "table1a",
    "Table 1a",
    "SSDLite-320 on MS-COCO val: light-weight backbones (mAP@0.50:0.05:0.95)",
    tuple(
        Entry(m, "Table 1a", params_m=p, map=v, setting="SSDLite-320")
        for m, p, v in [
            ("MobileNetv3", 4.9, 22.0),
            ("MobileNetv2", 4.3, 22.1),
            ("MobileNetv1", 5.1, 22.2),
            ("MixNet", 4.5, 22.3),
            ("MNASNet", 4.9, 23.0),
            ("MobileViT-XS", 2.7, 24.8),
            ("MobileViT-S", 5.7, 27.7),
        ]
    ),
    caveats=("XXS is not in Table 1; the cvnets README gives SSDLite-XXS 1.8 M / 19.9 mAP.",),
)

TABLE1B = Table(
    "table1b",
    "Table 1b",
    "SSD-300 with heavy backbones vs SSDLite-320 MobileViT-S on MS-COCO val (mAP)",
    (
        Entry("VGG", "Table 1b", params_m=35.6, map=25.1, setting="SSD-300"),
        Entry("ResNet50", "Table 1b", params_m=22.9, map=25.2, setting="SSD-300"),
        Entry("MobileViT-S", "Table 1b", params_m=5.7, map=27.7, setting="SSDLite-320"),
    ),
)

TABLE2 = Table(
    "table2",
    "Table 2",
    "DeepLabv3 on PASCAL VOC 2012 val (mIOU)",
    tuple(
        Entry(m, "Table 2", params_m=p, miou=v, setting="DeepLabv3")
        for m, p, v in [
            ("MobileNetv1", 11.2, 75.3),
            ("MobileNetv2", 4.5, 75.7),
            ("MobileViT-XXS", 1.9, 73.6),
            ("MobileViT-XS", 2.9, 77.1),
            ("ResNet-101", 58.2, 80.5),
            ("MobileViT-S", 6.4, 79.1),
        ]
    ),
    caveats=("XXS: paper 73.6 vs released checkpoint 72.8 (apple/ml-cvnets issue #12).",),
)

TABLE12 = Table(
    "table12",
    "Table 12",
    "DeepLabv3 evaluated on COCO val mapped to the VOC classes (mIOU)",
    tuple(
        Entry(m, "Table 12", params_m=p, miou=v)
        for m, p, v in [
            ("LR-ASPP-MNv3-L", 3.2, 57.9),
            ("FCN-MNv3-L", 5.1, 57.8),
            ("DeepLabv3-MNv3-L", 11.0, 60.3),
            ("MobileViT-XXS", 1.9, 46.7),
            ("MobileViT-XS", 2.9, 57.4),
            ("MobileViT-S", 6.4, 65.4),
        ]
    ),
)

# --- 3. FLOPs and latency ----------------------------------------------------------------------
_FLOPS_AT_224 = (
    "paper FLOPs are at 224x224 (author, apple/ml-cvnets issue #47); time and top-1 at 256x256"
)
_NE = "iPhone12 Neural Engine"
TABLE3 = Table(
    "table3",
    "Table 3",
    "FLOPs and inference time on the iPhone 12 Neural Engine (CoreML, mean of 100 runs, 256x256)",
    (
        Entry("MobileNetv2", "Table 3", params_m=3.5, flops_g=0.3, latency_ms=0.92, top1=73.3,
              device=_NE, note="marked with a dagger in the paper; 73.3 is the multi-scale "
              "MobileNetv2 of Table 5"),
        Entry("DeIT", "Table 3", params_m=5.7, flops_g=1.3, latency_ms=10.99, top1=72.2,
              device=_NE),
        Entry("PiT", "Table 3", params_m=4.9, flops_g=0.7, latency_ms=10.56, top1=73.0, device=_NE),
        Entry("MobileViT-XS", "Table 3", params_m=2.3, flops_g=0.7, latency_ms=5.93, top1=73.8,
              device=_NE, setting="patches (8,4,2)"),
        Entry("MobileViT-XS", "Table 3", params_m=2.3, flops_g=0.7, latency_ms=7.28, top1=74.8,
              device=_NE, setting="patches (2,2,2)"),
    ),
    caveats=(_FLOPS_AT_224,),
)

TABLE11 = Table(
    "table11",
    "Table 11",
    "Inference time (ms) on iPhone12 CPU, iPhone12 Neural Engine and an NVIDIA V100 GPU",
    (
        Latency("MobileNetv2", "Table 11", 7.50, 0.92, 0.31),
        Latency("DeIT", "Table 11", 28.15, 10.99, 0.43),
        Latency("PiT", "Table 11", 24.03, 10.56, 0.46),
        Latency("MobileViT-XS", "Table 11", 17.86, 7.28, 0.62,
                note="V100 0.47 ms with PyTorch Unfold/Fold instead of reshapes"),
    ),
    caveats=("On GPU MobileViT is slower than the CNN (author, apple/ml-cvnets issue #22).",),
)

TABLE10B = Table(
    "table10b",
    "Table 10b",
    "SSDLite-320 cost and accuracy (iPhone12 Neural Engine)",
    (
        Entry("MobileNetv2", "Table 10b", params_m=4.3, flops_g=0.8, latency_ms=2.3, map=22.1,
              device=_NE, setting="SSDLite-320"),
        Entry("MobileViT-XS", "Table 10b", params_m=2.7, flops_g=1.6, latency_ms=10.7, map=23.1,
              device=_NE, setting="SSDLite-320, patches (8,4,2)"),
        Entry("MobileViT-XS", "Table 10b", params_m=2.7, flops_g=1.6, latency_ms=12.6, map=24.8,
              device=_NE, setting="SSDLite-320, patches (2,2,2)"),
    ),
    caveats=("The input size of these FLOPs was not recovered; the paper's classification FLOPs "
             "are at 224x224 (apple/ml-cvnets issue #47).",),
)

TABLE10C = Table(
    "table10c",
    "Table 10c",
    "DeepLabv3 at 512x512, cost and accuracy (iPhone12 Neural Engine)",
    (
        Entry("MobileNetv2", "Table 10c", params_m=4.3, flops_g=5.8, latency_ms=6.5, miou=75.7,
              device=_NE, setting="DeepLabv3-512"),
        Entry("MobileViT-XS", "Table 10c", params_m=2.9, flops_g=5.7, latency_ms=25.1, miou=75.4,
              device=_NE, setting="DeepLabv3-512, patches (8,4,2)?",
              note="patch label lost in the text copy; (8,4,2) presumed, unverified"),
        Entry("MobileViT-XS", "Table 10c", params_m=2.9, flops_g=5.7, latency_ms=32.3, miou=77.1,
              device=_NE, setting="DeepLabv3-512, patches (2,2,2)"),
    ),
    caveats=("The patch-size labels of the two XS rows were not recovered; "
             "(8,4,2) then (2,2,2) is presumed by analogy with Tables 3 and 10b.",),
)

# --- 4. the multi-scale sampler ----------------------------------------------------------------
FIG7B = Table(
    "fig7b",
    "Fig. 7b",
    "Training efficiency: standard vs multi-scale sampler (300 epochs)",
    (
        TrainingCost("MobileNetv2", "standard", "Fig. 7b", updates_k=375, sec_per_epoch=380),
        TrainingCost("MobileNetv2", "multi-scale", "Fig. 7b", updates_k=232, sec_per_epoch=270),
    ),
    caveats=("The caption naming the model was not recovered; the update counts equal Table 5's "
             "MobileNetv2-1.0 rows, so MobileNetv2 is presumed.",),
)

TABLE5 = Table(
    "table5",
    "Table 5",
    "The multi-scale sampler is generic: ResNet-50 and MobileNetv2 on ImageNet-1k",
    (
        TrainingCost("ResNet-50", "standard", "Table 5", params_m=25, top1=76.2,
                     note="PyTorch's reported number"),
        TrainingCost("ResNet-50", "standard", "Table 5", params_m=25, epochs=150, updates_k=187,
                     top1=77.1, train_time_ks=54, note="the authors' reproduction; 1.35x slower"),
        TrainingCost("ResNet-50", "multi-scale", "Table 5", params_m=25, epochs=150,
                     updates_k=116, top1=78.6, train_time_ks=40),
        TrainingCost("MobileNetv2-1.0", "standard", "Table 5", params_m=3.5, top1=71.9,
                     note="PyTorch's reported number"),
        TrainingCost("MobileNetv2-1.0", "standard", "Table 5", params_m=3.5, epochs=300,
                     updates_k=375, top1=72.1, train_time_ks=78,
                     note="the authors' reproduction; 1.16x slower"),
        TrainingCost("MobileNetv2-1.0", "multi-scale", "Table 5", params_m=3.5, epochs=300,
                     updates_k=232, top1=73.3, train_time_ks=67),
    ),
    caveats=("The text says the sampler also adds about 0.5% to MobileViT at every size "
             "(Fig. 12); the per-model values of Fig. 11/12 were not recovered.",),
)

# --- 5. ablations (App. C; MobileViT-S) --------------------------------------------------------
FIG13 = Table(
    "fig13",
    "Fig. 13",
    "Effect of L2 weight decay on MobileViT-S (ImageNet-1k top-1)",
    tuple(
        Ablation("weight decay", v, t, "Fig. 13", is_default=(v == "0.01"))
        for v, t in [("0.1", 76.5), ("0.01", 78.4), ("0.001", 77.6), ("0.0001", 77.4)]
    ),
)

FIG14 = Table(
    "fig14",
    "Fig. 14",
    "Effect of the skip connection + fusion (concat) in the MobileViT block, MobileViT-S",
    (
        Ablation("fusion", "without", 77.9, "Fig. 14"),
        Ablation("fusion", "with", 78.4, "Fig. 14", is_default=True),
    ),
)

TABLE6 = Table(
    "table6",
    "Table 6",
    "Patch sizes h = w at output strides 8, 16, 32, MobileViT-S (time on iPhone12 Neural Engine)",
    (
        Ablation("patch sizes", "2,2,2", 78.4, "Table 6", params_m=5.7, latency_ms=9.85,
                 is_default=True),
        Ablation("patch sizes", "3,3,3", 78.5, "Table 6", params_m=5.7, latency_ms=14.69,
                 note="needs padding or resizing (dagger in the paper)"),
        Ablation("patch sizes", "4,4,4", 77.6, "Table 6", params_m=5.7, latency_ms=8.23),
        Ablation("patch sizes", "8,4,2", 77.3, "Table 6", params_m=5.7, latency_ms=8.20),
    ),
)

TABLE7 = Table(
    "table7",
    "Table 7",
    "Label smoothing (LS) and EMA for MobileViT-S (ImageNet-1k top-1)",
    (
        Ablation("label smoothing / EMA", "neither", 78.0, "Table 7"),
        Ablation("label smoothing / EMA", "LS", 78.3, "Table 7"),
        Ablation("label smoothing / EMA", "LS + EMA", 78.4, "Table 7", is_default=True),
    ),
)

TABLE8 = Table(
    "table8",
    "Table 8",
    "Memory per output stride, MobileNetv2-1.0 vs MobileViT-XS (top-1 73.3 vs 74.8)",
    tuple(MemoryRow(os_, a, b) for os_, a, b in
          [(2, 400, 784), (4, 200, 294), (8, 100, 98), (16, 62, 31), (32, 32, 37)]),
    caveats=("The units were not given in the text copy of the paper.",),
)

# --- 6. released checkpoints and later sources -------------------------------------------------
_README = "cvnets-v0.1 README"
RELEASED = Table(
    "released",
    _README,
    "Numbers of the released checkpoints (apple/ml-cvnets examples/README-mobilevit.md at v0.1)",
    (
        Entry("MobileViT-XXS", _README, params_m=1.3, top1=69.0, setting="classification"),
        Entry("MobileViT-XS", _README, params_m=2.3, top1=74.7, setting="classification"),
        Entry("MobileViT-S", _README, params_m=5.6, top1=78.3, setting="classification"),
        Entry("MobileViT-XXS", _README, params_m=1.8, map=19.9, setting="SSDLite-320"),
        Entry("MobileViT-XS", _README, params_m=2.7, map=24.8, setting="SSDLite-320"),
        Entry("MobileViT-S", _README, params_m=5.7, map=27.9, setting="SSDLite-320"),
        Entry("MobileViT-XXS", _README, params_m=1.9, miou=72.8, setting="DeepLabv3"),
        Entry("MobileViT-XS", _README, params_m=2.9, miou=77.1, setting="DeepLabv3"),
        Entry("MobileViT-S", _README, params_m=6.4, miou=79.3, setting="DeepLabv3"),
    ),
    caveats=(
        "These differ slightly from the paper (e.g. XS top-1 74.7 vs 74.8, XXS mIOU 72.8 vs 73.6).",
        "The v0.1 weights expect BGR input in [0, 1] (OpenCV pipeline, no mean/std).",
    ),
)

V2_QUOTED = Table(
    "v2_quoted",
    "[V2] Tables 2, 4; timm cards",
    "MobileViT (v1) numbers quoted by the MobileViTv2 paper (arXiv 2206.02680) and timm",
    (
        Entry("MobileViT-XXS", "[V2] Table 2", params_m=1.3, flops_g=0.4, top1=69.0,
              latency_ms=4.8, note="256x256; 4225 img/s on V100 (batch 128)"),
        Entry("MobileViT-S", "[V2] Table 2", params_m=5.6, flops_g=2.0, top1=78.4,
              note="256x256; 1986 img/s on V100 (batch 128); latency cell unreadable in the text "
              "copy ('3.4', suspicious), left out"),
        Entry("MobileViT-XXS", "[V2] Table 4", params_m=1.7, flops_g=0.9, map=19.9,
              setting="SSDLite-320", note="2246 img/s"),
        Entry("MobileViT-XXS", "timm card", params_m=1.3, flops_g=0.4, note="GMACs at 256x256"),
        Entry("MobileViT-XS", "timm card", params_m=2.3, flops_g=1.1, note="GMACs at 256x256"),
    ),
    caveats=("[V2] says removing heads (4 -> 1) in MobileViTv1-S costs 0.7% top-1 (App. E).",),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        HEADLINE, FIG8B, FIG8C, FIG9B, TABLE1A, TABLE1B, TABLE2, TABLE12, TABLE3, TABLE11,
        TABLE10B, TABLE10C, FIG7B, TABLE5, FIG13, FIG14, TABLE6, TABLE7, TABLE8, RELEASED,
        V2_QUOTED,
    )
}


def table_names() -> list[str]:
    """The keys of ``TABLES``, in the order above."""
    return list(TABLES)


def table(name: str) -> list[Row]:
    """The rows of one table, e.g. ``table("fig8b")``; unknown names raise a ``KeyError``."""
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; known: {', '.join(TABLES)}")
    return list(TABLES[name].rows)


def find(name: str, model: str, **match) -> Entry:
    """The single ``Entry`` of table ``name`` for ``model`` (plus field matches, e.g.
    ``setting="patches (2,2,2)"``); raises ``LookupError`` unless exactly one row matches."""
    hits = [
        r for r in table(name)
        if isinstance(r, Entry) and r.model == model
        and all(getattr(r, k) == v for k, v in match.items())
    ]
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} rows of {name!r} match model={model!r} {match}")
    return hits[0]


# --- 7. architecture facts (exact) -------------------------------------------------------------
# Parameter counts of the official architecture (1000 classes), counted from apple/ml-cvnets
# v0.1; the paper rounds them to 1.3 / 2.3 / 5.6 M.
PARAMS: dict[str, int] = {"xxs": 1_272_024, "xs": 2_317_848, "s": 5_578_632}
PARAMS_M: dict[str, float] = {"xxs": 1.3, "xs": 2.3, "s": 5.6}  # as printed in the paper

# DeepLabv3 (21 classes, output stride 16, ASPP 256 channels, rates 6/12/18); paper 1.9/2.9/6.4 M.
DEEPLABV3_PARAMS: dict[str, int] = {"xxs": 1_854_853, "xs": 2_944_069, "s": 6_357_941}

# SSDLite-320 (81 classes) recount, millions (approximate, 3 decimals); paper 1.8/2.7/5.7 M.
SSDLITE_PARAMS_M: dict[str, float] = {"xxs": 1.755, "xs": 2.742, "s": 5.739}

# Analytic multiply-adds (conv + linear + the two attention matmuls QK^T and AV; norms,
# activations and resizes not counted), in G, by input resolution.
MACS_G: dict[str, dict[int, float]] = {
    "xxs": {160: 0.143, 192: 0.210, 224: 0.301, 256: 0.407, 288: 0.546, 320: 0.705},
    "xs": {160: 0.379, 192: 0.548, 224: 0.772, 256: 1.026, 288: 1.348, 320: 1.706},
    "s": {160: 0.755, 192: 1.082, 224: 1.522, 256: 2.001, 288: 2.619, 320: 3.282},
}
MACS_256_G: dict[str, float] = {"xxs": 0.41, "xs": 1.03, "s": 2.00}  # rounded, at 256x256

# fvcore FlopCountAnalysis totals (fvcore counts one multiply-add as one "flop"), model in
# eval mode, 256x256, with the attention written as explicit matmuls (fvcore has no handle for
# scaled_dot_product_attention and silently counts it as 0). fvcore also counts eval BatchNorm
# (2 per element), LayerNorm (5 per element) and bilinear resizes (4 per output element).
FVCORE_MACS_256: dict[str, int] = {"xxs": 418_183_680, "xs": 1_052_168_192, "s": 2_033_383_424}
FVCORE_MACS_XS_224: int = 792_602_336  # XS at 224x224 (layer5 7x7 is resized to 8x8 and back)

# MAC counts reported elsewhere, for the "why do FLOP numbers disagree" discussion.
REPORTED_MACS: dict[str, str] = {
    "paper XS (Table 3)": "0.7 G, at 224x224 per the author (apple/ml-cvnets issue #47)",
    "cvnets-v0.1 profiler, XS 256": "986.269 M (v0.1 miscounts attention: seq*C*C, issue #68)",
    "cvnets fvcore (later code), XS 256": "1028.243 M (issue #68)",
    "[V2] Table 2": "XXS 0.4 G, S 2.0 G at 256x256",
    "timm cards": "XXS 0.4, XS 1.1 GMACs at 256x256",
    "mmpretrain": "0.42 / 1.05 / 2.03 'GFLOPs' (= fvcore MACs)",
}

# The multi-scale sampler with the ImageNet defaults of the official config: base crop 256 with
# 128 images per GPU, 5 scales between 160 and 320 rounded to multiples of 32, 8 GPUs.
SAMPLER_RESOLUTIONS: tuple[int, ...] = (160, 192, 256, 288, 320)
SAMPLER_BASE: tuple[int, int] = (256, 128)  # (crop size, batch per GPU)
SAMPLER_N_GPUS: int = 8
# cvnets-v0.1: b = max(128, int(256*256*128 / (h*w))), then make_divisible(b, 8 GPUs)
# (int() truncates: 327.68 -> 327 -> 328 at 160; 227.56 -> 227 -> 224 at 192)
SAMPLER_BATCH_V01: dict[int, int] = {160: 328, 192: 224, 256: 128, 288: 128, 320: 128}
# cvnets main: b = max(1, int(256*256*128 / (h*w))), no floor at 128 and no GPU rounding
SAMPLER_BATCH_CURRENT: dict[int, int] = {160: 327, 192: 227, 256: 128, 288: 101, 320: 81}
