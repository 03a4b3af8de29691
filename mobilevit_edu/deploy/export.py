"""Deployment, step 1: export a network to ONNX, and read where its operators come from.

Paper: §4.3 ("performance on mobile devices"): the trained networks are converted to Core ML and
timed on an iPhone 12 (mean of 100 runs), and the section's discussion explains why MobileViT,
like DeiT and PiT, runs slower than MobileNetV2 on a phone: GPUs have dedicated transformer
kernels and CNNs enjoy device-level optimisations such as BatchNorm folded into the convolution,
which mobile runtimes did not yet offer for transformers. Table 11 times MobileNetV2, DeiT, PiT
and MobileViT-XS on the iPhone 12 CPU, its Neural Engine and an NVIDIA V100 (with the note that
PyTorch's ``Unfold``/``Fold`` instead of reshapes made the V100 faster); Tables 3 and 6 time
the (8, 4, 2) patch setting against (2, 2, 2). Book chapter 14.

We have no iPhone, so ``mobilevit_edu.deploy`` does the same steps with the tools at hand:

* here: ``export_onnx`` writes an ONNX file with a dynamic batch and a fixed or dynamic
  resolution, atomically, checked with ``onnx.checker``; ``onnx_op_counts`` says where unfold
  and fold end up in the graph; and the small helpers every exporter shares (``require_optional``,
  ``quiet_exporters``, ``eval_mode``, ``one_line_error``);
* ``deploy.onnx_runtime``: run a file with ONNX Runtime (``onnx_session``, ``OnnxModel``),
  check it against PyTorch (``check_onnx``), and time its kernels (``ort_op_times``);
* ``deploy.runtimes``: PyTorch eager, eager with BatchNorm folded and channels-last memory,
  ``torch.compile`` and ONNX Runtime timed in turns (``compare_runtimes``), and the time of
  unfold and fold in eager mode (``time_unfold_fold``);
* ``deploy.coreml``: Core ML conversion with coremltools (optional), or a one-line reason;
* ``deploy.inference``: BatchNorm folding, channels-last, ``torch.compile``.

Which exporter (torch 2.13). ``torch.onnx.export(..., dynamo=True)`` (the default since
torch 2.9) captures the model with ``torch.export``: sizes stay *symbolic*, so the reshapes of
``unfold``/``fold`` compute their targets from the input's shape at run time. The legacy
TorchScript exporter (``dynamo=False``, deprecated) traces with concrete sizes: the batch is
read from the input, but ``unfold``'s reshape targets ``[B, C, n_h, p_h, n_w, p_w]`` are frozen
as constants of the traced size, so a file it writes with ``dynamic_axes`` for H and W *declares*
a dynamic resolution and fails at any other one. So this module uses the dynamo exporter, and
allows the TorchScript one only for a fixed resolution.

What "dynamic resolution" can honestly mean. ``unfold`` resizes a feature map whose sides are
not multiples of the patch size (e.g. 7 x 7 -> 8 x 8 at the last stage of a 224 x 224 input).
That is a Python ``if`` on the shape; ``torch.export`` keeps only the branch of the example
input. An export with H and W free therefore holds for the sizes where no block resizes: H and
W multiples of ``size_multiple(model)`` (64 for every MobileViT with output stride 32: a
2 x 2 patch at output stride 32). The file says so itself: its input is ``[batch, 3, 64*h64,
64*w64]``, and ``OnnxModel`` refuses other sizes with a message instead of failing deep inside
a Reshape node. Any *fixed* size (224 included) exports with its resize.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import math
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from mobilevit_edu.models.mobilevit import MobileViT
from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import to_pair

__all__ = [
    "EXPORT_HINT",
    "DEFAULT_OPSET",
    "MAX_SIDE",
    "require_optional",
    "quiet_exporters",
    "eval_mode",
    "one_line_error",
    "size_multiple",
    "dynamic_shapes_spec",
    "export_onnx",
    "onnx_node_places",
    "onnx_op_counts",
]

EXPORT_HINT = "pip install 'mobilevit_edu[export]'"
DEFAULT_OPSET = 18  # LayerNormalization needs >= 17; ONNX Runtime 1.18+ runs 18
MAX_SIDE = 4096  # the largest H or W a dynamic file accepts


# --- helpers shared by every exporter and runtime of deploy/ -------------------------------------
def require_optional(module: str) -> Any:
    """Import an optional dependency (onnx, onnxscript, onnxruntime) or raise an ImportError that
    says how to install it (``EXPORT_HINT``)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is not installed; it is an optional dependency of mobilevit_edu: "
            f"{EXPORT_HINT}"
        ) from err


