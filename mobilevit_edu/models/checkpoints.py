"""Official weights in, our weights out: the Hugging Face, timm and cvnets checkpoint layouts.

Paper: §4.1 (the released ImageNet-1k models). The weights Apple released with the paper's code
(apple/ml-cvnets v0.1) were converted by Hugging Face (``apple/mobilevit-{xx-small,x-small,small}``)
and by timm (``mobilevit_{xxs,xs,s}.cvnets_in1k``). All three hold the same numbers under different
names, and differ in one structural point: cvnets and timm store the attention input projection as
one stacked ``qkv`` matrix ``[3d, d]`` (rows: query, key, value), Hugging Face as three ``[d, d]``
matrices. Our model uses the stacked form.

The mapping is generated from *our* model's keys, so every layout is checked completely: a key
the model needs but the file lacks, or a key the file has that the model cannot place, raises
``CheckpointError`` listing them; a tensor of the wrong shape names the key and both shapes.

Preprocessing the official weights expect (``official_preprocess``): the v0.1 training code read
images with OpenCV, which yields **BGR**, never converted them to RGB and only divided by 255 (no
mean/std). Evaluation resized the shorter side to 288 and centre-cropped 256 x 256. A model fed
RGB still works, but worse: the weights learnt BGR statistics.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "remap_state_dict",
    "Layout",
    "LAYOUTS",
    "CheckpointError",
    "detect_layout",
    "key_map",
    "to_ours",
    "from_ours",
    "read_checkpoint_file",
    "read_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "official_preprocess",
]

Layout = Literal["ours", "hf", "timm", "cvnets"]
LAYOUTS: tuple[str, ...] = ("ours", "hf", "timm", "cvnets")
_QKV = ("query", "key", "value")


class CheckpointError(KeyError):
    """A checkpoint that cannot be read (missing, truncated, corrupt or unsafe file) or does not
    fit the model (missing, unexpected or mis-shaped tensors); the message names the file or the
    keys, and the fix."""

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0])


# --- our key -> their key(s) -----------------------------------------------------------------
# Each rule is (regex on our key, replacement). Rules run in order on the whole key.
_CONV_BN = [(r"\.conv\.", ".convolution."), (r"\.bn\.", ".normalization.")]

_HF_RULES: list[tuple[str, str]] = [
    (r"^stem\.", "mobilevit.conv_stem."),
    (r"^layer([12])\.(\d+)\.", lambda m: f"mobilevit.encoder.layer.{int(m[1]) - 1}.layer.{m[2]}."),
    (r"^layer([345])\.0\.", lambda m: f"mobilevit.encoder.layer.{int(m[1]) - 1}.downsampling_layer."),
    (r"^layer([345])\.1\.", lambda m: f"mobilevit.encoder.layer.{int(m[1]) - 1}."),
    (r"\.conv_1x1\.weight$", ".conv_1x1.convolution.weight"),
    (r"\.transformer\.(\d+)\.norm1\.", r".transformer.layer.\1.layernorm_before."),
    (r"\.transformer\.(\d+)\.attn\.proj\.", r".transformer.layer.\1.attention.output.dense."),
    (r"\.transformer\.(\d+)\.attn\.qkv\.", r".transformer.layer.\1.attention.attention.qkv."),
    (r"\.transformer\.(\d+)\.norm2\.", r".transformer.layer.\1.layernorm_after."),
    (r"\.transformer\.(\d+)\.mlp\.fc1\.", r".transformer.layer.\1.intermediate.dense."),
    (r"\.transformer\.(\d+)\.mlp\.fc2\.", r".transformer.layer.\1.output.dense."),
    (r"\.norm\.(weight|bias)$", r".layernorm.\1"),
    (r"\.conv_proj\.", ".conv_projection."),
    (r"^conv_1x1_exp\.", "mobilevit.conv_1x1_exp."),
    *_CONV_BN,
]

_TIMM_RULES: list[tuple[str, str]] = [
    (r"^layer(\d)\.", lambda m: f"stages.{int(m[1]) - 1}."),
    (r"\.expand_1x1\.", ".conv1_1x1."),
    (r"\.conv_3x3\.", ".conv2_kxk."),
    (r"\.reduce_1x1\.", ".conv3_1x1."),
    (r"\.fusion\.", ".conv_fusion."),
    (r"^conv_1x1_exp\.", "final_conv."),
    (r"^classifier\.", "head.fc."),
]

_CVNETS_RULES: list[tuple[str, str]] = [
    (r"^stem\.", "conv_1."),
    (r"^layer(\d)\.(\d+)\.(expand_1x1|conv_3x3|reduce_1x1)\.",
     lambda m: f"layer_{m[1]}.{m[2]}.block."
     + {"expand_1x1": "exp_1x1", "conv_3x3": "conv_3x3", "reduce_1x1": "red_1x1"}[m[3]] + "."),
    (r"^layer(\d)\.1\.conv_kxk\.", r"layer_\1.1.local_rep.conv_3x3."),
    (r"^layer(\d)\.1\.conv_1x1\.weight$", r"layer_\1.1.local_rep.conv_1x1.conv.weight"),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.norm1\.", r"layer_\1.1.global_rep.\2.pre_norm_mha.0."),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.attn\.qkv\.", r"layer_\1.1.global_rep.\2.pre_norm_mha.1.qkv_proj."),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.attn\.proj\.", r"layer_\1.1.global_rep.\2.pre_norm_mha.1.out_proj."),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.norm2\.", r"layer_\1.1.global_rep.\2.pre_norm_ffn.0."),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.mlp\.fc1\.", r"layer_\1.1.global_rep.\2.pre_norm_ffn.1."),
    (r"^layer(\d)\.1\.transformer\.(\d+)\.mlp\.fc2\.", r"layer_\1.1.global_rep.\2.pre_norm_ffn.4."),
    # the final LayerNorm is the last entry of cvnets' global_rep Sequential: index = depth
    (r"^layer(\d)\.1\.norm\.", r"layer_\1.1.global_rep.{depth}."),
    (r"^layer(\d)\.1\.(conv_proj|fusion)\.", r"layer_\1.1.\2."),
    (r"^classifier\.", "classifier.fc."),
    (r"\.conv\.(weight|bias)$", r".block.conv.\1"),
    (r"\.bn\.", ".block.norm."),
]

_RULES = {"hf": _HF_RULES, "timm": _TIMM_RULES, "cvnets": _CVNETS_RULES}


def _translate(key: str, layout: str, model: nn.Module) -> list[str]:
    """Our key -> the key(s) it has in ``layout`` (three keys for an HF qkv tensor)."""
    if layout == "ours":
        return [key]
    out = key
    for pattern, repl in _RULES[layout]:
        out = re.sub(pattern, repl, out)
    if "{depth}" in out:
        stage = int(re.match(r"^layer(\d)", key)[1])
        out = out.replace("{depth}", str(getattr(model, f"layer{stage}")[1].depth))
    if layout == "hf" and ".attention.attention.qkv." in out:
        return [out.replace(".qkv.", f".{name}.") for name in _QKV]
    return [out]


def key_map(model: nn.Module, layout: Layout) -> dict[str, list[str]]:
    """For every tensor in ``model.state_dict()``: our key -> its key(s) in ``layout``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known: {LAYOUTS}")
    return {k: _translate(k, layout, model) for k in model.state_dict()}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> Layout:
    """Guess the layout from the key names."""
    keys = list(state_dict)
    if any(k.startswith("mobilevit.") for k in keys):
        return "hf"
    if any(k.startswith("stages.") for k in keys):
        return "timm"
    if any(k.startswith(("conv_1.block.", "layer_1.")) for k in keys):
        return "cvnets"
    if any(k.startswith(("stem.conv.", "layer1.")) for k in keys):
        return "ours"
    raise CheckpointError(
        f"cannot tell the checkpoint's layout from its keys (first keys: {keys[:5]}); "
        f"pass layout= one of {LAYOUTS}"
    )


