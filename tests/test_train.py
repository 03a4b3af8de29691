"""The training loop (mobilevit_edu.train): the official schedule, EMA, AdamW, determinism,
bit-exact resume, a real two-process DDP run on the CPU (gloo), the CLI and the plots.

Most tests train a tiny CNN on a tiny in-test data set (which quadrant holds a bright square),
so they take seconds; one smoke test trains the real MobileViT-XXS for a few steps.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mobilevit_edu.models.batchnorm import calibrate_batchnorm
from mobilevit_edu.train import (
    EMA, EpochBatchSampler, History, TrainConfig, build_optimizer, evaluate, lr_at, main,
    rng_state, schedule, set_rng_state, train,
)

ROOT = Path(__file__).resolve().parents[1]


class Quadrants(Dataset):
    """Noise images with one bright square; the label is the quadrant it sits in. Rendered at any
    size, ``ds[i]`` or ``ds[(h, w, i)]``, deterministic from ``(seed, i)``."""

    num_classes = 4

    def __init__(self, n: int, size: int = 16, seed: int = 0) -> None:
        self.n, self.size, self.seed = n, size, seed
        self.seen: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        h, w, i = key if isinstance(key, tuple) else (self.size, self.size, key)
        self.seen.append(i)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = int(torch.randint(4, (1,), generator=g))
        img = 0.3 * torch.rand(3, h, w, generator=g)
        top, left = (label // 2) * h // 2, (label % 2) * w // 2
        img[:, top + h // 8 : top + 3 * h // 8, left + w // 8 : left + 3 * w // 8] = 1.0
        return img, label


def tiny_net(num_classes: int = 4) -> nn.Module:
    """A small CNN with BatchNorm (EMA of buffers) and Dropout (RNG state on resume)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, num_classes),
    )


def tiny_config(tmp_path=None, **kw) -> TrainConfig:
    base = dict(model="tiny", num_classes=4, epochs=2, lr=0.01, min_lr=0.001, warmup_lr=0.001,
                warmup_iters=3, batch_size=16, val_batch_size=32, verbose=False, progress=False,
                out_dir=str(tmp_path) if tmp_path is not None else None)
    base.update(kw)
    return TrainConfig(**base)


def run_tiny(config: TrainConfig, resume=None, n: int = 96) -> tuple[nn.Module, History]:
    torch.manual_seed(0)
    model = tiny_net()
    hist = train(model, Quadrants(n), Quadrants(48, seed=1), config, resume=resume)
    return model, hist


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the schedule -----------------------------------------------------------------------------


def test_lr_at_official_imagenet_schedule():
    c = TrainConfig()  # the paper: 0.0002 -> 0.002 over 3000 iterations, cosine to 0.0002 / 300
    assert lr_at(c, 0, 0) == pytest.approx(0.0002)
    assert lr_at(c, 1500, 1) == pytest.approx(0.0011)  # half-way through the warm-up
    assert lr_at(c, 2999, 2) < 0.002
    # after the warm-up the cosine is per epoch and constant within an epoch
    assert lr_at(c, 3000, 3) == lr_at(c, 4000, 3)
    assert lr_at(c, 3000, 3) == pytest.approx(0.0002 + 0.0009 * (1 + math.cos(math.pi * 3 / 300)))
    assert lr_at(c, 10**6, 150) == pytest.approx(0.0011)  # the cosine's mid-point
    assert lr_at(c, 10**6, 299) == pytest.approx(0.0002, abs=1e-7)
    x, y = schedule(TrainConfig(epochs=4, warmup_iters=10), iters_per_epoch=5)
    assert len(x) == len(y) == 20 and x[5] == 1.0
    assert all(y[i] < y[i + 1] for i in range(9))  # linear warm-up rises every iteration
    assert y.max() <= 0.002 + 1e-12 and y.min() >= 0.0002 - 1e-12


def test_warmup_zero_is_pure_cosine():
    c = TrainConfig(epochs=10, warmup_iters=0)
    assert lr_at(c, 0, 0) == pytest.approx(0.002)
    assert lr_at(c, 0, 5) == pytest.approx(0.0011)


def test_config_validation():
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="log_format"):
        TrainConfig(log_format="xml")


