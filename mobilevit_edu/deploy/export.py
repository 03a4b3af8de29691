"""Deployment: export to ONNX, run with ONNX Runtime, compare runtimes, convert to Core ML.

Paper: §4.3 ("performance on mobile devices"): the trained networks are converted to Core ML and
timed on an iPhone 12 (mean of 100 runs), and the section's discussion explains why MobileViT,
like DeiT and PiT, runs slower than MobileNetV2 on a phone: GPUs have dedicated transformer
kernels and CNNs enjoy device-level optimisations such as BatchNorm folded into the convolution,
which mobile runtimes did not yet offer for transformers. Table 11 times MobileNetV2, DeiT, PiT
and MobileViT-XS on the iPhone 12 CPU, its Neural Engine and an NVIDIA V100 (with the note that
PyTorch's ``Unfold``/``Fold`` instead of reshapes made the V100 faster); Tables 3 and 6 time
the (8, 4, 2) patch setting against (2, 2, 2).

We have no iPhone, so this module does the same steps with the tools at hand:

* ``export_onnx``: write an ONNX file with a dynamic batch and a fixed or dynamic resolution,
  atomically, checked with ``onnx.checker``;
* ``onnx_session`` / ``OnnxModel``: run it with ONNX Runtime (CPU, a stated number of threads),
  with clear errors for a wrong size or channel count;
* ``check_onnx``: the largest difference between ONNX Runtime's and PyTorch's outputs;
* ``compare_runtimes``: PyTorch eager, eager with BatchNorm folded and channels-last memory,
  ``torch.compile`` and ONNX Runtime, timed in turns with ``latency.time_interleaved``;
* ``onnx_op_counts``, ``ort_op_times``, ``time_unfold_fold``: where unfold and fold end up in
  the graph and how much of the time they take;
* ``coreml_convert``: Core ML conversion with coremltools (optional), or a one-line reason.

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
import json
import logging
import math
import os
import platform
import re
import statistics
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from mobilevit_edu.measure.latency import Timing, compile_model, optimize_for_inference, threads, time_interleaved

__all__ = [
    "EXPORT_HINT",
    "DEFAULT_OPSET",
    "RUNTIMES",
    "size_multiple",
    "dynamic_shapes_spec",
    "export_onnx",
    "OnnxModel",
    "onnx_session",
    "check_onnx",
    "onnx_op_counts",
    "ort_category",
    "ort_op_times",
    "time_unfold_fold",
    "RuntimeLatency",
    "compare_runtimes",
    "CoreMLResult",
    "coreml_convert",
    "plot_runtime_latency",
    "plot_time_split",
]

EXPORT_HINT = "pip install 'mobilevit_edu[export]'"
DEFAULT_OPSET = 18  # LayerNormalization needs >= 17; ONNX Runtime 1.18+ runs 18
MAX_SIDE = 4096  # the largest H or W a dynamic file accepts
RUNTIMES: dict[str, str] = {  # key -> label in tables and plots
    "eager": "PyTorch eager",
    "eager_fast": "eager, BN folded + NHWC",
    "compiled": "torch.compile",
    "onnxruntime": "ONNX Runtime",
}


def _require(module: str) -> Any:
    """Import an optional dependency or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is not installed; it is an optional dependency of mobilevit_edu: "
            f"{EXPORT_HINT}"
        ) from err


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {(h, w)}")
    return int(h), int(w)


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
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
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# --- export ----------------------------------------------------------------------------------
def size_multiple(model: nn.Module) -> int:
    """The multiple of H and W at which no MobileViT block of ``model`` resizes its feature map.

    A block at output stride s with p_h x p_w patches needs its map's sides divisible by the
    patch, i.e. H divisible by s * p_h and W by s * p_w; the answer is the least common multiple
    over the blocks (64 for XXS / XS / S: 2 x 2 patches at stride 32; also 64 for (8, 4, 2)).
    A network without MobileViT blocks (MobileNetV2) has no such constraint: 1."""
    from mobilevit_edu.nn.block import MobileViTBlock
    from mobilevit_edu.models.mobilevit import MobileViT

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
    Runtime fold every shape computation into constants (about 3 % faster for XXS at batch 1). The input is named ``images``, the output ``logits``. The file is
    written next to its destination under a temporary name, checked with ``onnx.checker`` and
    then renamed, so a failed export never leaves a half-written file behind.

    ``exporter="dynamo"`` (default) uses ``torch.onnx.export(dynamo=True)``; ``"torchscript"``
    the deprecated tracer, for a fixed resolution only."""
    onnx = _require("onnx")
    _require("onnxscript")  # the dynamo exporter translates to ONNX with onnxscript
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
        h, w = _pair(image_size)
    # a batch of 2: torch.export specialises a dimension whose example size is 1
    x = torch.rand(2 if dynamic_batch else batch, channels, h, w,
                   generator=torch.Generator().manual_seed(0))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _eval_mode(model), torch.no_grad(), _quiet():
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
            f"ONNX export of {type(model).__name__} ({exporter}) failed: {_one_line(err)}"
        ) from err
    return path


# --- running ---------------------------------------------------------------------------------
_MULTIPLE_RE = re.compile(r"^(\d+)\*")


class OnnxModel:
    """An ONNX Runtime session for a one-input image model, called like a PyTorch model.

    ``model(x)`` takes ``[B, C, H, W]`` (a tensor or a NumPy array) and returns the output as a
    NumPy array; the input is checked against the file's declared shape first, so a wrong size
    or channel count raises a ``ValueError`` that names both sizes."""

    def __init__(self, session: Any, path: Path) -> None:
        self.session, self.path = session, path
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ValueError(f"{path.name} has {len(inputs)} inputs; OnnxModel needs one")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape: list[int | str | None] = list(inputs[0].shape)

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name!r}, input {self.input_name} {self.input_shape})"

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(H, W) if the file was exported for one resolution, else None."""
        h, w = self.input_shape[2:4]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def check_input(self, shape: Sequence[int]) -> None:
        """Raise a ValueError naming the problem if ``shape`` does not fit the file."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {shape}")
        b, c, h, w = shape
        want_b, want_c, want_h, want_w = self.input_shape
        if isinstance(want_c, int) and c != want_c:
            raise ValueError(
                f"{self.path.name} takes {want_c} input channels, got {c} (shape {shape}); "
                "images are [B, C, H, W] with channels first"
            )
        if isinstance(want_b, int) and b != want_b:
            raise ValueError(f"{self.path.name} was exported for batch {want_b}, got batch {b}; "
                             "export with dynamic_batch=True")
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            raise ValueError(
                f"{self.path.name} was exported for {want_h} x {want_w} images, got {h} x {w}; "
                f"resize the images, export again with image_size=({h}, {w}), or export with "
                "image_size=None for a dynamic resolution"
            )
        for side, value, want in (("height", h, want_h), ("width", w, want_w)):
            match = _MULTIPLE_RE.match(want) if isinstance(want, str) else None
            if match and value % int(match.group(1)):
                k = int(match.group(1))
                raise ValueError(
                    f"{self.path.name} takes a {side} that is a multiple of {k} (its unfold/fold "
                    f"reshapes have no resize branch), got {h} x {w}; resize the images to "
                    f"multiples of {k} (e.g. {k * max(1, round(h / k))} x "
                    f"{k * max(1, round(w / k))}), or export a fixed image_size=({h}, {w}), "
                    "which keeps the resize"
                )

    def _feed(self, x: Any) -> dict[str, Any]:
        import numpy as np

        if isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                raise TypeError(f"expected floating-point images, got {x.dtype}")
            x = x.detach().cpu().float().contiguous().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.check_input(x.shape)
        return {self.input_name: x}

    def __call__(self, x: Any) -> Any:
        return self.session.run([self.output_name], self._feed(x))[0]

    def runner(self, x: Any) -> Callable[[], Any]:
        """A no-argument callable running ``x`` (converted and checked once): for timing."""
        feed, outputs = self._feed(x), [self.output_name]
        return lambda: self.session.run(outputs, feed)[0]


def onnx_session(
    path: str | os.PathLike, threads: int = 1, *, optimize: bool = True,
    profile_prefix: str | None = None, spin_wait: bool = False,
) -> OnnxModel:
    """Open an ONNX file with ONNX Runtime's CPU provider and ``threads`` intra-op threads.

    ``optimize=False`` turns the runtime's graph optimisations (fusions, constant folding,
    layout changes) off; ``profile_prefix`` switches on its per-node profiler. ``spin_wait``:
    with more than one thread, ONNX Runtime's pool threads by default busy-wait for the next
    kernel after every run, which steals a core from whatever the process runs next (another
    model being timed, PyTorch's own threads); here that is off unless asked for."""
    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; write one with export_onnx()")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 4  # fatal only: errors reach the caller as exceptions
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if spin_wait else "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxModel(session, path)


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike | OnnxModel,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    threads: int = 1,
) -> float:
    """The largest absolute difference between PyTorch's output (eval mode) and ONNX Runtime's,
    over every input batch in ``inputs``."""
    import numpy as np

    runner = path if isinstance(path, OnnxModel) else onnx_session(path, threads)
    batches = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    if not batches:
        raise ValueError("no inputs to compare on")
    worst = 0.0
    with _eval_mode(model), torch.inference_mode():
        for x in batches:
            expected = model(x).float().numpy()
            got = runner(x)
            if got.shape != expected.shape:
                raise ValueError(f"ONNX output {got.shape} vs PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


# --- where unfold and fold go ----------------------------------------------------------------
def _node_places(graph: Any) -> dict[str, str]:
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
    onnx = _require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    places = _node_places(graph)
    out: dict[str, Counter] = {k: Counter() for k in ("unfold", "fold", "attention", "other")}
    for node in graph.node:
        out[places[node.name]][node.op_type] += 1
    out["total"] = sum(out.values(), Counter())
    return out


# ONNX Runtime operator (after its fusions) -> category, first match wins
_ORT_CATEGORIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Conv", "FusedConv", "NchwcConv"), "conv"),
    (("MatMul", "FusedMatMul", "Gemm", "Attention", "MultiHeadAttention"), "matmul"),
    (("Softmax",), "softmax"),
    (("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
      "BatchNormalization"), "norm"),
    (("QuickGelu", "Sigmoid", "Clip", "Relu", "Gelu", "FastGelu", "BiasGelu"), "activation"),
    (("Transpose", "Reshape", "Concat", "Slice", "Split", "Squeeze", "Unsqueeze", "Gather",
      "ReorderInput", "ReorderOutput", "Shape", "Expand", "Resize"), "copy / layout"),
    (("Add", "Mul", "Div", "Sub", "ReduceMean", "GlobalAveragePool", "Sum"), "add / mul / mean"),
)


