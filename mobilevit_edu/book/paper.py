"""The MobileViT paper's reported numbers, as data (chapter 01; every chapter compares with them).

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
  (``"fig8b"``, ``"table3"``, ...); ``table(name)`` returns its rows. The tables are typed in
  :mod:`mobilevit_edu.book.paper_tables` and the row types defined in
  :mod:`mobilevit_edu.book.paper_rows`; import both from here. Rows are small frozen
  dataclasses: ``Entry`` (a model and its scores), ``Latency`` (one model on three devices),
  ``Ablation`` (one setting of one knob), ``TrainingCost`` (sampler efficiency), ``MemoryRow``.
* Architecture facts the book checks exactly: parameter counts, MACs, the multi-scale sampler's
  resolutions and batch sizes. These come from counting the official architecture, not from the
  paper's rounded "1.3 M / 2.3 M / 5.6 M", and the book's models must reproduce them to the unit.
"""

from __future__ import annotations

from mobilevit_edu.book.paper_rows import Ablation, Entry, Latency, MemoryRow, Row, Table, TrainingCost
from mobilevit_edu.book.paper_tables import (  # the tables, in the paper's order
    HEADLINE, FIG8B, FIG8C, FIG9B, TABLE1A, TABLE1B, TABLE2, TABLE12, TABLE3, TABLE11, TABLE10B,
    TABLE10C, FIG7B, TABLE5, FIG13, FIG14, TABLE6, TABLE7, TABLE8, RELEASED, V2_QUOTED, TABLES,
)

__all__ = [
    "PAPER",
    "Entry",
    "Latency",
    "Ablation",
    "TrainingCost",
    "MemoryRow",
    "Row",
    "Table",
    "TABLES",
    # the tables one by one (also in TABLES)
    "HEADLINE", "FIG8B", "FIG8C", "FIG9B", "TABLE1A", "TABLE1B", "TABLE2", "TABLE12", "TABLE3",
    "TABLE11", "TABLE10B", "TABLE10C", "FIG7B", "TABLE5", "FIG13", "FIG14", "TABLE6", "TABLE7",
    "TABLE8", "RELEASED", "V2_QUOTED",
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


def table_names() -> list[str]:
    """The keys of ``TABLES``, in the paper's order (classification first)."""
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
