"""Deployment, step 4: convert a network to Core ML, the runtime the paper timed on a phone.

Paper: §4.3 ("performance on mobile devices") converts the trained networks to Core ML and times
them on an iPhone 12 (Tables 3, 6, 10, 11). Book chapter 14 converts with coremltools through
``torch.export``; running the result needs macOS, so elsewhere the conversion is the check.
``coreml_convert`` never raises: without coremltools, or when the conversion fails, it returns a
``CoreMLResult`` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mobilevit_edu.deploy.export import eval_mode, one_line_error, quiet_exporters
from mobilevit_edu.nn.layers import to_pair

__all__ = ["CoreMLResult", "coreml_convert"]


@dataclass
class CoreMLResult:
    """What ``coreml_convert`` got: the converted model, or the reason it could not."""

    model: Any | None  # a coremltools MLModel (ML program) when the conversion worked
    reason: str = ""  # one line, empty when it worked
    seconds: float = 0.0
    op_counts: Counter = field(default_factory=Counter)  # MIL operations of the program
    notes: list[str] = field(default_factory=list)  # what coremltools warned about
    can_predict: bool = False  # Core ML prediction needs macOS

    @property
    def ok(self) -> bool:
        return self.model is not None

    def summary(self) -> str:
        if not self.ok:
            return f"Core ML conversion skipped: {self.reason}"
        return (f"converted to a Core ML ML program in {self.seconds:.0f} s: "
                f"{sum(self.op_counts.values())} MIL operations")


def coreml_convert(
    model: nn.Module,
    image_size: int | tuple[int, int] = 256,
    *,
    path: str | os.PathLike | None = None,
    in_channels: int | None = None,
) -> CoreMLResult:
    """Convert ``model`` (eval mode, batch 1, fixed size) to a Core ML ML program with
    coremltools, through ``torch.export`` (coremltools' TorchScript path fails on the tracer's
    shape arithmetic). Never raises: if coremltools is missing or the conversion fails, the
    result has ``model=None`` and a one-line ``reason``. ``path`` saves an ``.mlpackage``.

    Running the converted model (``MLModel.predict``) needs the Core ML framework, i.e. macOS;
    ``can_predict`` says whether this machine has it."""
    t0 = time.perf_counter()
    on_mac = platform.system() == "Darwin"
    notes: list[str] = []
    try:
        with quiet_exporters():
            ct = importlib.import_module("coremltools")
    except Exception as err:  # noqa: BLE001  (ImportError, or a broken install)
        reason = ("coremltools is not installed (optional: pip install coremltools)"
                  if isinstance(err, ImportError) else f"coremltools failed to import: {err}")
        return CoreMLResult(None, reason.splitlines()[0], time.perf_counter() - t0,
                            can_predict=on_mac)
    tested = getattr(getattr(ct, "_deps", None), "_TORCH_MAX_VERSION", None)
    if tested and _version(torch.__version__) > _version(tested):
        notes.append(f"coremltools {ct.__version__} is tested with torch <= {tested}; "
                     f"this is torch {torch.__version__}")
    if not on_mac:
        notes.append("Core ML prediction needs macOS: coremltools on "
                     f"{platform.system()} converts and saves, but cannot run the model")
    h, w = to_pair(image_size, "image_size")
    channels = in_channels or getattr(model, "in_channels", 3)
    x = torch.rand(1, channels, h, w, generator=torch.Generator().manual_seed(0))
    try:
        with eval_mode(model), torch.no_grad(), quiet_exporters():
            program = torch.export.export(model, (x,))
            program = program.run_decompositions({})
            ml = ct.convert(program, inputs=[ct.TensorType(name="images", shape=x.shape)],
                            convert_to="mlprogram")
            if path is not None:
                ml.save(str(path))
    except Exception as err:  # noqa: BLE001  (any failure: say why in one line)
        return CoreMLResult(None, one_line_error(err),
                            time.perf_counter() - t0, notes=notes, can_predict=on_mac)
    ops: Counter = Counter()
    with contextlib.suppress(Exception):  # a private attribute: counts are a bonus
        ops.update(op.op_type for op in ml._mil_program.functions["main"].operations)
    return CoreMLResult(ml, "", time.perf_counter() - t0, ops, notes, can_predict=on_mac)


def _version(text: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])