def ort_category(op_type: str) -> str:
    """The category of an ONNX Runtime kernel, as in ``latency.OP_CATEGORIES`` where possible."""
    for names, category in _ORT_CATEGORIES:
        if op_type in names:
            return category
    return "other"


def ort_op_times(
    path: str | os.PathLike,
    x: torch.Tensor,
    *,
    repeats: int = 5,
    warmup: int = 2,
    threads: int = 1,
    by: str = "category",
) -> dict[str, float]:
    """Milliseconds per forward pass in each kind of ONNX Runtime kernel, from its profiler.

    Every kernel (node) is timed in each of ``repeats`` runs (after ``warmup``); its time is the
    **minimum** over the runs, since anything else on the machine can only add to it (on a busy
    machine a 4 ms scheduler slice lands on a random kernel of every run). The kernels' times
    are summed per group: ``by="category"`` groups with ``ort_category`` (conv, matmul, ...),
    ``by="op"`` by kernel type. Either way, the kernels that come from ``unfold`` or ``fold``
    form their own group ``"unfold / fold"`` (matched by node name: ONNX Runtime keeps the
    exported names of the Reshape and Transpose nodes it does not fuse). ``"total"`` is the sum
    of all groups."""
    onnx = _require("onnx")
    if by not in ("category", "op"):
        raise ValueError(f"by must be 'category' or 'op', got {by!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    places = _node_places(onnx.load(str(path), load_external_data=False).graph)
    with tempfile.TemporaryDirectory() as folder:
        runner = onnx_session(path, threads, profile_prefix=os.path.join(folder, "ort"))
        call = runner.runner(x)
        for _ in range(warmup + repeats):
            call()
        trace = runner.session.end_profiling()
        events = json.loads(Path(trace).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) != warmup + repeats:
        raise RuntimeError(f"expected {warmup + repeats} profiled runs, found {len(runs)}")
    start = runs[warmup][0]  # the first timed run
    per_node: dict[str, list[float]] = {}
    group_of: dict[str, str] = {}
    for e in events:
        if (e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time")
                or e["ts"] < start):
            continue
        name = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "?")
        place = places.get(name, "other")
        group_of[name] = ("unfold / fold" if place in ("unfold", "fold")
                          else ort_category(op) if by == "category" else op)
        per_node.setdefault(name, []).append(e["dur"] / 1000.0)
    out: dict[str, float] = {}
    for name, durations in per_node.items():
        out[group_of[name]] = out.get(group_of[name], 0.0) + min(durations)
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    out["total"] = sum(out.values())
    return out


