"""The MobileViT paper's tables and figures, copied as data (see :mod:`mobilevit_edu.book.paper`).

Chapter 01 and every chapter that compares with the paper (Mehta & Rastegari, ICLR 2022, arXiv
2110.02178v2) read these through :mod:`mobilevit_edu.book.paper`: one :class:`Table` per table or
figure, in six groups: classification (§4.1, Fig. 8, Fig. 9), detection and segmentation (§4.2,
Tables 1, 2, 12), FLOPs and latency (Tables 3, 10, 11), the multi-scale sampler (§3.3, Fig. 7b,
Table 5), ablations (App. C) and the released checkpoints. Nothing here is measured by this book.
"""

from __future__ import annotations

from mobilevit_edu.book.paper_rows import Ablation, Entry, Latency, MemoryRow, Table, TrainingCost

__all__ = [
    "HEADLINE", "FIG8B", "FIG8C", "FIG9B", "TABLE1A", "TABLE1B", "TABLE2", "TABLE12", "TABLE3",
    "TABLE11", "TABLE10B", "TABLE10C", "FIG7B", "TABLE5", "FIG13", "FIG14", "TABLE6", "TABLE7",
    "TABLE8", "RELEASED", "V2_QUOTED",
    "TABLES",
]


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

