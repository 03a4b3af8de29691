"""The one training loop of the book: the recipe of §4.1 around any task's forward and loss.

Classification (chapter 10), detection (chapter 12) and segmentation (chapter 13) differ only in
what one batch is, how its loss is computed and how a model is scored; everything else is the
paper's recipe and is done here, once, for all of them:

* the device (``config.device``, else this rank's GPU if there is one, else the CPU), the seed
  (``config.seed + rank``) and the batches (an :class:`EpochBatchSampler` of ``config.batch_size``
  unless a batch sampler such as the multi-scale sampler of §3.3 is given);
* the learning rate of every update (:func:`lr_at`; a parameter group may carry an
  ``lr_multiplier``, as the official segmentation head does), AdamW, optional gradient clipping
  and the EMA of the weights;
* mixed precision on a GPU (``config.amp``: bf16 autocast, or fp16 with a ``GradScaler``);
* data-parallel training under ``torchrun`` (DDP; ranks in lockstep, only rank 0 writes);
* a tqdm bar, one line per epoch, ``metrics.csv``/``metrics.json`` and an atomic checkpoint
  (``last.pt``, loadable with ``weights_only=True``) every ``config.checkpoint_every`` epochs, and
  ``resume=`` that continues bit-exactly on the CPU.

A task is a :class:`Task`: a ``step`` (one batch -> :class:`StepOutput`), an optional
``evaluate`` and, where it needs them, its own collate function and optimizer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.models.checkpoints import CheckpointError, read_checkpoint_file, save_checkpoint
from mobilevit_edu.train.distributed import (
    EpochBatchSampler,
    average_buffers,
    distributed_context,
    init_distributed,
    rng_state,
    seed_everything,
    set_rng_state,
)
from mobilevit_edu.train.recipe import EMA, History, TrainConfig, build_optimizer, lr_at

__all__ = ["StepOutput", "Task", "fit", "amp_context", "resolve_device", "load_training_state",
           "to_channels_last"]


class StepOutput(NamedTuple):
    """What a task's ``step`` returns for one batch."""

    loss: torch.Tensor  # the scalar that backward() sees
    sums: dict[str, float]  # metric sums over the batch; the epoch row reports sum / count
    count: int  # what the sums are divided by (images, or 1 for a per-batch mean)
    size: tuple[int, int] | None = None  # (H, W) of the batch, shown in the progress bar
    images: int | None = None  # images in the batch (default: count)


@dataclass(frozen=True)
class Task:
    """What one kind of training gives :func:`fit` (see the module docstring)."""

    name: str
    step: Callable[[nn.Module, Any, torch.device], StepOutput | None]
    evaluate: Callable[[nn.Module, Any, TrainConfig, torch.device], dict[str, float]] | None = None
    evaluate_ema: bool = True  # also score the EMA model; its keys get the prefix "ema_"
    collate: Callable | None = None  # DataLoader collate_fn of the training batches
    build_optimizer: Callable[[nn.Module, TrainConfig], torch.optim.Optimizer] = build_optimizer
    smooths_labels: bool = False  # the step's loss honours config.label_smoothing


def resolve_device(config: TrainConfig) -> torch.device:
    """``config.device``, else this rank's GPU (``LOCAL_RANK``) if CUDA is available, else CPU."""
    if config.device is not None:
        return torch.device(config.device)
    if torch.cuda.is_available():
        device = torch.device("cuda", distributed_context()[2])
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def amp_context(device: torch.device, amp: str):
    """Autocast for ``amp`` on a CUDA device (bf16, or fp16 where bf16 is missing); else nothing."""
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    if amp == "auto" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """A ``last.pt`` written by :func:`fit`, checked: a file that is not one raises
    :class:`~mobilevit_edu.models.checkpoints.CheckpointError` naming the file."""
    state = read_checkpoint_file(path)
    missing = [k for k in ("model", "optimizer", "epoch", "iteration", "rng") if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a training checkpoint of this book (missing {', '.join(missing)}); "
            "pass the last.pt that a training run wrote into its out_dir")
    return state


