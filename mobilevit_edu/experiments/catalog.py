"""The book's small-scale experiments, one per comparison the paper makes with training.

Each entry is an :class:`~mobilevit_edu.experiments.protocol.Experiment`: arms that differ in the
one thing the paper varies, five seeds each, and the paper's claims as directions.

=================  ================================================  =========================
name               what the paper claims                              paper
=================  ================================================  =========================
models_local       MobileViT-XXS beats a CNN and a ViT of its size   Fig. 8b, Fig. 9b
models_global      ... and more so when the task needs far pixels    §1, §3.1 (the argument)
label_smoothing    label smoothing and EMA each help a little        Table 7
sampler            multi-scale training: fewer updates, no worse     Table 5, Fig. 7
fusion             the fusion conv (concat + 3x3) helps              Fig. 14 (App. C)
=================  ================================================  =========================

Settings common to all (image size, updates, learning rate) are still chapter 10's (32 px,
lr 0.002). They are provisional: a learning-rate sweep on the validation split, not built yet,
is to choose them per model, and pilot runs point to 64 px (at 32 px MobileNetV2 barely learns
the local task; at 64 px it reaches about 94 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mobilevit_edu.experiments.classification import run_classification
from mobilevit_edu.experiments.protocol import Arm, Claim, Experiment

__all__ = ["CONTENDERS", "EXPERIMENTS", "get", "scaled"]

VIT = {"image_size": 32, "patch_size": 8, "embed_dim": 128, "depth": 6, "num_heads": 4}
CONTENDERS: dict[str, dict[str, Any]] = {  # arm name -> model settings (about 1 M parameters)
    "MobileViT-XXS": {"model": "mobilevit_xxs", "overrides": {}},
    "MobileNetV2-0.5": {"model": "mobilenetv2_050", "overrides": {}},
    "ViT-128x6": {"model": "vit_tiny", "overrides": VIT},
}


def _models(task: str) -> tuple[Arm, ...]:
    return tuple(Arm(name, {**cfg, "task": task}) for name, cfg in CONTENDERS.items())


def _model_claims(task: str) -> tuple[Claim, ...]:
    where = "on the local task" if task == "shape" else "on the global task"
    return (
        Claim(f"MobileViT-XXS more accurate than MobileNetV2 at similar size, {where}",
              "Fig. 8b", "MobileViT-XXS", "MobileNetV2-0.5"),
        Claim(f"MobileViT-XXS more accurate than a ViT at similar size, {where}",
              "Fig. 9b", "MobileViT-XXS", "ViT-128x6"),
    )


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("models_local", "MobileViT vs a CNN and a ViT of similar size: which shape",
               "Fig. 8b, Fig. 9b", _models("shape"), run_classification,
               claims=_model_claims("shape")),
    Experiment("models_global", "MobileViT vs a CNN and a ViT of similar size: same colour",
               "§1, §3.1", _models("same_colour"), run_classification,
               claims=_model_claims("same_colour")),
    Experiment("label_smoothing", "Label smoothing and EMA (MobileViT-XXS)", "Table 7",
               (Arm("neither", {"label_smoothing": 0.0}), Arm("LS", {"label_smoothing": 0.1})),
               run_classification,
               claims=(Claim("label smoothing improves top-1 (78.0 -> 78.3 %)", "Table 7",
                             "LS", "neither"),
                       Claim("label smoothing + EMA improves on no LS (78.0 -> 78.4 %)",
                             "Table 7", "LS", "neither", metric="ema_test_acc"))),
    Experiment("sampler", "Standard vs multi-scale sampler (MobileViT-XXS, base 48 px)",
               "Table 5, Fig. 7",
               (Arm("standard", {"image_size": 48, "sampler": "standard"}),
                Arm("multi-scale", {"image_size": 48, "sampler": "multiscale"})),
               run_classification,
               claims=(Claim("multi-scale training is at least as accurate at the base size",
                             "Table 5", "multi-scale", "standard"),
                       Claim("multi-scale training needs fewer optimizer updates", "Fig. 7b",
                             "multi-scale", "standard", metric="updates", sign=-1, scale=1.0))),
    Experiment("fusion", "The MobileViT block with and without its fusion (MobileViT-XXS)",
               "Fig. 14", (Arm("with fusion", {"overrides": {}}),
                           Arm("without fusion", {"overrides": {"fusion": False}})),
               run_classification,
               claims=(Claim("the fusion block improves top-1", "Fig. 14", "with fusion",
                             "without fusion"),)),
)}


def get(name: str) -> Experiment:
    """The experiment called ``name`` (a clear error lists the others)."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; experiments: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def scaled(exp: Experiment, changes: Mapping[str, Any], seeds: tuple[int, ...]) -> Experiment:
    """``exp`` with ``changes`` applied to every arm (e.g. the ``ci`` profile's smaller budget)
    and other seeds; arms keep their own settings where they set the same key."""
    arms = tuple(Arm(a.name, {**changes, **a.config}) for a in exp.arms)
    return Experiment(exp.name, exp.title, exp.paper, arms, exp.run, seeds, exp.claims,
                      exp.packages, exp.notes, exp.depends)