# --- optimizer and EMA ------------------------------------------------------------------------


def test_adamw_decays_every_parameter():
    model = tiny_net()
    opt = build_optimizer(model, TrainConfig())
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["weight_decay"] == 0.01 and group["betas"] == (0.9, 0.999)
    assert len(group["params"]) == len(list(model.parameters()))  # BN and biases decay too


def test_ema_formula_includes_bn_buffers():
    torch.manual_seed(0)
    model = tiny_net()
    ema = EMA(model, momentum=0.25)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model.train()
    model(torch.rand(4, 3, 16, 16))  # changes BN running stats and num_batches_tracked
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    now = model.state_dict()
    for k, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * now[k])
        else:
            assert torch.equal(v, before[k])  # integer buffers are not averaged
    assert not torch.equal(ema.state_dict()["1.running_mean"], before["1.running_mean"])
    assert all(not p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        EMA(model, momentum=0.0)


# --- batches ----------------------------------------------------------------------------------


def test_epoch_batch_sampler_shards_disjoint_and_reshuffles():
    shards = [EpochBatchSampler(10, 2, seed=3, num_replicas=3, rank=r) for r in range(3)]
    got = [[i for b in s for i in b] for s in shards]
    assert [len(s) for s in shards] == [2, 2, 2] and all(len(g) == 4 for g in got)
    assert set().union(*got) == set(range(10))  # 10 indices padded to 12, 4 per rank
    first = list(shards[0])
    shards[0].set_epoch(1)
    assert list(shards[0]) != first
    plain = EpochBatchSampler(10, 4, shuffle=False)
    assert list(plain) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(plain) == 3


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    import random

    import numpy as np

    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    a = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(loaded)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


# --- training ---------------------------------------------------------------------------------


def test_train_learns_and_writes_metrics_and_checkpoint(tmp_path):
    model, hist = run_tiny(tiny_config(tmp_path, epochs=3, grad_clip=1.0), n=192)
    assert len(hist) == 3 and [r["epoch"] for r in hist] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_acc", "ema_val_acc", "lr", "seconds",
            "updates"} <= set(hist[-1])
    assert hist[-1]["updates"] == 12 and hist[-1]["iteration"] == 36  # 192 / 16 per epoch
    assert hist[-1]["val_acc"] > 0.5  # chance is 0.25
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist.ema is not None
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,")
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 3
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # plain tensors and types only
    assert ckpt["epoch"] == 3 and ckpt["iteration"] == 36 and ckpt["sampler_epoch"] == 3
    assert same_state(ckpt["model"], model.state_dict())
    assert same_state(ckpt["ema"], hist.ema.state_dict())
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_label_smoothing_and_ema_off():
    _, hist = run_tiny(tiny_config(label_smoothing=0.0, ema_momentum=None, epochs=1))
    assert "ema_val_acc" not in hist[0] and hist.ema is None


def test_deterministic_on_cpu():
    a, ha = run_tiny(tiny_config())
    b, hb = run_tiny(tiny_config())
    assert same_state(a.state_dict(), b.state_dict())
    assert same_state(ha.ema.state_dict(), hb.ema.state_dict())
    assert [r["val_loss"] for r in ha] == [r["val_loss"] for r in hb]
    c, _ = run_tiny(tiny_config(seed=1))  # another seed: another data order and dropout
    assert not same_state(a.state_dict(), c.state_dict())


def test_resume_is_bit_exact(tmp_path):
    straight, hs = run_tiny(tiny_config(tmp_path / "straight", epochs=2))
    run_tiny(tiny_config(tmp_path / "part", epochs=1))
    # a fresh model and optimizer, continued from the checkpoint of epoch 1 for one more epoch
    resumed, hr = run_tiny(tiny_config(tmp_path / "resumed", epochs=2),
                           resume=tmp_path / "part" / "last.pt")
    assert same_state(straight.state_dict(), resumed.state_dict())
    assert same_state(hs.ema.state_dict(), hr.ema.state_dict())
    assert len(hr) == 2 and hr[1]["iteration"] == hs[1]["iteration"]
    assert [r["val_loss"] for r in hr] == [r["val_loss"] for r in hs]
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["optimizer"]["state"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)