def to_channels_last(batch: Any) -> Any:
    """``batch`` with every 4-D tensor in it (images) in NHWC memory order; other parts as
    they are (tuples, named tuples and lists are rebuilt around the converted tensors)."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_channels_last(b) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_channels_last(b) for b in batch)
    return batch


def _set_epoch(obj: Any, epoch: int) -> None:
    for target in (obj, getattr(obj, "batch_sampler", None), getattr(obj, "sampler", None)):
        if target is not None and hasattr(target, "set_epoch"):
            target.set_epoch(epoch)


def _grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    fp16 = amp == "fp16" or (amp == "auto" and device.type == "cuda"
                             and not torch.cuda.is_bf16_supported())
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and fp16)


def _reduce(values: list[float], device: torch.device, world: int) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if world > 1:
        t = t.to(device) if device.type == "cuda" else t
        torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Any,
    config: TrainConfig,
    task: Task,
    *,
    sampler: torch.utils.data.Sampler | None = None,
    resume: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` in place on ``task`` with ``config`` and return the per-epoch History.

    ``train_data`` is a dataset (batched by ``sampler``, a batch sampler, or an
    :class:`EpochBatchSampler` of ``config.batch_size``) or a ready ``DataLoader``; ``val_data``
    (anything the task's ``evaluate`` accepts, or ``None``) is scored after every epoch.
    ``resume`` (a ``last.pt``) restores the model, EMA, optimizer, scaler, counters, history and
    random states and continues with the next epoch."""
    if config.label_smoothing and not task.smooths_labels:
        raise ValueError(
            f"the {task.name} task's loss has no label smoothing, but the config asks for "
            f"label_smoothing={config.label_smoothing}; set label_smoothing=0.0")
    device = resolve_device(config)
    started_pg = init_distributed(device)
    rank, world, _ = distributed_context()
    is_main = rank == 0
    amp = config.amp if device.type == "cuda" else "off"
    state = load_training_state(resume) if resume is not None else None

    if isinstance(train_data, DataLoader):
        loader = train_data
    else:
        if sampler is None:
            sampler = EpochBatchSampler(len(train_data), config.batch_size, seed=config.seed,
                                        num_replicas=world, rank=rank)
        loader = DataLoader(train_data, batch_sampler=sampler, num_workers=config.workers,
                            collate_fn=task.collate, pin_memory=device.type == "cuda")

    seed_everything(config.seed + rank)
    model.to(device).train()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = task.build_optimizer(model, config)
    ema = EMA(model, config.ema_momentum) if config.ema_momentum else None
    scaler = _grad_scaler(device, amp)

    history, start_epoch, iteration = History(), 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        history = History(state.get("history", []))
        history.steps = list(state.get("steps", []))
        states = state["rng"]
        set_rng_state(states[rank] if rank < len(states) else states[0])

    out_dir = Path(config.out_dir) if config.out_dir else None
    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=1))

    show_bar = is_main and (config.progress if config.progress is not None
                            else sys.stderr.isatty())
    try:
        for epoch in range(start_epoch, config.epochs):
            _set_epoch(loader, epoch)
            net.train()
            keys: list[str] = []
            sums: dict[str, float] = {}
            count = images = 0
            updates, t0 = 0, time.perf_counter()
            batches: Iterable = loader
            if show_bar:
                from tqdm.auto import tqdm

                batches = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
            for batch in batches:
                lr = lr_at(config, iteration, epoch)
                if config.channels_last:
                    batch = to_channels_last(batch)
                with amp_context(device, amp):
                    out = task.step(net, batch, device)
                if out is None:  # the task skips this batch
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_multiplier", 1.0)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out.loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                iteration += 1
                updates += 1
                for k, v in out.sums.items():
                    if k not in sums:
                        keys.append(k)
                        sums[k] = 0.0
                    sums[k] += float(v)
                count += out.count
                images += out.images if out.images is not None else out.count
                history.steps.append({"iteration": iteration, "lr": lr,
                                      **{k: float(v) / max(out.count, 1)
                                         for k, v in out.sums.items()}})
                if show_bar:
                    shown = {k: f"{float(v) / max(out.count, 1):.3f}"
                             for k, v in list(out.sums.items())[:2]}
                    if out.size is not None:
                        shown["size"] = f"{out.size[0]}x{out.size[1]}"
                    batches.set_postfix(lr=f"{lr:.2e}", **shown)
            seconds = time.perf_counter() - t0
            *totals, count, images = _reduce([sums[k] for k in keys] + [count, images],
                                             device, world)
            if world > 1:
                average_buffers(model)
                if ema is not None:
                    average_buffers(ema.module)
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update({k: v / max(count, 1) for k, v in zip(keys, totals)})
            if val_data is not None and task.evaluate is not None:
                row.update(task.evaluate(model, val_data, config, device))
                if ema is not None and task.evaluate_ema:
                    e = task.evaluate(ema.module, val_data, config, device)
                    row.update({f"ema_{k}": v for k, v in e.items()})
                model.train()
            row.update(lr=lr_at(config, max(iteration - 1, 0), epoch), seconds=seconds,
                       updates=updates, iteration=iteration, images=int(images))
            history.append(row)
            if is_main and config.verbose:
                print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items() if k not in ("iteration", "images")),
                      flush=True)
            _write_epoch(out_dir, config, history, model, ema, optimizer, scaler, epoch,
                         iteration, world, is_main)
    finally:
        if started_pg:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    history.ema = ema.module if ema is not None else None
    return history


def _write_epoch(out_dir: Path | None, config: TrainConfig, history: History, model: nn.Module,
                 ema: EMA | None, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, epoch: int, iteration: int, world: int,
                 is_main: bool) -> None:
    """Metrics and an atomic checkpoint after an epoch (rank 0 writes; all ranks give RNG)."""
    if out_dir is None:
        return
    due = (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs
    states = [rng_state()]
    if world > 1 and due:
        states = [None] * world
        torch.distributed.all_gather_object(states, rng_state())
    if not is_main:
        return
    if config.log_format in ("csv", "both"):
        history.to_csv(out_dir / "metrics.csv")
    if config.log_format in ("json", "both"):
        history.to_json(out_dir / "metrics.json")
    if due:
        save_checkpoint({
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "epoch": epoch + 1,  # epochs completed
            "iteration": iteration,
            "sampler_epoch": epoch + 1,  # the epoch the sampler is set to when resuming
            "history": list(history),
            "steps": list(history.steps),
            "rng": states,  # one entry per rank
            "config": asdict(config),
        }, out_dir / "last.pt")
