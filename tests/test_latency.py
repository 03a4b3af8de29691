"""The timing harness (measure.latency, measure.operators) and the inference optimisations
(deploy.inference). Never asserts a timing: only that the harness measures what it says
(samples, statistics, threads) and that the optimised models compute the same function as the
originals (to 1e-4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.nn.attention import MultiHeadSelfAttention  # noqa: E402
from mobilevit_edu.deploy.inference import (  # noqa: E402
    compile_model, fold_batchnorm, fold_conv_bn, optimize_for_inference, reuse_freed_memory,
)
from mobilevit_edu.measure.latency import (  # noqa: E402
    Timing, exp_ns, machine_info, matmul_gmacs, threads, time_callable, time_forward,
    time_interleaved, time_train_step,
)
from mobilevit_edu.measure.operators import count_exponentials, op_category, time_by_operator  # noqa: E402
from mobilevit_edu.models.batchnorm import calibrate_batchnorm  # noqa: E402
from mobilevit_edu.plots.cost import plot_latency_vs_macs, plot_time_vs_macs_share  # noqa: E402


def test_time_callable_returns_n_samples_with_consistent_statistics():
    calls = []
    t = time_callable(lambda: calls.append(1), repeats=7, warmup=2, num_threads=1, label="noop")
    assert len(calls) == 9  # warm-up calls are made but not recorded
    assert t.repeats == len(t.samples_ms) == len(t.cpu_ms) == 7
    assert t.min_ms <= t.quantile_ms(0.25) <= t.median_ms <= t.quantile_ms(0.75) <= t.max_ms
    assert t.threads == 1 and t.warmup == 2 and t.label == "noop"
    assert all(s >= 0 for s in t.samples_ms + t.cpu_ms)


def test_timing_statistics_on_known_samples():
    t = Timing("x", [4.0, 1.0, 3.0, 2.0, 10.0], batch=8, threads=2)
    assert t.median_ms == 3.0 and t.min_ms == 1.0 and t.max_ms == 10.0
    assert t.quantile_ms(0.25) == 2.0 and t.quantile_ms(0.75) == 4.0 and t.iqr_ms == 2.0
    assert t.images_per_s == pytest.approx(8 * 1000 / 3.0)
    d = t.as_dict()
    assert d["median_ms"] == 3.0 and d["threads"] == 2
    assert d["samples_ms"] == [4.0, 1.0, 3.0, 2.0, 10.0]
    assert "median 3.00 ms" in t.summary() and "2 threads" in t.summary()
    with pytest.raises(ValueError):
        Timing("empty", [])
    with pytest.raises(ValueError):
        t.quantile_ms(1.5)
    with pytest.raises(ValueError):
        t.median_cpu_ms  # noqa: B018  (no CPU samples recorded)


def test_threads_context_sets_and_restores():
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with threads(0):
            pass


def test_time_interleaved_rotates_and_counts():
    order: list[str] = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abc"}
    res = time_interleaved(fns, repeats=4, warmup=1, num_threads=1, batch=2)
    assert set(res) == {"a", "b", "c"}
    assert all(t.repeats == 4 and t.batch == 2 and t.threads == 1 for t in res.values())
    timed = order[3:]  # after one warm-up call each
    assert len(timed) == 12
    assert [timed[3 * r] for r in range(4)] == ["a", "b", "c", "a"]  # who goes first rotates


def test_time_forward_puts_the_model_in_eval_mode_and_records_batch():
    model = create_model("mobilevit_xxs", num_classes=10).train()
    t = time_forward(model, batch=2, image_size=64, repeats=2, warmup=1, num_threads=1)
    assert not model.training
    assert t.batch == 2 and t.repeats == 2 and t.threads == 1


def test_time_train_step_updates_the_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    before = model[3].weight.detach().clone()
    t = time_train_step(model, batch=4, image_size=16, repeats=2, warmup=1, num_threads=1)
    assert t.repeats == 2 and t.batch == 4
    assert not torch.equal(before, model[3].weight)


def test_matmul_rate_and_machine_info():
    gmacs, t = matmul_gmacs(64, repeats=3, num_threads=1)
    assert gmacs > 0 and t.repeats == 3
    ns, t = exp_ns(4096, repeats=3, num_threads=1)
    assert 0.01 < ns < 100 and t.repeats == 3  # nanoseconds: any CPU prices an exp in that range
    info = machine_info()
    assert {"cpu", "cpu_count", "torch_threads", "torch"} <= set(info)
    assert isinstance(reuse_freed_memory(), bool)
    assert reuse_freed_memory() == reuse_freed_memory()  # idempotent


@pytest.mark.parametrize("fused", [True, False])
def test_count_exponentials_counts_silu_outputs_and_attention_scores(fused):
    attn = MultiHeadSelfAttention(8, num_heads=2, fused=fused)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Flatten(2))  # -> [B, 8, 64]
    model = lambda x: attn(nn.functional.silu(net(x).transpose(1, 2)))  # noqa: E731
    counts = count_exponentials(model, torch.randn(2, 3, 8, 8))
    # SiLU: 2 x 8 x 8 x 8 conv outputs, twice; scores: B = 2, h = 2, N = 64 -> 2 * 2 * 64 * 64
    assert counts == {"activation": 2 * 1024, "attention": 16384, "total": 2048 + 16384}


def test_count_exponentials_of_mobilevit_match_the_formula():
    # every MobileViT block: L layers x (B * P sequences) x h heads x N^2 scores, P = 4, h = 4
    model = create_model("mobilevit_xxs")
    got = count_exponentials(model, torch.randn(2, 3, 128, 128))
    # layer3: 16 x 16 map, N = 64, 2 layers; layer4: 8 x 8, N = 16, 4 layers; layer5: 4 x 4,
    # N = 4, 3 layers
    scores = 2 * 4 * 4 * (2 * 64**2 + 4 * 16**2 + 3 * 4**2)
    assert got["attention"] == scores
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o.numel()))
             for m in model.modules() if isinstance(m, nn.SiLU)]
    with torch.inference_mode():
        model(torch.randn(2, 3, 128, 128))
    for h in hooks:
        h.remove()
    assert outputs and got["activation"] == sum(outputs)


def _realistic(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **kw)
    return calibrate_batchnorm(model, torch.rand(4, 3, 64, 64), passes=2)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilenetv2_050"])
@pytest.mark.parametrize("fold_bn, channels_last", [(True, False), (False, True), (True, True)])
def test_optimize_for_inference_is_the_same_function(name, fold_bn, channels_last):
    model = _realistic(name)
    keys = list(model.state_dict())
    fast = optimize_for_inference(model, fold_bn=fold_bn, channels_last=channels_last)
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        expected, got = model(x), fast(x)
    assert expected.abs().max() > 0.1
    assert (expected - got).abs().max().item() < 1e-4
    assert list(model.state_dict()) == keys  # the original is untouched
    bns = [m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)]
    assert (not bns) == fold_bn


def test_optimize_for_inference_at_a_resized_input():
    model = _realistic("mobilevit_xxs")
    fast = optimize_for_inference(model)
    x = torch.rand(1, 3, 224, 224)  # layer5 takes the 7x7 -> 8x8 resize path
    with torch.inference_mode():
        assert (model(x) - fast(x)).abs().max().item() < 1e-4


def test_fold_batchnorm_needs_eval_mode_and_removes_every_bn():
    model = _realistic("mobilevit_xxs").train()
    with pytest.raises(ValueError):
        fold_batchnorm(model)
    folded = fold_batchnorm(model.eval())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_compile_falls_back_cleanly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = nn.Sequential(nn.Linear(3, 2)).eval()
    out, info = compile_model(model, torch.rand(4, 3))
    assert out is model
    assert info["compiled"] is False and "no compiler here" in info["error"]


def test_plot_latency_vs_macs(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    pts = [{"label": "a", "macs_g": 0.3, "ms": 5.0, "group": "CNN"},
           {"label": "b", "macs_g": 1.0, "ms": 30.0, "group": "MobileViT"}]
    fig = plot_latency_vs_macs(pts, name="t_lat")
    assert (tmp_path / "t_lat.png").exists()
    assert len(fig.axes[0].collections) == 2  # one scatter per group
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_latency_vs_macs([])
    plt.close(plot_latency_vs_macs(pts))  # no name: nothing is written
    fig = plot_time_vs_macs_share({"conv": 3.0, "attention": 1.0, "total": 4.0},
                                  {"conv": 2.0, "copy / layout": 2.0}, name="t_share")
    assert len(fig.axes[0].patches) == 4  # two segments per bar
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t_lat.png", "t_share.png"]


def test_fold_conv_bn_is_exact_for_one_pair():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1, bias=True), nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    fused = fold_conv_bn(conv, bn)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert (fused(x) - bn(conv(x))).abs().max().item() < 1e-5
    assert fused is not conv and fused.bias is not None


def test_time_by_operator_splits_a_pass_into_categories():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU()).eval()
    split = time_by_operator(model, torch.rand(1, 3, 16, 16), repeats=2, warmup=0, num_threads=1)
    assert {"conv", "activation", "total"} <= set(split)
    assert split["total"] == pytest.approx(sum(v for k, v in split.items() if k != "total"))
    assert op_category("convolution") == "conv" and op_category("nothing_known") == "other"
    with pytest.raises(ValueError, match="clock"):
        time_by_operator(model, torch.rand(1, 3, 16, 16), clock="gpu")


@pytest.mark.parametrize("shape", [(2, 6, 8, 8), (1, 5, 7, 9)])
def test_fold_writes_channels_last_when_asked(shape):
    from mobilevit_edu.nn.patches import fold, unfold

    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    seq, grid = unfold(x, 2)  # the 7x9 map takes the resize path
    plain, nhwc = fold(seq, grid), fold(seq, grid, channels_last=True)
    assert torch.equal(plain, nhwc)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert plain.is_contiguous()