def time_unfold_fold(
    model: nn.Module,
    x: torch.Tensor,
    *,
    repeats: int = 5,
    warmup: int = 1,
    num_threads: int | None = 1,
    clock: str = "cpu",
) -> dict[str, float]:
    """Milliseconds per forward pass spent in ``patches.unfold`` and ``patches.fold`` (as the
    MobileViT blocks call them), and in the whole forward pass (median over ``repeats``).

    Returns ``{"unfold": ms, "fold": ms, "forward": ms}``. The blocks' module-level ``unfold``
    and ``fold`` are wrapped with a timer for the duration of the call and restored afterwards.
    ``clock="cpu"`` uses the process's CPU time (steadier on a shared machine with one thread),
    ``"wall"`` the wall clock."""
    from mobilevit_edu.nn import block as block_module

    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    spent = {"unfold": 0.0, "fold": 0.0}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = now()
            out = fn(*args, **kwargs)
            spent[name] += now() - t0
            return out
        return wrapper

    original = block_module.unfold, block_module.fold
    block_module.unfold = timed("unfold", original[0])
    block_module.fold = timed("fold", original[1])
    samples: list[dict[str, float]] = []
    try:
        with _eval_mode(model), threads(num_threads), torch.inference_mode():
            for i in range(warmup + repeats):
                spent.update(unfold=0.0, fold=0.0)
                t0 = now()
                model(x)
                total = now() - t0
                if i >= warmup:
                    samples.append({"unfold": 1000 * spent["unfold"], "fold": 1000 * spent["fold"],
                                    "forward": 1000 * total})
    finally:
        block_module.unfold, block_module.fold = original
    if not any(s["unfold"] for s in samples) and not any(s["fold"] for s in samples):
        raise ValueError("the model never called unfold/fold: is it a MobileViT?")
    return {k: statistics.median(s[k] for s in samples) for k in ("unfold", "fold", "forward")}


