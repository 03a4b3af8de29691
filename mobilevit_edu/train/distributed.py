"""Running the loop on many processes (DDP under ``torchrun``) and reproducibly: the sharded
epoch batch sampler, the process group, BatchNorm buffers averaged over ranks, and every
random-number state as tensors (so checkpoints load with ``weights_only=True``).

The paper trains on 8 GPUs (§4.1, batch 1,024 = 8 x 128); the multi-scale sampler of §3.3
(:mod:`mobilevit_edu.data.sampler`) shards the same way as :class:`EpochBatchSampler`.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EpochBatchSampler", "distributed_context", "init_distributed", "average_buffers",
           "rng_state", "set_rng_state", "seed_everything"]


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of plain integer indices: shuffled from ``seed + epoch``, padded to a multiple of
    ``num_replicas`` (from the start of the shuffled list, as the official samplers do) and
    sharded ``indices[rank::num_replicas]``, so every rank runs the same number of batches.
    Used by :func:`train` when no sampler is given; ``set_epoch`` as in ``DistributedSampler``."""

    def __init__(self, dataset_size: int, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if dataset_size < 1 or batch_size < 1:
            raise ValueError("dataset_size and batch_size must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.dataset_size, self.batch_size, self.shuffle = dataset_size, batch_size, shuffle
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        per_rank = math.ceil(self.dataset_size / self.num_replicas)
        order += order[: per_rank * self.num_replicas - len(order)]  # pad: equal shards
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        idx = self._indices()
        for i in range(0, len(idx), self.batch_size):
            yield idx[i : i + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.dataset_size / self.num_replicas) / self.batch_size)


def distributed_context() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA); True if joined now."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend, init_method="env://")
    return True


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the ranks.

    DDP keeps the parameters identical (all-reduced gradients) and copies rank 0's buffers into
    every rank at each forward, but the last batch of an epoch still updates each rank's running
    statistics from its own shard; averaging them at the end of each epoch makes every rank hold
    the same model (what timm calls ``distribute_bn(reduce=True)``)."""
    world = torch.distributed.get_world_size()
    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            torch.distributed.all_reduce(buf)
            buf.div_(world)


def rng_state() -> dict[str, Any]:
    """The python, NumPy and torch (CPU and CUDA) random states as tensors and plain python
    types, so that a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
