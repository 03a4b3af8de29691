"""The paper's headline numbers, and those of the released checkpoints, that an evaluation is
printed beside.

Paper (arXiv 2110.02178 v2): ImageNet-1k top-1 of MobileViT-XXS / XS / S 69.0 / 74.8 / 78.4
(§4.1, Fig. 8); SSDLite-320 COCO mAP XS 24.8, S 27.7 (Table 1a; XXS is not in the table);
DeepLabv3 PASCAL VOC 2012 val mIoU XXS 73.6, XS 77.1, S 79.1 (Table 2). The released checkpoints
(cvnets v0.1 ``examples/README-mobilevit.md``): top-1 69.0 / 74.7 / 78.3, mAP 19.9 / 24.8 / 27.9,
mIoU 72.8 / 77.1 / 79.3 (XXS / XS / S). timm's ``results/results-imagenet.csv`` measures its copies
at 68.936 / 74.618 / 78.298 top-1 with its own preprocessing (see :mod:`.origins`).

A small explicit table, kept here rather than imported from :mod:`mobilevit_edu.book.paper`
(the book layer sits above this one).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASKS", "Headline", "headline", "size_of", "compare_line"]

TASKS = ("classify", "detect", "segment")
_SIZES = ("xxs", "xs", "s")

# task -> size -> (paper, where in the paper, cvnets README, timm's measurement)
_TABLE: dict[str, dict[str, tuple[float | None, str, float | None, float | None]]] = {
    "classify": {"xxs": (69.0, "Fig. 8/§4.1", 69.0, 68.936),
                 "xs": (74.8, "Fig. 8/§4.1", 74.7, 74.618),
                 "s": (78.4, "Fig. 8/§4.1", 78.3, 78.298)},
    "detect": {"xxs": (None, "not in Table 1", 19.9, None),
               "xs": (24.8, "Table 1a", 24.8, None),
               "s": (27.7, "Table 1a", 27.9, None)},
    "segment": {"xxs": (73.6, "Table 2", 72.8, None),
                "xs": (77.1, "Table 2", 77.1, None),
                "s": (79.1, "Table 2", 79.3, None)},
}


@dataclass(frozen=True)
class Headline:
    """The numbers a result on ``task`` for MobileViT ``size`` is compared with (percent)."""

    task: str
    size: str
    paper: float | None
    where: str
    readme: float | None
    timm: float | None

    @property
    def model(self) -> str:
        return f"MobileViT-{self.size.upper()}"


def size_of(name: str) -> str:
    """``"mobilevit_xs"`` (or ``"xs"``) -> ``"xs"``; anything else raises ``ValueError``."""
    size = name.removeprefix("mobilevit_")
    if size not in _SIZES:
        raise ValueError(f"{name!r} is not a MobileViT size; "
                         "use mobilevit_xxs, mobilevit_xs or mobilevit_s")
    return size


def headline(task: str, name: str) -> Headline:
    """The paper's and the released checkpoints' numbers for ``task`` and model ``name``."""
    if task not in _TABLE:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    size = size_of(name)
    paper, where, readme, timm = _TABLE[task][size]
    return Headline(task, size, paper, where, readme, timm)


def _num(value: float, task: str, decimals: int = 1) -> str:
    """``78.4 %`` (mAP is written without the per cent sign, as in Table 1)."""
    return f"{value:.{decimals}f}" + ("" if task == "detect" else " %")


def compare_line(task: str, name: str, *, origin: str | None = None) -> str:
    """``(paper: 78.4 %, MobileViT-S, Fig. 8/§4.1; cvnets README 78.3 %)``, ``(paper: 27.7,
    MobileViT-S, Table 1a; cvnets README 27.9)`` for detection; for weights evaluated
    with timm's preprocessing (``origin="timm"``) timm's own measurement is added."""
    h = headline(task, name)
    paper = f"paper: {_num(h.paper, task)}, {h.model}, {h.where}" if h.paper is not None \
        else f"paper: {h.model} {h.where}"
    parts = [paper]
    if h.readme is not None:
        parts.append(f"cvnets README {_num(h.readme, task)}")
    if origin == "timm" and h.timm is not None:
        parts.append(f"timm results-imagenet.csv {_num(h.timm, task, 3)}")
    return "(" + "; ".join(parts) + ")"

