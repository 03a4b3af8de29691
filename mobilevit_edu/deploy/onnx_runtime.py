"""Deployment, step 2: run an exported ONNX file with ONNX Runtime, check it against PyTorch,
and see where its time goes, kernel by kernel.

Paper: §4.3 and Table 11 time the converted networks in a mobile runtime (Core ML on an
iPhone 12); book chapter 14 uses ONNX Runtime on a CPU as the runtime at hand:

* ``onnx_session`` / ``OnnxModel``: open a file with ONNX Runtime's CPU provider and a stated
  number of threads, and call it like a PyTorch model, with clear errors for a wrong size, batch
  or channel count;
* ``check_onnx``: the largest difference between ONNX Runtime's and PyTorch's outputs;
* ``ort_op_times``: milliseconds per forward pass per kind of kernel, from ONNX Runtime's
  profiler, with the kernels that come from ``unfold`` and ``fold`` in their own group.

Files are written by ``mobilevit_edu.deploy.export``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mobilevit_edu.deploy.export import eval_mode, onnx_node_places, require_optional

__all__ = ["OnnxModel", "onnx_session", "check_onnx", "ORT_CATEGORIES", "ort_category", "ort_op_times"]


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
    ort = require_optional("onnxruntime")
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
    with eval_mode(model), torch.inference_mode():
        for x in batches:
            expected = model(x).float().numpy()
            got = runner(x)
            if got.shape != expected.shape:
                raise ValueError(f"ONNX output {got.shape} vs PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


# ONNX Runtime operator (after its fusions) -> category, first match wins
ORT_CATEGORIES: tuple[tuple[tuple[str, ...], str], ...] = (
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
    """The category of an ONNX Runtime kernel, as in ``measure.operators.OP_CATEGORIES`` where
    possible."""
    for names, category in ORT_CATEGORIES:
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
    onnx = require_optional("onnx")
    if by not in ("category", "op"):
        raise ValueError(f"by must be 'category' or 'op', got {by!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    places = onnx_node_places(onnx.load(str(path), load_external_data=False).graph)
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