def _unwrap(obj: Mapping) -> dict[str, torch.Tensor]:
    """Accept a bare state dict, or one wrapped as {'state_dict': ...} / {'model': ...}, and
    strip a DistributedDataParallel 'module.' prefix."""
    for wrapper in ("state_dict", "model_state_dict", "model", "ema_state_dict"):
        if wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p.rstrip(".") + ".") for p in ignore)


def _describe(keys: Sequence[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def remap_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    ours: Mapping[str, torch.Tensor],
    mapping: Mapping[str, Sequence[str]],
    *,
    ignore: Sequence[str] = (),
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a checkpoint's tensors to our keys through ``mapping`` (our key -> their key(s);
    several are concatenated along dim 0, as Hugging Face's split q/k/v) and check them.

    Returns ``(converted, problems)``: ``problems`` lists, in the file's names, every missing,
    unexpected and mis-shaped tensor (empty when the file fits). BatchNorm's
    ``num_batches_tracked`` counters are optional, as in PyTorch, timm and Hugging Face: where
    the file lacks one the model's own value is kept. ``ignore`` lists our key prefixes to leave
    out on purpose. Every loader of the library (classification, SSDLite, DeepLabv3 in each
    layout) goes through this one function."""
    converted: dict[str, torch.Tensor] = {}
    missing, used, bad_shapes = [], set(), []
    for key, theirs in mapping.items():
        if _ignored(key, ignore):
            used.update(theirs)  # their counterpart is not "unexpected" either
            continue
        if not all(t in state_dict for t in theirs):
            if key.endswith(".num_batches_tracked"):  # BatchNorm's step counter: keep ours
                converted[key] = ours[key]
                continue
            missing.extend(t for t in theirs if t not in state_dict)
            continue
        tensor = (torch.cat([state_dict[t] for t in theirs], 0) if len(theirs) > 1
                  else state_dict[theirs[0]])
        used.update(theirs)
        if tuple(tensor.shape) != tuple(ours[key].shape):
            bad_shapes.append(
                f"{theirs[0] if len(theirs) == 1 else key}: checkpoint {tuple(tensor.shape)} vs "
                f"model {tuple(ours[key].shape)}"
            )
            continue
        converted[key] = tensor
    unexpected = [k for k in state_dict if k not in used]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_describe(unexpected)}")
    if bad_shapes:
        problems.append(f"shape mismatches ({len(bad_shapes)}): " + "; ".join(bad_shapes[:8]))
    return converted, problems


def to_ours(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
    layout: Layout | None = None,
    *,
    ignore: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """Convert a checkpoint in ``layout`` (detected if None) to ``model``'s own keys.

    ``ignore`` lists our key prefixes to leave out on purpose (e.g. ``("classifier",)`` to
    fine-tune on a new number of classes); nothing else is dropped silently.
    """
    state_dict = _unwrap(state_dict)
    layout = layout or detect_layout(state_dict)
    converted, problems = remap_state_dict(state_dict, model.state_dict(), key_map(model, layout),
                                           ignore=ignore)
    if problems:
        hint = (
            "check the model size (xxs/xs/s), num_classes and output_stride, the layout "
            f"(got {layout!r}), or pass ignore=('classifier',) to drop the classifier on purpose"
        )
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}: "
                              + " | ".join(problems) + f". Fix: {hint}")
    return converted


def from_ours(model: nn.Module, layout: Layout) -> dict[str, torch.Tensor]:
    """Export ``model``'s weights in ``layout`` (e.g. to load them into transformers or timm)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        theirs = _translate(key, layout, model)
        parts = tensor.chunk(len(theirs), 0) if len(theirs) > 1 else (tensor,)
        for name, part in zip(theirs, parts):
            out[name] = part.detach().clone()
    return out


_NOT_READABLE_FIX = (
    "Fix: copy or download the file again (it may have been cut short by a full disk or an "
    "interrupted transfer), or point to another checkpoint"
)


def _reason(err: Exception) -> str:
    """One short line from a reader's error (torch's weights-only errors run to a paragraph)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(". Please use")[0] if lines else "no details"
    return f"{type(err).__name__}: {first}"[:200]


def read_checkpoint_file(path: str | os.PathLike) -> dict[str, torch.Tensor | Any]:
    """The dict stored in a ``.safetensors`` or ``.pt``/``.pth``/``.bin`` file, read safely
    (``torch.load(weights_only=True)``: tensors and plain Python values only), on the CPU.

    Whatever goes wrong reading it (no such file, a truncated or corrupt file, one that is not
    a checkpoint at all, one holding Python objects that ``weights_only`` refuses, one holding
    something other than a dict) raises a :class:`CheckpointError` that names the file and the
    fix, never a raw zip, pickle or safetensors error. The training loop's ``resume`` and
    :func:`load_checkpoint` both read files through it.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise CheckpointError(
            f"cannot read checkpoint {path}: {what}. Fix: pass the path of a .pt, .pth, .bin or "
            ".safetensors file (written by save_checkpoint, torch.save or safetensors)"
        )
    kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch (torch.save)"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # zip, pickle, EOF, OS, KeyError (torch's zip reader), safetensors
        reason = _reason(err)
        if "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} holds Python objects that torch.load(weights_only=True) refuses to "
                f"unpickle ({reason}). Fix: re-save it with tensors and plain values only, "
                "e.g. torch.save(model.state_dict(), path); if you trust the file, load it "
                "yourself with torch.load(path, weights_only=False)"
            ) from err
        raise CheckpointError(
            f"{path} is not a readable {kind} checkpoint: it is truncated, corrupt or not a "
            f"checkpoint at all ({path.stat().st_size:,} bytes; {reason}). {_NOT_READABLE_FIX}"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a dict of tensors. Fix: save a state dict, "
            "e.g. torch.save(model.state_dict(), path) or save_checkpoint({...}, path)"
        )
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (see :func:`read_checkpoint_file`), unwrapped from
    ``{'state_dict': ...}`` / ``{'model': ...}`` and a DistributedDataParallel ``module.``
    prefix."""
    return _unwrap(read_checkpoint_file(path))


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    layout: Layout | None = None,
    *,
    ignore: Sequence[str] = (),
) -> nn.Module:
    """Load a checkpoint file or state dict of any known layout into ``model`` (strictly)."""
    sd = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else source
    converted = to_ours(sd, model, layout, ignore=ignore)
    result = model.load_state_dict(converted, strict=not ignore)
    if ignore:  # only the ignored keys may be missing
        stray = [k for k in result.missing_keys if not _ignored(k, ignore)]
        if stray or result.unexpected_keys:
            raise CheckpointError(f"missing {stray}, unexpected {result.unexpected_keys}")
    return model


def save_checkpoint(obj: Mapping, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` (or safetensors for a ``.safetensors`` path) atomically:
    to a temporary file in the same folder, then renamed, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in obj.items()}, tmp)
        else:
            torch.save(dict(obj), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def official_preprocess(image, resize: int = 288, crop: int = 256) -> torch.Tensor:
    """A PIL image (or uint8 ``[H, W, 3]`` RGB array) -> ``[3, crop, crop]`` float **BGR** in [0, 1].

    Shorter side resized to ``resize`` (bilinear), centre crop ``crop`` x ``crop``, channels
    flipped RGB -> BGR, scaled by 1/255 with no mean/std: what the released v0.1 weights saw.
    """
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"expected a PIL image or a uint8 [H, W, 3] RGB array, got {array.dtype} {array.shape}"
            )
        image = Image.fromarray(array)
    image = image.convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    new_w, new_h = (resize, int(h * scale)) if w <= h else (int(w * scale), resize)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)  # [H, W, 3] RGB in [0, 1]
    return x.permute(2, 0, 1).flip(0).contiguous()  # [H, W, 3] -> [3, H, W], RGB -> BGR