@contextlib.contextmanager
def quiet_exporters() -> Iterator[io.StringIO]:
    """Silence the exporters' progress prints, warnings and log lines (yields what they printed)."""
    buffer = io.StringIO()
    names = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo",
             "coremltools", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), \
                contextlib.redirect_stderr(buffer):
            warnings.simplefilter("ignore")
            yield buffer
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode; its training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def one_line_error(err: BaseException, limit: int = 240) -> str:
    """``"Type: first line"`` of the innermost cause of ``err`` (exporters wrap the real reason
    in generic "step 1/3 failed" errors), without terminal colour codes."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = _ANSI_RE.sub("", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:limit]


# --- export ----------------------------------------------------------------------------------
def size_multiple(model: nn.Module) -> int:
    """The multiple of H and W at which no MobileViT block of ``model`` resizes its feature map.

    A block at output stride s with p_h x p_w patches needs its map's sides divisible by the
    patch, i.e. H divisible by s * p_h and W by s * p_w; the answer is the least common multiple
    over the blocks (64 for XXS / XS / S: 2 x 2 patches at stride 32; also 64 for (8, 4, 2)).
    A network without MobileViT blocks (MobileNetV2) has no such constraint: 1."""
    vits = [m for m in model.modules() if isinstance(m, MobileViT)]
    blocks = [m for m in model.modules() if isinstance(m, MobileViTBlock)]
    if not blocks:
        return 1
    if not vits:
        raise ValueError("cannot tell the output strides of these MobileViT blocks: the model "
                         "holds no MobileViT backbone; pass the multiple explicitly")
    multiple = 1
    for vit in vits:
        strides = [info["stride"] for info in vit.feature_info[2:]]  # layer3, layer4, layer5
        stages = (vit.layer3, vit.layer4, vit.layer5)
        for stride, stage in zip(strides, stages):
            for block in (m for m in stage.modules() if isinstance(m, MobileViTBlock)):
                ph, pw = block.patch_size
                multiple = math.lcm(multiple, stride * ph, stride * pw)
    return multiple


def dynamic_shapes_spec(
    image_size: int | tuple[int, int] | None, dynamic_batch: bool, multiple: int
) -> dict[int, Any]:
    """``torch.export`` dimension specs for the input ``[B, C, H, W]``.

    The batch is ``Dim("batch")``; a free H is ``multiple * Dim("h<multiple>")`` (a *derived*
    dimension: the exporter then knows H is a multiple, and the ONNX input reads
    ``64*h64``), or ``Dim("height")`` when there is no constraint (``multiple == 1``)."""
    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if image_size is None:
        for axis, side in ((2, "h"), (3, "w")):
            if multiple > 1:
                lo = max(1, math.ceil(32 / multiple))  # MobileViT needs sides >= 32
                dims[axis] = multiple * torch.export.Dim(f"{side}{multiple}", min=lo,
                                                         max=MAX_SIDE // multiple)
            else:
                dims[axis] = torch.export.Dim("height" if side == "h" else "width", min=32,
                                              max=MAX_SIDE)
    return dims


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = 256,
    *,
    dynamic_batch: bool = True,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    in_channels: int | None = None,
) -> Path:
    """Export ``model`` (in eval mode) to the ONNX file ``path`` and return the path.

    ``image_size``: an int or (H, W) for a fixed resolution, or ``None`` for dynamic H and W
    (multiples of ``size_multiple(model)``; see the module docstring). ``dynamic_batch`` makes
    the batch symbolic; without it the file takes exactly ``batch`` images, which lets ONNX
    Runtime fold every shape computation into constants (about 3 % faster for XXS at batch 1).
    The input is named ``images``, the output ``logits``. The file is written next to its
    destination under a temporary name, checked with ``onnx.checker`` and then renamed, so a
    failed export never leaves a half-written file behind.

    ``exporter="dynamo"`` (default) uses ``torch.onnx.export(dynamo=True)``; ``"torchscript"``
    the deprecated tracer, for a fixed resolution only."""
    onnx = require_optional("onnx")
    require_optional("onnxscript")  # the dynamo exporter translates to ONNX with onnxscript
    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    if image_size is None and exporter == "torchscript":
        raise ValueError(
            "the TorchScript exporter cannot export a dynamic resolution: it freezes unfold's "
            "reshape targets at the traced size, so the file would fail at any other size; "
            "use exporter='dynamo' or a fixed image_size"
        )
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if dynamic_batch and batch != 1:
        raise ValueError(f"batch={batch} fixes the batch size; it needs dynamic_batch=False")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = in_channels or getattr(model, "in_channels", 3)
    multiple = size_multiple(model) if image_size is None else 1
    if image_size is None:
        h = w = multiple * max(1, math.ceil(256 / multiple))  # e.g. 256 for a multiple of 64
    else:
        h, w = to_pair(image_size, "image_size")
    # a batch of 2: torch.export specialises a dimension whose example size is 1
    x = torch.rand(2 if dynamic_batch else batch, channels, h, w,
                   generator=torch.Generator().manual_seed(0))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with eval_mode(model), torch.no_grad(), quiet_exporters():
            if exporter == "dynamo":
                program = torch.onnx.export(
                    model, (x,), None, dynamo=True,
                    dynamic_shapes=(dynamic_shapes_spec(image_size, dynamic_batch, multiple),),
                    input_names=["images"], output_names=["logits"], opset_version=opset,
                    optimize=True, verbose=False,
                )
                program.save(str(tmp), external_data=False)
            else:
                axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
                torch.onnx.export(model, (x,), str(tmp), dynamo=False, dynamic_axes=axes,
                                  input_names=["images"], output_names=["logits"],
                                  opset_version=opset)
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, (ImportError, ValueError)):
            raise
        raise RuntimeError(
            f"ONNX export of {type(model).__name__} ({exporter}) failed: {one_line_error(err)}"
        ) from err
    return path


# --- where unfold and fold go ----------------------------------------------------------------
def onnx_node_places(graph: Any) -> dict[str, str]:
    """Node name -> "unfold", "fold", "attention" or "other", read from the source locations
    the dynamo exporter stores with every node (files from the TorchScript exporter carry none,
    so all their nodes are "other")."""
    places = {}
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        trace = meta.get("pkg.torch.onnx.stack_trace", "").strip().splitlines()
        line = trace[-1] if trace else ""  # the innermost line of *our* code that made it
        if re.search(r"\bunfold\(", line):
            places[node.name] = "unfold"
        elif re.search(r"\bfold\(", line):
            places[node.name] = "fold"
        elif ".attn" in meta.get("pkg.torch.onnx.name_scopes", ""):
            places[node.name] = "attention"
        else:
            places[node.name] = "other"
    return places


def onnx_op_counts(path: str | os.PathLike) -> dict[str, Counter]:
    """Operator types of an ONNX graph, grouped by where in the model they come from:
    ``{"unfold": Counter, "fold": ..., "attention": ..., "other": ..., "total": ...}``."""
    onnx = require_optional("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    places = onnx_node_places(graph)
    out: dict[str, Counter] = {k: Counter() for k in ("unfold", "fold", "attention", "other")}
    for node in graph.node:
        out[places[node.name]][node.op_type] += 1
    out["total"] = sum(out.values(), Counter())
    return out
