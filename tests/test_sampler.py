"""The multi-scale sampler: the official resolution and batch tables, sharding, lockstep, determinism."""

from __future__ import annotations

import pytest
import torch

from mobilevit_edu.book import paper
from mobilevit_edu.data import ShapesDataset
from mobilevit_edu.data.sampler import (
    MultiScaleSampler,
    StandardSampler,
    batch_sizes,
    collate,
    make_loader,
    resolutions,
    updates_per_epoch,
    updates_per_run,
)


def test_imagenet_resolutions():
    assert resolutions() == list(paper.SAMPLER_RESOLUTIONS) == [160, 192, 256, 288, 320]
    # MobileNetV2 setting of cvnets v0.1: base 224, crops 128..256
    assert resolutions(128, 256, 5, 224) == [128, 160, 192, 224, 256]
    # duplicates after rounding collapse; base size is always included
    assert resolutions(160, 160, 3, 256) == [160, 256]


def test_batch_rules_match_the_official_code():
    res = list(paper.SAMPLER_RESOLUTIONS)
    base, batch = paper.SAMPLER_BASE
    v01 = batch_sizes(res, base, batch, rule="v0.1", n_gpus=paper.SAMPLER_N_GPUS)
    cur = batch_sizes(res, base, batch, rule="current")
    assert v01 == [paper.SAMPLER_BATCH_V01[r] for r in res] == [328, 224, 128, 128, 128]
    assert cur == [paper.SAMPLER_BATCH_CURRENT[r] for r in res] == [327, 227, 128, 101, 81]
    # truncation, not rounding: 256*256*128/160**2 = 327.68
    assert batch_sizes([160], rule="current") == [327]
    assert batch_sizes([128, 160, 192, 224, 256], 224, 128, "v0.1", 8) == [392, 248, 176, 128, 128]
    with pytest.raises(ValueError, match="rule"):
        batch_sizes(res, rule="v2")


def test_sampler_table_and_defaults():
    s = MultiScaleSampler(1000, rule="v0.1", num_replicas=8, rank=3)
    assert s.n_gpus == 8
    assert s.table() == list(paper.SAMPLER_BATCH_V01.items())
    assert MultiScaleSampler(1000).table() == list(paper.SAMPLER_BATCH_CURRENT.items())


@pytest.mark.parametrize("n", [997, 1000, 1003])
def test_ranks_in_lockstep_and_shards_disjoint(n):
    world = 4
    ranks = [MultiScaleSampler(n, base_size=64, base_batch=8, min_size=32, max_size=96, num_replicas=world,
                               rank=r, seed=5) for r in range(world)]
    for epoch in (0, 1):
        for s in ranks:
            s.set_epoch(epoch)
        batches = [list(s) for s in ranks]
        # the same (h, w, b) sequence on every rank, and the same number of steps
        schedules = [[(b[0][0], b[0][1], len(b)) for b in bs] for bs in batches]
        assert all(sch == schedules[0] for sch in schedules)
        assert schedules[0] == ranks[0].schedule(epoch)
        assert len({len(s) for s in ranks}) == 1 and len(ranks[0]) == len(batches[0])
        # shards: disjoint (before padding) and together cover every index
        shards = [s.shard() for s in ranks]
        assert all(len(sh) == ranks[0].samples_per_replica for sh in shards)
        flat = [i for sh in shards for i in sh]
        assert set(flat) == set(range(n))
        assert len(flat) - len(set(flat)) == ranks[0].total_size - n  # only the padding repeats
        # each rank sees every index of its shard at least once
        for sh, bs in zip(shards, batches):
            seen = {i for b in bs for (_, _, i) in b}
            assert seen == set(sh)


def test_every_batch_homogeneous_and_full():
    s = MultiScaleSampler(300, base_size=64, base_batch=16, min_size=32, max_size=96, seed=1)
    sizes = set()
    for batch in s:
        hw = {(h, w) for h, w, _ in batch}
        assert len(hw) == 1
        h, w = hw.pop()
        sizes.add(h)
        assert len(batch) == dict(s.table())[h]  # the short last batch is padded to b
    assert len(sizes) > 1


