"""The multi-scale sampler of MobileViT (paper §3.3, Fig. 5; official code:
apple/ml-cvnets ``data/sampler/variable_batch_sampler.py``) and the standard sampler beside it.

Paper §3.3: MobileViT learns positional information from its convolutions, so it can be trained
at several input resolutions. The sampler draws a resolution for every batch from a small set and
changes the batch size with it, so that a batch costs about the same at every resolution: small
images come in big batches and the network makes fewer optimizer updates per epoch (Fig. 7b).

What the official code does, and what this module does the same way:

* **Resolutions**: ``linspace(min, max, n_scales)`` together with the base crop, each rounded by
  ``make_divisible(v, 32)``; the ImageNet defaults give {160, 192, 256, 288, 320}.
* **Batch size per resolution**, anchored at the base crop (the paper anchors it at the largest
  resolution; the code does not): ``b = int(base_h * base_w * base_batch / (h * w))`` (``int``
  truncates). Rule ``"v0.1"`` (cvnets v0.1, the code the paper was trained with) then takes
  ``max(base_batch, b)`` and rounds it to a multiple of the number of GPUs; rule ``"current"``
  (cvnets main) takes ``max(1, b)``.
* **Epoch-seeded shuffling**: every rank seeds its generators with ``seed + epoch``, shuffles
  the whole index list the same way, and takes its shard ``indices[rank::num_replicas]`` (the list
  is first padded to a multiple of ``num_replicas``). The same seed draws the same sequence of
  ``(h, w, b)`` on every rank, and every shard has the same length, so all ranks run the same
  number of steps at the same resolutions: DDP stays in lockstep. ``b`` is the batch *per GPU*.
* A short final batch is padded with indices from the start of the shard.

Two deliberate differences from the official code: the indices are shuffled afresh from
``range(n)`` every epoch (the official code shuffles its list in place, so an epoch depends on all
the earlier ones; here ``set_epoch(e)`` alone fixes epoch ``e``, which is what a resumed run needs),
and the index permutation comes from a ``torch.Generator`` while the ``(h, w, b)`` draws come from
``random.Random`` (both seeded with ``seed + epoch``), so the schedule of an epoch of ImageNet can
be computed without shuffling 1.28 M indices. ``__len__`` is the number of batches of the current
epoch (the official ``__len__`` returns the number of samples per replica).

The chapter's pictures of the sampler are in ``mobilevit_edu.plots.sampler``.
"""

from __future__ import annotations

import math
import random
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from mobilevit_edu.nn.layers import make_divisible, to_pair

__all__ = [
    "resolutions",
    "batch_sizes",
    "RULES",
    "MultiScaleSampler",
    "StandardSampler",
    "collate",
    "updates_per_epoch",
    "updates_per_run",
    "make_loader",
]

RULES = ("current", "v0.1")


def resolutions(
    min_size: int = 160,
    max_size: int = 320,
    n_scales: int = 5,
    base_size: int = 256,
    divisor: int = 32,
) -> list[int]:
    """The crop sizes of the multi-scale sampler, sorted.

    ``set(linspace(min_size, max_size, n_scales)) | {base_size}``, each value rounded with
    ``make_divisible(v, divisor)``; duplicates after rounding collapse, so the defaults give five
    sizes from six candidates (200 -> 192, 240 -> 256, 280 -> 288).
    """
    if not 0 < min_size <= max_size:
        raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
    if n_scales < 1:
        raise ValueError(f"n_scales must be >= 1, got {n_scales}")
    candidates = {float(v) for v in np.linspace(min_size, max_size, n_scales)} | {float(base_size)}
    return sorted({make_divisible(v, divisor) for v in candidates})


def batch_sizes(
    res_list: Sequence[int],
    base_size: int = 256,
    base_batch: int = 128,
    rule: str = "current",
    n_gpus: int = 1,
) -> list[int]:
    """Batch size per GPU for each crop size in ``res_list`` (same cost per batch as the base).

    ``b = int(base_size**2 * base_batch / size**2)`` (truncated); ``"v0.1"``: ``max(base_batch, b)``
    rounded with ``make_divisible(b, n_gpus)``; ``"current"``: ``max(1, b)``.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; rules are {RULES}")
    out = []
    for size in res_list:
        h, w = to_pair(size, "crop size")
        b = int(base_size * base_size * base_batch / (h * w))
        if rule == "v0.1":
            b = make_divisible(max(base_batch, b), n_gpus)
        else:
            b = max(1, b)
        out.append(b)
    return out


class _EpochShardedBatchSampler(Sampler):
    """What both samplers share: epoch-seeded shuffling, padding and sharding, batching."""

    def __init__(self, dataset_size: int, num_replicas: int, rank: int, seed: int, shuffle: bool) -> None:
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.dataset_size = int(dataset_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        # every rank gets the same number of indices: pad the list to a multiple of num_replicas
        self.samples_per_replica = math.ceil(self.dataset_size / self.num_replicas)
        self.total_size = self.samples_per_replica * self.num_replicas

    # the per-epoch parts --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (call before iterating, as with ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def _tuples(self) -> list[tuple[int, int, int]]:
        raise NotImplementedError

    def schedule(self, epoch: int | None = None) -> list[tuple[int, int, int]]:
        """The ``(h, w, b)`` of every batch of ``epoch`` (default: the current one); identical on
        all ranks, since it depends only on ``seed + epoch``."""
        epoch = self.epoch if epoch is None else int(epoch)
        tuples = list(self._tuples())
        rng = random.Random(self.seed + epoch)
        if self.shuffle:
            rng.shuffle(tuples)  # as cvnets v0.1 (changes the draws, not their distribution)
        out, start = [], 0
        while start < self.samples_per_replica:
            h, w, b = rng.choice(tuples) if len(tuples) > 1 else tuples[0]
            out.append((h, w, b))
            start += b
        return out

    def shard(self, epoch: int | None = None) -> list[int]:
        """This rank's indices for ``epoch``: shuffled with ``seed + epoch``, padded, strided."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.dataset_size, generator=g)
        else:
            order = torch.arange(self.dataset_size)
        pad = self.total_size - self.dataset_size
        if pad:
            order = torch.cat([order, order[:pad]])  # pad with the first (shuffled) indices
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        indices = self.shard()
        n = len(indices)
        start = 0
        for h, w, b in self.schedule():
            ids = indices[start : start + b]
            while len(ids) < b:  # short final batch: pad from the start of the shard
                ids = ids + indices[: b - len(ids)]
            start += b
            yield [(h, w, i) for i in ids]
        assert start >= n

    def __len__(self) -> int:
        """Batches (optimizer updates) in the current epoch, the same on every rank."""
        return len(self.schedule())


