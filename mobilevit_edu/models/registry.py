"""``create_model``: every network in the book by name, timm-style.

MobileViT (paper §4.1): ``mobilevit_xxs``, ``mobilevit_xs``, ``mobilevit_s``. Baselines (Fig. 8, 9,
Table 3): ``mobilenetv2_{035,050,075,100,140}`` (width multipliers) and ``vit_tiny`` (DeiT-Tiny).

Keyword overrides go to the model's constructor; for MobileViT, fields of ``MobileViTConfig`` are
accepted too, e.g. ``create_model("mobilevit_xs", patch_sizes=(8, 4, 2))`` for the Table 6 ablation
or ``fusion=False`` for Fig. 14.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from torch import nn

from mobilevit_edu.models.baselines import MobileNetV2, ViT
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT, config_with

__all__ = ["create_model", "list_models"]


def _mobilevit(size: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000, **overrides) -> MobileViT:
        fields = {f.name for f in dataclasses.fields(CONFIGS[size])}
        config = config_with(CONFIGS[size], **{k: v for k, v in overrides.items() if k in fields})
        rest = {k: v for k, v in overrides.items() if k not in fields}
        _check_kwargs(MobileViT, rest, extra=sorted(fields - {"name"}))
        return MobileViT(config, num_classes, **rest)
    return build


def _mobilenetv2(width: float) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000, **overrides) -> MobileNetV2:
        _check_kwargs(MobileNetV2, overrides)
        return MobileNetV2(num_classes, **{"width": width, **overrides})
    return build


def _vit(num_classes: int = 1000, **overrides) -> ViT:
    _check_kwargs(ViT, overrides)
    return ViT(num_classes, **overrides)


def _check_kwargs(cls: type, kwargs: dict, extra: list[str] | None = None) -> None:
    # config and num_classes are set by the registry itself, so they are not overrides
    params = [p for p in inspect.signature(cls.__init__).parameters
              if p not in ("self", "config", "num_classes")]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(
            f"{cls.__name__} got unknown argument(s) {unknown}; "
            f"known: {sorted(params + (extra or []))}"
        )


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mobilevit_xxs": _mobilevit("xxs"),
    "mobilevit_xs": _mobilevit("xs"),
    "mobilevit_s": _mobilevit("s"),
    "mobilenetv2_035": _mobilenetv2(0.35),
    "mobilenetv2_050": _mobilenetv2(0.5),
    "mobilenetv2_075": _mobilenetv2(0.75),
    "mobilenetv2_100": _mobilenetv2(1.0),
    "mobilenetv2_140": _mobilenetv2(1.4),
    "vit_tiny": _vit,
}


def list_models() -> list[str]:
    """The names ``create_model`` knows."""
    return list(_REGISTRY)


def create_model(name: str, num_classes: int = 1000, **overrides) -> nn.Module:
    """Build a network by name, e.g. ``create_model("mobilevit_xs", num_classes=10)``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](num_classes, **overrides)