# --- comparing runtimes ----------------------------------------------------------------------
@dataclass
class RuntimeLatency:
    """Timings of several models in several runtimes, taken in turns in one process."""

    timings: dict[str, dict[str, Timing]]  # model label -> runtime key -> Timing
    compile_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 1
    batch: int = 1
    image_size: tuple[int, int] = (256, 256)

    def ms(self, label: str, runtime: str, clock: str = "cpu") -> float | None:
        """Median milliseconds per batch (``clock="cpu"``: process CPU time; ``"wall"``), or
        None if that runtime was not timed for that model (e.g. compiling failed)."""
        t = self.timings.get(label, {}).get(runtime)
        if t is None:
            return None
        return t.median_cpu_ms if clock == "cpu" else t.median_ms

    @property
    def runtimes(self) -> list[str]:
        return [k for k in RUNTIMES if any(k in t for t in self.timings.values())]

    def table(self, macs_g: dict[str, float] | None = None, clock: str = "cpu") -> str:
        """A text table: one row per model, median ms per runtime, MACs (G) if given."""
        cols = self.runtimes
        head = f"{'model':22s}" + (f"{'GMACs':>7s}" if macs_g else "")
        head += "".join(f"{RUNTIMES[c]:>{max(14, len(RUNTIMES[c]) + 2)}s}" for c in cols)
        lines = [head]
        for label in self.timings:
            row = f"{label:22s}" + (f"{macs_g[label]:>7.3f}" if macs_g else "")
            for c in cols:
                v = self.ms(label, c, clock)
                width = max(14, len(RUNTIMES[c]) + 2)
                row += f"{v:>{width}.1f}" if v is not None else f"{'-':>{width}s}"
            lines.append(row)
        return "\n".join(lines)