class MultiScaleSampler(_EpochShardedBatchSampler):
    """Variable-batch sampler: each batch has one crop size drawn from :func:`resolutions` and the
    batch size :func:`batch_sizes` gives for it. A *batch* sampler: use it as
    ``DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)``; it yields lists of
    ``(h, w, index)`` and the data set renders or crops each image at ``h x w``.
    """

    def __init__(
        self,
        dataset_size: int,
        base_size: int = 256,
        base_batch: int = 128,
        min_size: int = 160,
        max_size: int = 320,
        n_scales: int = 5,
        divisor: int = 32,
        rule: str = "current",
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        n_gpus: int | None = None,
    ) -> None:
        super().__init__(dataset_size, num_replicas, rank, seed, shuffle)
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; rules are {RULES}")
        self.base_size, self.base_batch, self.rule = int(base_size), int(base_batch), rule
        self.n_gpus = int(n_gpus) if n_gpus is not None else self.num_replicas
        self.sizes = resolutions(min_size, max_size, n_scales, base_size, divisor)
        self.batches = batch_sizes(self.sizes, base_size, base_batch, rule, self.n_gpus)

    def _tuples(self) -> list[tuple[int, int, int]]:
        return [(s, s, b) for s, b in zip(self.sizes, self.batches)]

    def table(self) -> list[tuple[int, int]]:
        """``[(crop size, batch per GPU), ...]``."""
        return list(zip(self.sizes, self.batches))

    def __repr__(self) -> str:
        return (f"MultiScaleSampler(n={self.dataset_size}, rule={self.rule!r}, replicas={self.num_replicas}, "
                f"rank={self.rank}, table={self.table()})")


class StandardSampler(_EpochShardedBatchSampler):
    """One crop size, one batch size (per GPU), with the same sharding and output format as
    :class:`MultiScaleSampler`. ``image_size`` / ``batch_size`` may also be given as
    ``base_size`` / ``base_batch``."""

    def __init__(
        self,
        dataset_size: int,
        image_size: int | None = None,
        batch_size: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        *,
        base_size: int | None = None,
        base_batch: int | None = None,
    ) -> None:
        super().__init__(dataset_size, num_replicas, rank, seed, shuffle)
        size = image_size if image_size is not None else (base_size if base_size is not None else 256)
        batch = batch_size if batch_size is not None else (base_batch if base_batch is not None else 128)
        if batch < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch}")
        self.image_size, self.batch_size = int(size), int(batch)
        self.sizes, self.batches = [self.image_size], [self.batch_size]

    def _tuples(self) -> list[tuple[int, int, int]]:
        return [(self.image_size, self.image_size, self.batch_size)]

    def schedule(self, epoch: int | None = None) -> list[tuple[int, int, int]]:
        n = math.ceil(self.samples_per_replica / self.batch_size)
        return [(self.image_size, self.image_size, self.batch_size)] * n

    def table(self) -> list[tuple[int, int]]:
        return [(self.image_size, self.batch_size)]

    def __repr__(self) -> str:
        return (f"StandardSampler(n={self.dataset_size}, size={self.image_size}, batch={self.batch_size}, "
                f"replicas={self.num_replicas}, rank={self.rank})")


def collate(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(image [3, h, w], label), ...]`` -> ``(images [B, 3, h, w], labels [B] long)``; all
    images of a batch must share ``(h, w)`` (the samplers guarantee it)."""
    if not batch:
        raise ValueError("empty batch")
    images = [item[0] for item in batch]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images of one batch must share a shape, got {sorted(shapes)}")
    labels = torch.tensor([int(item[1]) for item in batch], dtype=torch.long)
    return torch.stack(images), labels  # B x [3, h, w] -> [B, 3, h, w]


def updates_per_epoch(sampler: _EpochShardedBatchSampler, epoch: int | None = None) -> int:
    """Optimizer updates (batches per rank) in ``epoch`` (default: the sampler's current one)."""
    return len(sampler.schedule(epoch))


def updates_per_run(sampler: _EpochShardedBatchSampler, epochs: int, start_epoch: int = 0) -> int:
    """Total optimizer updates over ``epochs`` epochs, computed from the sampler's schedules."""
    return sum(len(sampler.schedule(e)) for e in range(start_epoch, start_epoch + epochs))


def make_loader(dataset, sampler: _EpochShardedBatchSampler, num_workers: int = 0, **kwargs):
    """``DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)``."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, **kwargs)
