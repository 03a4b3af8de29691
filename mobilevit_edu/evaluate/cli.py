"""``python -m mobilevit_edu.evaluate classify|detect|segment``: the paper's headline numbers
from the released weights, one command each (as timm's ``validate.py`` and cvnets'
``main_eval.py``): ImageNet-1k top-1 (§4.1, Fig. 8), COCO mAP (Table 1), VOC mIoU (Table 2).

Each command reads the weights in whatever layout they come (detected from the key names),
finds the MobileViT size from the tensors' shapes (``--model`` overrides), prepares the images
as the weights' origin did, shows a progress bar on stderr and ends with one line: the result
beside the paper's number (:mod:`mobilevit_edu.evaluate.headline`). ``--json FILE`` also writes
the result. A user's mistake (a missing file or folder, corrupt weights, an unknown model,
weights that do not fit) prints one line on stderr and exits with status 2.

``detect`` and ``segment`` call :mod:`mobilevit_edu.detection.evaluate` and
:mod:`mobilevit_edu.segmentation.evaluate` (imported only by those commands).
"""

from __future__ import annotations

import argparse
import json
import os
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mobilevit_edu.evaluate.classify import (
    SIZES, ClassCountError, evaluate_imagenet, load_classifier,
)
from mobilevit_edu.evaluate.headline import compare_line
from mobilevit_edu.evaluate.origins import preprocessing_for
from mobilevit_edu.models.checkpoints import CheckpointError
from mobilevit_edu.models.registry import list_models

__all__ = ["PROG", "UsageError", "main"]

PROG = "python -m mobilevit_edu.evaluate"
PAPER_SIZE = {"classify": 256, "detect": 320, "segment": 512}  # §4.1, §4.2.1, §4.2.2


class UsageError(Exception):
    """A mistake in the command line's arguments (reported in one line, exit status 2)."""