def compare_runtimes(
    models: dict[str, nn.Module],
    onnx_files: dict[str, str | os.PathLike],
    *,
    images: torch.Tensor | None = None,
    image_size: int | tuple[int, int] = 256,
    batch: int = 1,
    num_threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    compile: bool | Sequence[str] = True,
    runtimes: Sequence[str] = ("eager", "eager_fast", "compiled", "onnxruntime"),
) -> RuntimeLatency:
    """Time every model in every runtime on the same input, all candidates in turns
    (``latency.time_interleaved``), with ``num_threads`` threads for PyTorch and ONNX Runtime.

    Runtimes: ``eager`` (the model as is), ``eager_fast`` (``optimize_for_inference``: BN
    folded, channels-last), ``compiled`` (``compile_model`` of the fast copy: inductor with
    frozen weights; models it fails on, or not named in ``compile``, are left out and the reason
    kept in ``compile_info``), ``onnxruntime`` (the model's file in ``onnx_files``, if any).
    Every runtime's output is checked against eager mode (1e-4 relative to the largest logit)
    before timing."""
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; known: {list(RUNTIMES)}")
    if images is None:
        from mobilevit_edu.measure.latency import photo_batch

        h, w = _pair(image_size)
        if h != w:
            raise ValueError("photo_batch makes square images; pass images= for other sizes")
        images = photo_batch(batch, h, seed=2)
    batch, size = images.shape[0], tuple(images.shape[-2:])
    to_compile = set(models) if compile is True else set() if compile is False else set(compile)
    calls: dict[str, Callable[[], Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    with threads(num_threads):
        for label, model in models.items():
            model.eval()
            with torch.inference_mode():
                reference = model(images).float()
            tol = 1e-4 * max(1.0, reference.abs().max().item())
            candidates: dict[str, Callable[[], Any]] = {}
            if "eager" in runtimes:
                candidates["eager"] = _inference_call(model, images)
            fast = None
            if "eager_fast" in runtimes or "compiled" in runtimes:
                fast = optimize_for_inference(model)
            if "eager_fast" in runtimes:
                candidates["eager_fast"] = _inference_call(fast, images)
            if "compiled" in runtimes:
                if label in to_compile:
                    compiled, info[label] = compile_model(fast, images)
                    if info[label]["compiled"]:
                        candidates["compiled"] = lambda c=compiled: c(images)
                else:
                    info[label] = {"compiled": False, "error": "not requested"}
            if "onnxruntime" in runtimes and label in onnx_files:
                runner = onnx_session(onnx_files[label], num_threads)
                candidates["onnxruntime"] = runner.runner(images)
            for key, call in candidates.items():
                out = call()
                out = out if isinstance(out, torch.Tensor) else torch.from_numpy(out)
                diff = (out.float() - reference).abs().max().item()
                if not diff <= tol:
                    raise RuntimeError(f"{label} in {key} differs from eager by {diff:.3g}")
                calls[f"{label}\t{key}"] = call
    timed = time_interleaved(calls, repeats=repeats, warmup=warmup, num_threads=num_threads,
                             batch=batch)
    out: dict[str, dict[str, Timing]] = {label: {} for label in models}
    for name, timing in timed.items():
        label, key = name.split("\t")
        timing.label = f"{label}, {RUNTIMES[key]}"
        out[label][key] = timing
    return RuntimeLatency(out, info, threads=num_threads, batch=batch, image_size=size)


def _inference_call(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return call


# --- Core ML ---------------------------------------------------------------------------------
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
        with _quiet():
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
    h, w = _pair(image_size)
    channels = in_channels or getattr(model, "in_channels", 3)
    x = torch.rand(1, channels, h, w, generator=torch.Generator().manual_seed(0))
    try:
        with _eval_mode(model), torch.no_grad(), _quiet():
            program = torch.export.export(model, (x,))
            program = program.run_decompositions({})
            ml = ct.convert(program, inputs=[ct.TensorType(name="images", shape=x.shape)],
                            convert_to="mlprogram")
            if path is not None:
                ml.save(str(path))
    except Exception as err:  # noqa: BLE001  (any failure: say why in one line)
        return CoreMLResult(None, _one_line(err),
                            time.perf_counter() - t0, notes=notes, can_predict=on_mac)
    ops: Counter = Counter()
    with contextlib.suppress(Exception):  # a private attribute: counts are a bonus
        ops.update(op.op_type for op in ml._mil_program.functions["main"].operations)
    return CoreMLResult(ml, "", time.perf_counter() - t0, ops, notes, can_predict=on_mac)


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(err: BaseException, limit: int = 240) -> str:
    """``"Type: first line"`` of the innermost cause of ``err`` (exporters wrap the real reason
    in generic "step 1/3 failed" errors), without terminal colour codes."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = _ANSI_RE.sub("", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:limit]


def _version(text: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


# --- figures (chapter 14) --------------------------------------------------------------------
def plot_runtime_latency(
    latency: RuntimeLatency,
    macs_g: dict[str, float],
    *,
    clock: str = "cpu",
    title: str = "",
    name: str = "14_runtime_latency",
):
    """Grouped horizontal bars: one group per model (labelled with its MACs), one bar per
    runtime, each bar labelled with its median time. Saved as ``figures/<name>.png``."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    labels = list(latency.timings)
    cols = latency.runtimes
    if not labels or not cols:
        raise ValueError("nothing to plot")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    height = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(8.2, 0.55 + 0.34 * len(labels) * len(cols)))
    top = 0.0
    for j, c in enumerate(cols):
        for i, label in enumerate(labels):
            v = latency.ms(label, c, clock)
            if v is None:
                continue
            y = i + (j - (len(cols) - 1) / 2) * height
            ax.barh(y, v, height=height * 0.92, color=colours[j % len(colours)], label=RUNTIMES[c])
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=7.5)
            top = max(top, v)
    ax.set_yticks(range(len(labels)),
                  [f"{label}\n{macs_g[label]:.2f} GMACs" for label in labels], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    h, w = latency.image_size
    ax.set_xlabel(f"{'CPU' if clock == 'cpu' else 'wall'} time per batch (ms), batch "
                  f"{latency.batch}, {h} x {w}, {latency.threads} thread"
                  f"{'s' * (latency.threads != 1)}")
    ax.grid(False, axis="y")
    handles, names = ax.get_legend_handles_labels()
    seen = dict(zip(names, handles))
    ax.legend(seen.values(), seen.keys(), fontsize=8.5, loc="lower right")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_time_split(
    splits: dict[str, dict[str, float]],
    *,
    title: str = "",
    xlabel: str = "ONNX Runtime kernel time per image (ms)",
    name: str = "14_ort_time_split",
):
    """Stacked horizontal bars, one per model: milliseconds per category (e.g. the output of
    ``ort_op_times``; a ``"total"`` key is ignored), categories in a shared order and colour
    (``unfold / fold`` hatched). Saved as ``figures/<name>.png``; returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mobilevit_edu.plots.save import save_figure

    if not splits:
        raise ValueError("nothing to plot")
    cats: list[str] = []
    for split in splits.values():
        for c, v in split.items():
            if c != "total" and v > 0 and c not in cats:
                cats.append(c)
    order = ["conv", "matmul", "softmax", "norm", "activation", "unfold / fold",
             "copy / layout", "add / mul / mean", "other"]
    cats.sort(key=lambda c: order.index(c) if c in order else len(order))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] + ["#777777", "#bbbbbb"]
    colours = dict(zip(cats, palette * 2))
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.62 * len(splits)))
    widest = max(sum(v for c, v in s.items() if c != "total") for s in splits.values())
    for row, (label, split) in enumerate(splits.items()):
        left = 0.0
        for c in cats:
            v = split.get(c, 0.0)
            if v <= 0:
                continue
            ax.barh(row, v, left=left, color=colours[c], edgecolor="white", height=0.62,
                    hatch="///" if c == "unfold / fold" else None)
            if v >= 0.05 * widest:  # label only the segments wide enough to hold one
                ax.text(left + v / 2, row, f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white")
            left += v
        ax.text(left, row, f" {left:.1f} ms", va="center", fontsize=8.5)
    ax.set_yticks(range(len(splits)), list(splits), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.14 * widest)
    ax.set_xlabel(xlabel)
    ax.grid(False, axis="y")
    handles = [Patch(facecolor=colours[c], edgecolor="white",
                     hatch="///" if c == "unfold / fold" else None, label=c) for c in cats]
    ax.legend(handles=handles, ncol=min(5, len(cats)), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.28 if len(splits) < 4 else -0.18), frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