def test_train_with_a_multiscale_style_batch_sampler():
    class TwoSizes(torch.utils.data.Sampler):  # yields [(h, w, i), ...] like MultiScaleSampler
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            for j, size in enumerate([16, 24, 16, 32]):
                yield [(size, size, 8 * j + k) for k in range(8)]

        def __len__(self):
            return 4

    torch.manual_seed(0)
    sampler = TwoSizes()
    hist = train(tiny_net(), Quadrants(32), None, tiny_config(epochs=2), sampler=sampler)
    assert sampler.epoch == 1 and hist[-1]["updates"] == 4 and hist[-1]["images"] == 32


def test_evaluate_at_resolution_and_calibrate_bn():
    torch.manual_seed(0)
    model = tiny_net()
    ds = Quadrants(40)
    r16, r32 = evaluate(model, ds, batch_size=16), evaluate(model, ds, image_size=32)
    assert r16["n"] == r32["n"] == 40 and 0 <= r32["acc"] <= 1 and r16["loss"] > 0
    assert ds.seen.count(0) == 2
    calibrate_batchnorm(model, [ds[(32, 32, i)][0][None] for i in range(8)])
    assert not model.training and model[1].momentum == 0.1
    assert int(model[1].num_batches_tracked) == 8
    x = torch.stack([ds[(32, 32, i)][0] for i in range(8)])
    torch.testing.assert_close(model[1].running_mean, model[0](x).mean((0, 2, 3)),
                               atol=1e-5, rtol=1e-4)


def test_mobilevit_xxs_smoke_with_train_model():
    from mobilevit_edu.train import train_model

    cfg = tiny_config(epochs=1)
    model, hist = train_model("mobilevit_xxs", Quadrants(16, size=32), Quadrants(8, size=32), cfg)
    assert hist[0]["updates"] == 1 and math.isfinite(hist[0]["train_loss"])
    assert model.classifier.out_features == 4 and cfg.model == "tiny"  # config not mutated
    again, _ = train_model("mobilevit_xxs", Quadrants(16, size=32), None, cfg)
    assert same_state(model.state_dict(), again.state_dict())  # seeded from config.seed


# --- DDP: two processes, gloo, on the CPU -----------------------------------------------------

