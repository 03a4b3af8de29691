"""``python -m mobilevit_edu.train``: train a model of the book with the paper's recipe (§4.1)
on the book's shapes, CIFAR-10 or an ImageFolder tree, on one process or many (``torchrun``).

A user's mistake (an unknown model or data spec, a missing folder, a file that is not a
training checkpoint given to ``--resume``) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mobilevit_edu import data as D
from mobilevit_edu.data.sampler import MultiScaleSampler, StandardSampler
from mobilevit_edu.models.checkpoints import CheckpointError
from mobilevit_edu.models.registry import create_model, list_models
from mobilevit_edu.train.classification import train
from mobilevit_edu.train.distributed import distributed_context
from mobilevit_edu.train.loop import load_training_state
from mobilevit_edu.train.recipe import TrainConfig

__all__ = ["UsageError", "build_data", "main"]

PROG = "python -m mobilevit_edu.train"


class UsageError(Exception):
    """A mistake in the command line's arguments (reported in one line, exit status 2)."""


_EPILOG = """\
data:
  shapes:TASK    the book's rendered shapes (TASK: shape, same_colour, ...), rendered at
                 --image-size (or at each multi-scale resolution); --train-size/--val-size images
  cifar10:PATH   a folder with CIFAR-10's python batches (data_batch_1..5, test_batch)
  folder:PATH    an ImageFolder tree PATH/train/<class>/*.jpg and PATH/val/<class>/*.jpg

examples:
  python -m mobilevit_edu.train --model mobilevit_xxs --data shapes:shape --image-size 64 \\
      --epochs 3 --batch-size 32 --out runs/x
  python -m mobilevit_edu.train ... --multi-scale          # the paper's multi-scale sampler
  python -m mobilevit_edu.train ... --resume runs/x/last.pt  # continue a run

many GPUs or machines (DDP; each rank reads its shard, only rank 0 writes):
  torchrun --nproc_per_node 8 -m mobilevit_edu.train --model mobilevit_s \\
      --data folder:/data/imagenet --image-size 256 --epochs 300 --batch-size 128 \\
      --multi-scale --out runs/imagenet
  torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
      --nproc_per_node 8 -m mobilevit_edu.train ...          (and --node_rank 1 on the other)
  --batch-size is per process: the paper's 1024 = 8 GPUs x 128.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train a model of the book with the MobileViT recipe (paper §4.1).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainConfig()
    p.add_argument("--model", default="mobilevit_xxs", help="a name from create_model")
    p.add_argument("--data", default="shapes:shape", help="shapes:TASK, cifar10:PATH, folder:PATH")
    p.add_argument("--image-size", type=int, default=64, help="training (base) resolution")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="per process (base batch)")
    p.add_argument("--val-batch-size", type=int, default=100)
    p.add_argument("--train-size", type=int, default=2000, help="shapes: training images")
    p.add_argument("--val-size", type=int, default=500, help="shapes: validation images")
    p.add_argument("--multi-scale", action="store_true", help="the multi-scale sampler")
    p.add_argument("--min-size", type=int, default=None, help="multi-scale: smallest (0.625x)")
    p.add_argument("--max-size", type=int, default=None, help="multi-scale: largest (1.25x)")
    p.add_argument("--n-scales", type=int, default=5)
    p.add_argument("--divisor", type=int, default=None,
                   help="multi-scale sizes are multiples of this (default 32, or 8 below 128 px)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--warmup-lr", type=float, default=d.warmup_lr)
    p.add_argument("--warmup-iters", type=int, default=None,
                   help="default: one epoch's iterations (the paper: 3000)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--ema-momentum", type=float, default=d.ema_momentum, help="0 turns EMA off")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="mixed precision (CUDA only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/train", help="output folder (metrics, last.pt)")
    p.add_argument("--resume", default=None, help="a last.pt to continue from")
    p.add_argument("--log-format", choices=["csv", "json", "both"], default="both")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def build_data(spec: str, image_size: int, args: argparse.Namespace):
    """(train dataset, val dataset, number of classes) for a ``--data`` spec. Readers' data get
    the paper's augmentation (random resized crop + flip) for training and resize + centre crop
    for validation; the shapes are rendered natively at every resolution (cached in memory)."""
    kind, _, arg = spec.partition(":")
    if kind not in ("shapes", "cifar10", "folder") or (kind != "shapes" and not arg):
        raise UsageError(f"--data {spec!r}: expected shapes:TASK, cifar10:PATH or folder:PATH")
    if kind == "shapes":
        task = arg or "shape"
        if task not in D.TASKS:
            raise UsageError(f"--data {spec!r}: unknown task {task!r}; tasks: {', '.join(D.TASKS)}")
        tr = D.ShapesDataset(args.train_size, task=task, image_size=image_size, seed=args.seed,
                             cache=True)
        va = D.ShapesDataset(args.val_size, task=task, image_size=image_size,
                             seed=args.seed + 10_000, cache=True)
        return tr, va, tr.num_classes
    if kind == "cifar10":
        tr = D.CIFAR10(arg, train=True, transform=D.train_transform(image_size),
                       image_size=image_size)
        va = D.CIFAR10(arg, train=False, image_size=image_size)
        return tr, va, tr.num_classes
    root = Path(arg)
    tr_root = root / "train" if (root / "train").is_dir() else root
    va_root = next((root / v for v in ("val", "validation", "test") if (root / v).is_dir()), None)
    tr = D.ImageFolder(tr_root, image_size=image_size, transform=D.train_transform(image_size))
    va = (D.ImageFolder(va_root, image_size=image_size, transform=D.eval_transform(image_size))
          if va_root is not None else None)
    return tr, va, tr.num_classes


def _run(args: argparse.Namespace) -> int:
    """Build the data, sampler, config and model from the arguments and train."""
    if args.model not in list_models():
        raise UsageError(f"--model {args.model!r}: unknown; known models: "
                         f"{', '.join(list_models())}")
    rank, world, _ = distributed_context()
    train_ds, val_ds, num_classes = build_data(args.data, args.image_size, args)
    if args.multi_scale:
        base = args.image_size
        sampler = MultiScaleSampler(
            len(train_ds), base_size=base, base_batch=args.batch_size,
            min_size=args.min_size or max(32, int(base * 0.625)),
            max_size=args.max_size or int(base * 1.25), n_scales=args.n_scales,
            divisor=args.divisor or (32 if base >= 128 else 8),
            num_replicas=world, rank=rank, seed=args.seed)
    else:
        sampler = StandardSampler(len(train_ds), args.image_size, args.batch_size,
                                  num_replicas=world, rank=rank, seed=args.seed)
    iters = len(sampler)
    config = TrainConfig(
        model=args.model, num_classes=num_classes, epochs=args.epochs, lr=args.lr,
        min_lr=args.min_lr, warmup_lr=args.warmup_lr,
        warmup_iters=args.warmup_iters if args.warmup_iters is not None else iters,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        ema_momentum=args.ema_momentum or None, grad_clip=args.grad_clip, amp=args.amp,
        seed=args.seed, out_dir=args.out, workers=args.workers, batch_size=args.batch_size,
        val_batch_size=args.val_batch_size, log_format=args.log_format,
        progress=False if args.no_progress else None, device=args.device)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    extra = {"image_size": args.image_size} if args.model.startswith("vit") else {}
    model = create_model(args.model, num_classes=num_classes, **extra)
    if rank == 0:
        n = sum(p.numel() for p in model.parameters())
        print(f"{args.model}: {n:,} parameters, {num_classes} classes, {len(train_ds)} training "
              f"images, {world} process(es), {iters} batches per epoch per process", flush=True)
    history = train(model, train_ds, val_ds, config, sampler=sampler, resume=args.resume)
    if rank == 0 and history:
        last = history[-1]
        print(f"done: val_acc={last.get('val_acc', float('nan')):.4f} "
              f"ema_val_acc={last.get('ema_val_acc', float('nan')):.4f} -> {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user's mistake)."""
    args = _parser().parse_args(argv)
    try:
        if args.resume is not None and not Path(args.resume).is_file():
            raise UsageError(f"--resume {args.resume}: no such file (give the last.pt of a run)")
        if args.resume is not None:
            load_training_state(args.resume)  # a corrupt file fails here, before any work
        return _run(args)
    except (UsageError, CheckpointError, FileNotFoundError, NotADirectoryError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