_EPILOG = """\
examples (the paper's numbers: MobileViT-XXS / XS / S):
  %(prog)s classify --weights mobilevit_s.safetensors --data /data/imagenet/val
      ImageNet-1k top-1 69.0 / 74.8 / 78.4 %% (paper, Fig. 8/§4.1)
  %(prog)s detect --weights ssdlite_mobilevit_s.pt --data /data/coco
      COCO val2017 mAP 24.8 (XS) / 27.7 (S) (paper, Table 1a); XXS 19.9 (cvnets README)
  %(prog)s segment --weights deeplabv3_mobilevit_s.pt --data /data/VOCdevkit
      PASCAL VOC 2012 val mIoU 73.6 / 77.1 / 79.1 %% (paper, Table 2)
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--weights", required=True, metavar="FILE",
                        help="a checkpoint (.safetensors, .pt, .pth, .bin) in any known layout")
    common.add_argument("--data", required=True, metavar="PATH", help="the data set (see above)")
    common.add_argument("--model", default=None, metavar="NAME",
                        help="mobilevit_xxs, mobilevit_xs or mobilevit_s (default: read from "
                        "the weights' shapes)")
    common.add_argument("--batch-size", type=int, default=None, metavar="N")
    common.add_argument("--limit", type=int, default=None, metavar="N",
                        help="score only N images: a quick check, not the paper's number")
    common.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input size (default: the paper's 256 / 320 / 512)")
    common.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    common.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    common.add_argument("--json", default=None, metavar="FILE", help="also write the result here")
    common.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                        help="DataLoader processes (default: up to 4, no more than the CPUs)")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    channels = argparse.ArgumentParser(add_help=False)
    channels.add_argument("--channels", choices=["bgr", "rgb"], default=None,
                          help="channel order fed to the network (default: the weights' origin: "
                          "BGR for cvnets and Hugging Face files, RGB for timm's and the book's)")

    p = argparse.ArgumentParser(
        prog=PROG, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate released MobileViT weights and compare with the paper's numbers.")
    sub = p.add_subparsers(dest="task", required=True, metavar="{classify,detect,segment}")
    c = sub.add_parser(
        "classify", parents=[common, channels], help="ImageNet-1k top-1 / top-5 on a validation folder",
        description="Top-1 / top-5 on PATH/<class>/<image> (ImageNet val in its 1000 synset "
        "folders; a PATH holding val/ uses PATH/val). Sorted folder names are the class order.")
    d = sub.add_parser(
        "detect", parents=[common, channels], help="COCO mAP of an SSDLite checkpoint",
        description="COCO mAP@[.5:.95] with pycocotools against the original annotation file; "
        "images in PATH/val2017 (or PATH itself).")
    d.add_argument("--annotations", default=None, metavar="FILE",
                   help="default: PATH/annotations/instances_val2017.json")
    d.add_argument("--postprocess", choices=["v0.1", "main"], default="v0.1",
                   help="post-processing settings of cvnets v0.1 (the paper's) or main")
    s = sub.add_parser(
        "segment", parents=[common], help="PASCAL VOC mIoU of a DeepLabv3 checkpoint",
        description="mIoU on PASCAL VOC 2012 (PATH: VOCdevkit, VOC2012 or a folder holding them), "
        "scored against the original masks.")
    s.add_argument("--split", default="val", help="ImageSets/Segmentation/<split>.txt")
    s.add_argument("--upsample", choices=["cvnets", "bilinear"], default="cvnets",
                   help="how logits return to each original mask's size (see "
                   "mobilevit_edu.segmentation.evaluate)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Reject what would only fail later: unknown model, bad numbers, missing files."""
    known = list_models() if args.task == "classify" else list(SIZES)
    if args.model is not None and args.model not in known:
        raise UsageError(f"--model {args.model!r}: unknown; use one of {', '.join(known)}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    for flag in ("batch_size", "limit", "image_size", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError as err:
            raise UsageError(f"--device {args.device!r} is not a torch device. Fix: cpu, cuda, "
                             "cuda:1, mps ...") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device here. Fix: --device cpu")
    weights = Path(args.weights)
    hf_folder = args.task == "segment" and weights.is_dir()  # a Hugging Face snapshot folder
    if not (weights.is_file() or hf_folder):
        what = "is a folder, not a file" if weights.is_dir() else "no such file"
        raise UsageError(f"--weights {weights}: {what}. Fix: pass the checkpoint file")
    if not Path(args.data).is_dir():
        what = "is a file, not a folder" if Path(args.data).exists() else "no such folder"
        raise UsageError(f"--data {args.data}: {what}")


def _size(model: torch.nn.Module, fallback: str | None) -> str | None:
    """The MobileViT name (``mobilevit_xs``) of a classifier or of a detector's/segmenter's
    backbone, read off its config."""
    for part in (model, getattr(model, "backbone", None)):
        name = getattr(getattr(part, "config", None), "name", None)
        if isinstance(name, str) and name in SIZES:
            return name
    return fallback if fallback in SIZES else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value < 0 or math.isnan(value) else f"{100 * value:.2f}"


def _classify(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.data)
    if (root / "val").is_dir():
        root = root / "val"
    model, layout = load_classifier(args.weights, args.model)
    pre = preprocessing_for(layout, channels=args.channels, image_size=args.image_size)
    name = _size(model, args.model)
    print(f"{name or args.model}: {layout} layout, {getattr(model, 'num_classes', '?')} classes; "
          f"{pre.describe()}; data {root}", flush=True)
    metrics = evaluate_imagenet(model, root, preprocessing=pre, batch_size=args.batch_size or 64,
                                device=args.device, limit=args.limit, workers=args.workers,
                                progress=not args.no_progress)
    line = f"top-1 {_pct(metrics['top1'])} %  top-5 {_pct(metrics['top5'])} %"
    return {"metrics": metrics, "line": line, "name": name, "origin": pre.origin, "layout": layout,
            "preprocessing": pre.as_dict(), "data": str(root),
            "comparable": getattr(model, "num_classes", None) == 1000}


def _detect(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.data)
    images = root / "val2017" if (root / "val2017").is_dir() else root
    annotations = (Path(args.annotations) if args.annotations
                   else root / "annotations" / "instances_val2017.json")
    if not annotations.is_file():
        raise UsageError(f"annotation file not found: {annotations}. Fix: pass --annotations "
                         "FILE (COCO's instances_val2017.json)")
    from mobilevit_edu.detection.evaluate import evaluate_coco, load_detector

    model, origin = load_detector(args.weights, name=args.model)
    name = _size(model, args.model)
    print(f"{name or 'SSDLite'}: {origin} weights; images {images}; annotations {annotations}; "
          f"post-processing {args.postprocess}", flush=True)
    metrics = evaluate_coco(model, images, annotations, origin=origin,
                            image_size=args.image_size or 320, postprocess=args.postprocess,
                            batch_size=args.batch_size or 16, device=args.device,
                            limit=args.limit, progress=not args.no_progress,
                            channels=args.channels, workers=args.workers)
    line = (f"mAP {_pct(metrics.get('mAP'))}  AP50 {_pct(metrics.get('AP50'))}  "
            f"AP75 {_pct(metrics.get('AP75'))}  AP_S/M/L {_pct(metrics.get('AP_small'))} / "
            f"{_pct(metrics.get('AP_medium'))} / {_pct(metrics.get('AP_large'))}")
    return {"metrics": metrics, "line": line, "name": name, "origin": origin,
            "data": str(images), "annotations": str(annotations),
            "comparable": getattr(model, "num_classes", 81) == 81}  # COCO: 80 + background


def _segment(args: argparse.Namespace) -> dict[str, Any]:
    from mobilevit_edu.segmentation.evaluate import evaluate_voc, load_segmenter

    model, origin = load_segmenter(args.weights, name=args.model)
    name = _size(model, args.model)
    print(f"{name or 'DeepLabv3'}: {origin} weights; VOC {args.data} split {args.split}", flush=True)
    metrics = evaluate_voc(model, args.data, origin=origin, split=args.split,
                           image_size=args.image_size or 512, batch_size=args.batch_size or 4,
                           device=args.device, limit=args.limit, progress=not args.no_progress,
                           upsample=args.upsample, num_workers=args.workers)
    line = f"mIoU {_pct(metrics.get('miou'))} %  pixel accuracy {_pct(metrics.get('pixel_acc'))} %"
    return {"metrics": metrics, "line": line, "name": name, "origin": origin,
            "data": str(args.data), "comparable": getattr(model, "num_classes", 21) == 21}


_RUN = {"classify": _classify, "detect": _detect, "segment": _segment}


def _jsonable(value: Any) -> Any:
    """Tensors, numpy numbers and NaN (-> null) made plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _report(args: argparse.Namespace, out: dict[str, Any]) -> str:
    """The final line: the result, then the paper's number (when it compares)."""
    if out["name"] is None:
        return out["line"]
    if not out["comparable"]:
        return f"{out['line']}  (another number of classes than the paper's data set: no paper number)"
    line = f"{out['line']}  {compare_line(args.task, out['name'], origin=out['origin'])}"
    caveats = []
    if args.limit is not None:
        caveats.append(f"{out['metrics'].get('images', args.limit)} images only (--limit)")
    if args.image_size is not None and args.image_size != PAPER_SIZE[args.task]:
        caveats.append(f"at {args.image_size} px, the paper's is {PAPER_SIZE[args.task]}")
    return line + (f"  [{'; '.join(caveats)}: not comparable]" if caveats else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user's mistake)."""
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        out = _RUN[args.task](args)
    except (UsageError, CheckpointError, ClassCountError, FileNotFoundError, NotADirectoryError,
            json.JSONDecodeError) as err:
        message = " ".join(str(err).split())  # one line, whatever the error's layout
        print(f"{PROG} {args.task}: error: {message}", file=sys.stderr)
        return 2
    line = _report(args, out)
    print(line, flush=True)
    if args.json:
        record = {"task": args.task, "weights": str(args.weights), "model": out["name"],
                  "limit": args.limit, "result": line,
                  **{k: v for k, v in out.items() if k not in ("line", "name", "comparable")}}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    return 0