DDP_SCRIPT = """
import json, os, sys, torch
sys.path.insert(0, {tests!r})
from test_train import Quadrants, tiny_net, tiny_config
from mobilevit_edu.train import train

torch.manual_seed(0)  # identical initial weights on both ranks (DDP also broadcasts rank 0's)
ds = Quadrants(64)
model = tiny_net()
train(model, ds, Quadrants(32, seed=1), tiny_config({out!r}, epochs=2))
rank = int(os.environ["RANK"])
torch.save(model.state_dict(), os.path.join({out!r}, f"rank{{rank}}.pt"))
with open(os.path.join({out!r}, f"seen{{rank}}.json"), "w") as f:
    json.dump(ds.seen, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT).format(tests=str(ROOT / "tests"),
                                                         out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert same_state(a, b)  # lockstep: all-reduced gradients give identical weights
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in (0, 1)]
    # the training reads (2 epochs x 32 each) are disjoint within an epoch, together all 64
    train0, train1 = seen[0][:32], seen[1][:32]
    assert not set(train0) & set(train1) and set(train0) | set(train1) == set(range(64))
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # only rank 0 wrote it
    assert same_state(ckpt["model"], a) and len(ckpt["rng"]) == 2
    assert ckpt["history"][-1]["images"] == 64  # both ranks' images counted


# --- command line and plots -------------------------------------------------------------------


def test_cli_help_documents_torchrun(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "torchrun --nproc_per_node 8 -m mobilevit_edu.train" in out
    assert "--multi-scale" in out and "--resume" in out and "cifar10:PATH" in out


@pytest.mark.parametrize("args, message", [
    (["--data", "imagenet:/x"], "expected shapes:TASK"),
    (["--data", "shapes:colourful"], "unknown task 'colourful'"),
    (["--model", "mobilevit_xxxl"], "--model 'mobilevit_xxxl': unknown"),
    (["--data", "folder:/no/such/folder"], "/no/such/folder"),
    (["--resume", "/no/such/last.pt"], "no such file"),
])
def test_cli_user_mistakes_exit_2_with_one_line(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "unused")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", [b"", b"junk" * 100, None])
def test_cli_resume_from_a_corrupt_checkpoint_exits_2(content, tmp_path, capsys):
    bad = tmp_path / "junk.pt"
    if content is None:  # a real checkpoint cut in half
        torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 1}, bad)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        bad.write_bytes(content)
    assert _cli(tmp_path / "run", "--epochs", "1", "--resume", str(bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_resume_from_a_weights_file_says_what_is_missing(tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, weights)
    assert _cli(tmp_path / "run", "--epochs", "1", "--resume", str(weights)) == 2
    assert "not a training checkpoint" in capsys.readouterr().err


def test_plots(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from mobilevit_edu.plots import training as T

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_acc": 0.1 * e,
             "ema_val_acc": 0.1 * e} for e in (1, 2, 3)]
    T.plot_lr_schedule({"a": schedule(TrainConfig(epochs=3, warmup_iters=2), 4)}, name="t_lr")
    T.plot_training_curves({"m": hist}, name="t_curves", chance=0.5)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["t_curves.png", "t_lr.png"]


def _cli(out, *extra):
    return main(["--model", "mobilevit_xxs", "--data", "shapes:shape", "--image-size", "32",
                 "--batch-size", "16", "--train-size", "32", "--val-size", "16",
                 "--no-progress", "--out", str(out), *extra])


def test_cli_shapes_multiscale_and_resume(tmp_path, capsys):
    assert _cli(tmp_path / "a", "--epochs", "2", "--multi-scale") == 0
    assert "mobilevit_xxs: " in capsys.readouterr().out
    assert _cli(tmp_path / "b", "--epochs", "1", "--multi-scale") == 0
    assert _cli(tmp_path / "b", "--epochs", "2", "--multi-scale",
                "--resume", str(tmp_path / "b" / "last.pt")) == 0
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["iteration"] == b["iteration"]
    assert same_state(a["model"], b["model"]) and same_state(a["ema"], b["ema"])
    rows = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["num_classes"] == 5 and cfg["warmup_iters"] >= 1


def test_cli_readers_data(tmp_path):
    import pickle

    import numpy as np
    from PIL import Image

    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{k}", 4) for k in range(1, 6)), ("test_batch", 6)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (cifar / name).write_bytes(pickle.dumps(batch))
    (cifar / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{k}".encode() for k in range(10)]}))
    assert main(["--model", "mobilenetv2_035", "--data", f"cifar10:{tmp_path}", "--image-size",
                 "32", "--epochs", "1", "--batch-size", "8", "--no-progress",
                 "--out", str(tmp_path / "run_c")]) == 0
    row = json.loads((tmp_path / "run_c" / "metrics.json").read_text())[0]
    assert row["updates"] == 3 and row["images"] == 24  # 20 images; the last batch is padded
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / "tree" / split / cls).mkdir(parents=True)
            for k in range(3):
                arr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / "tree" / split / cls / f"{k}.png")
    assert main(["--model", "mobilenetv2_035", "--data", f"folder:{tmp_path / 'tree'}",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--no-progress",
                 "--out", str(tmp_path / "run_f")]) == 0
    row = json.loads((tmp_path / "run_f" / "metrics.json").read_text())[0]
    assert row["updates"] == 2 and row["images"] == 8 and "val_acc" in row


def test_amp_setting_is_ignored_on_cpu():
    _, hist = run_tiny(tiny_config(epochs=1, amp="bf16"))
    assert math.isfinite(hist[0]["train_loss"])


# --- the one loop: what every task gets from fit() ------------------------------------------


def _regression_task(skip_first: bool = False):
    """A toy task: per-batch mean metrics (count 1), a skipped batch, no EMA evaluation."""
    from mobilevit_edu.train import StepOutput, Task

    seen = {"steps": 0}

    def step(net, batch, device):
        seen["steps"] += 1
        if skip_first and seen["steps"] == 1:
            return None
        images, labels = batch
        out = net(images.to(device))
        loss = nn.functional.cross_entropy(out, labels.to(device))
        return StepOutput(loss, {"loss": loss.item(), "double": 2 * loss.item()}, 1,
                          images=len(labels))

    def evaluate_fn(model, val_data, config, device):
        return {"val_score": 0.5}

    def optimizer(model, config):
        opt = build_optimizer(model, config)
        opt.param_groups[0]["lr_multiplier"] = 3.0
        return opt

    return Task("toy", step, evaluate_fn, evaluate_ema=False, build_optimizer=optimizer), seen


def test_fit_runs_any_task_with_every_config_field(tmp_path):
    from mobilevit_edu.train import fit

    task, seen = _regression_task(skip_first=True)
    config = tiny_config(tmp_path / "toy", epochs=2, log_format="json", checkpoint_every=2,
                         label_smoothing=0.0)
    torch.manual_seed(0)
    model = tiny_net()
    hist = fit(model, Quadrants(64), Quadrants(16), config, task)
    assert [r["epoch"] for r in hist] == [1, 2]
    first = hist[0]
    assert first["updates"] == 64 // config.batch_size - 1  # the skipped batch is no update
    assert math.isclose(first["double"], 2 * first["loss"], rel_tol=1e-9)
    assert first["val_score"] == 0.5 and "ema_val_score" not in first
    assert len(hist.steps) == hist[-1]["iteration"] and hist.steps[0]["iteration"] == 1
    assert set(hist.steps[0]) == {"iteration", "lr", "loss", "double"}
    assert (tmp_path / "toy" / "metrics.json").exists()
    assert not (tmp_path / "toy" / "metrics.csv").exists()  # log_format="json"
    ckpt = torch.load(tmp_path / "toy" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["steps"]) == len(hist.steps)
    lr = lr_at(config, hist[-1]["iteration"] - 1, 1)
    assert math.isclose(ckpt["optimizer"]["param_groups"][0]["lr"], 3.0 * lr, rel_tol=1e-9)


def test_fit_checkpoint_every_skips_epochs(tmp_path):
    from mobilevit_edu.train import fit

    task, _ = _regression_task()
    config = tiny_config(tmp_path / "every", epochs=3, checkpoint_every=2, label_smoothing=0.0)
    fit(tiny_net(), Quadrants(32), None, config, task)
    assert torch.load(tmp_path / "every" / "last.pt", weights_only=True)["epoch"] == 3
    config = tiny_config(tmp_path / "every2", epochs=2, checkpoint_every=5, label_smoothing=0.0)
    fit(tiny_net(), Quadrants(32), None, config, task)  # the last epoch is always saved
    assert torch.load(tmp_path / "every2" / "last.pt", weights_only=True)["epoch"] == 2


def test_fit_refuses_label_smoothing_a_task_cannot_honour():
    from mobilevit_edu.train import fit

    task, _ = _regression_task()
    with pytest.raises(ValueError, match="toy task's loss has no label smoothing"):
        fit(tiny_net(), Quadrants(32), None, tiny_config(label_smoothing=0.1), task)


def test_config_refuses_bad_checkpoint_every():
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=0)


def test_channels_last_and_fused_adamw_keep_the_loss_curve():
    """The experiments' fast settings change the memory order and the optimizer's kernel, not
    the recipe: the per-step losses agree with the defaults to float rounding."""
    losses = {}
    for fast in (False, True):
        config = tiny_config(epochs=2, channels_last=fast, fused_adamw=fast, ema_momentum=None)
        model, hist = run_tiny(config)
        losses[fast] = [s["train_loss"] for s in hist.steps]
        if fast:
            assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(losses[True]) == len(losses[False]) == 12
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)


def test_to_channels_last_converts_images_inside_any_batch():
    from collections import namedtuple

    from mobilevit_edu.train.loop import to_channels_last

    Batch = namedtuple("Batch", "images boxes")
    b = to_channels_last(Batch(torch.rand(2, 3, 8, 8), [torch.rand(1, 4)]))
    assert isinstance(b, Batch) and b.images.is_contiguous(memory_format=torch.channels_last)
    assert b.boxes[0].shape == (1, 4)
    images, labels = to_channels_last((torch.rand(2, 3, 4, 4), torch.tensor([0, 1])))
    assert images.is_contiguous(memory_format=torch.channels_last) and labels.tolist() == [0, 1]