def test_deterministic_per_epoch_different_across_epochs():
    a = MultiScaleSampler(500, base_size=64, base_batch=8, min_size=32, max_size=96, seed=0)
    b = MultiScaleSampler(500, base_size=64, base_batch=8, min_size=32, max_size=96, seed=0)
    a.set_epoch(3)
    b.set_epoch(0)
    list(b)  # history must not matter
    b.set_epoch(3)
    assert list(a) == list(b)
    a.set_epoch(4)
    assert list(a) != list(b)
    assert a.schedule(4) != a.schedule(3)
    c = MultiScaleSampler(500, base_size=64, base_batch=8, min_size=32, max_size=96, seed=1)
    c.set_epoch(3)
    assert list(c) != list(b)


def test_no_shuffle_is_in_order():
    s = StandardSampler(10, image_size=8, batch_size=4, shuffle=False)
    assert [[i for _, _, i in b] for b in s] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert len(s) == updates_per_epoch(s) == 3


def test_standard_sampler_ddp():
    ranks = [StandardSampler(10, 16, 3, num_replicas=3, rank=r) for r in range(3)]
    out = [list(s) for s in ranks]
    assert [len(o) for o in out] == [2, 2, 2]  # 4 indices per rank (10 padded to 12) -> 2 batches of 3
    assert all(h == w == 16 for o in out for b in o for h, w, _ in b)
    assert set().union(*[set(s.shard()) for s in ranks]) == set(range(10))
    assert StandardSampler(10, base_size=32, base_batch=5).table() == [(32, 5)]


def test_updates_counts_imagenet():
    # standard: 1,281,167 images, 128 x 8 GPUs -> 1252 steps per epoch, 375,600 per 300 epochs
    st = StandardSampler(1_281_167, 224, 128, num_replicas=8)
    assert updates_per_epoch(st) == 1252
    assert updates_per_run(st, 300) == 375_600
    ms = MultiScaleSampler(1_281_167, base_size=224, min_size=128, max_size=256, rule="v0.1", num_replicas=8)
    per_epoch = updates_per_epoch(ms)
    mean_b = sum(ms.batches) / len(ms.batches)
    assert abs(per_epoch - ms.samples_per_replica / mean_b) < 0.05 * per_epoch
    total = updates_per_run(ms, 20)
    assert 0.5 * 375_600 / 15 < total < 0.7 * 375_600 / 15  # ~ 60 % of the standard sampler's


def test_dataset_path_renders_at_the_batch_resolution():
    ds = ShapesDataset(40, "shape", image_size=32, seed=0)
    s = MultiScaleSampler(len(ds), base_size=32, base_batch=4, min_size=16, max_size=48, n_scales=3, seed=2)
    assert s.sizes == [32, 64]  # make_divisible(16, 32) = 32, make_divisible(48, 32) = 64
    loader = make_loader(ds, s)
    n = 0
    for (images, labels), (h, w, b) in zip(loader, s.schedule()):
        assert images.shape == (b, 3, h, w) and labels.shape == (b,)
        assert labels.dtype == torch.long
        n += 1
    assert n == len(s)


def test_collate_rejects_mixed_sizes():
    a, b = (torch.zeros(3, 8, 8), 0), (torch.zeros(3, 9, 9), 1)
    x, y = collate([a, a])
    assert x.shape == (2, 3, 8, 8) and y.tolist() == [0, 0]
    with pytest.raises(ValueError, match="share a shape"):
        collate([a, b])


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        MultiScaleSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="rule"):
        MultiScaleSampler(10, rule="v2")
    with pytest.raises(ValueError, match="dataset_size"):
        StandardSampler(0)


def test_plots_save_figures(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.sampler import plot_batches_at_resolutions, plot_schedule, plot_updates

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    ds = ShapesDataset(3, "shape", seed=0)
    s = MultiScaleSampler(100, base_size=64, base_batch=4, min_size=32, max_size=96)
    fig = plot_batches_at_resolutions(ds, s, indices=(0, 1), name="t_batches")
    assert len(fig.axes) == 2 * len(s.sizes)
    fig2 = plot_schedule({"std": StandardSampler(100, 64, 4), "ms": s}, steps=10, name="t_sched")
    assert len(fig2.axes) == 3 and len(fig2.axes[1].lines) == 2
    fig3 = plot_updates([("a", 1000, 900), ("b", 500, None)], name="t_updates")
    assert len(fig3.axes[0].patches) == 3  # two of ours, one of the paper's
    for n in ("t_batches", "t_sched", "t_updates"):
        assert (tmp_path / f"{n}.png").stat().st_size > 1000
    plot_updates([("a", 1000, None)])  # no name: nothing is written
    assert len(list(tmp_path.iterdir())) == 3
    plt.close("all")
