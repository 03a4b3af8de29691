"""count_macs: fvcore MACs with attention counted, per stage and per operator (chapter 07)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from torch import nn  # noqa: E402

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.book import paper  # noqa: E402
from mobilevit_edu.nn.block import MobileViTBlock  # noqa: E402
from mobilevit_edu.measure.flops import MacCount, count_macs  # noqa: E402
from mobilevit_edu.plots.cost import plot_mac_breakdown  # noqa: E402


@pytest.fixture(scope="module")
def counts() -> dict[str, MacCount]:
    return {s: count_macs(create_model(f"mobilevit_{s}"), 256) for s in ("xxs", "xs", "s")}


@pytest.mark.parametrize("size, expected_m", [("xxs", 418.2), ("xs", 1052.2), ("s", 2033.4)])
def test_macs_at_256_match_fvcore_on_hugging_face(counts, size, expected_m):
    # fvcore's count of Hugging Face's MobileViT with the same operators (conv, linear, attention
    # matmuls, BN, LN): implementations.md §E.1; paper.FVCORE_MACS_256 holds the exact integers
    macs = counts[size].macs
    assert abs(macs / 1e6 - expected_m) / expected_m < 0.01
    assert abs(macs - paper.FVCORE_MACS_256[size]) / paper.FVCORE_MACS_256[size] < 0.01


def test_xs_at_224():
    macs = count_macs(create_model("mobilevit_xs"), 224).macs
    assert abs(macs / 1e6 - 792.6) / 792.6 < 0.01
    assert abs(macs - paper.FVCORE_MACS_XS_224) / paper.FVCORE_MACS_XS_224 < 0.01


def test_attention_counts_the_same_on_both_paths(counts):
    explicit = count_macs(create_model("mobilevit_xs", fused_attention=False), 256)
    fused = counts["xs"]
    assert "scaled_dot_product_attention" in fused.by_operator
    assert "matmul" in explicit.by_operator
    assert "scaled_dot_product_attention" not in explicit.by_operator
    assert fused.macs == explicit.macs
    assert fused.by_column()["attention"] == explicit.by_column()["attention"] > 0


def test_sdpa_handle_matches_the_formula():
    # one block, 2 layers, d = 32, 8 x 8 map, 2 x 2 patches: P = 4 sequences of N = 16 tokens
    block = MobileViTBlock(16, 32, depth=2).eval()
    c = count_macs(block, (1, 16, 8, 8))
    per_layer = 4 * 16 * 16 * 32 * 2  # (B*P) * N * N * d for Q K^T, and again for A V
    assert c.by_operator["scaled_dot_product_attention"] == 2 * per_layer


def test_handles_say_what_they_count():
    from mobilevit_edu.measure import flops

    assert {"count_macs", "MacCount", "sdpa_mac_jit", "elementwise_op_jit"} <= set(flops.__all__)
    assert not any("flop" in name.lower() for name in flops.__all__)


def test_conv_and_linear_counts_are_exact():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(8 * 16 * 16, 10))
    c = count_macs(model, (1, 3, 16, 16))
    assert c.by_operator["conv"] == 3 * 3 * 3 * 8 * 16 * 16
    assert c.by_operator["linear"] == 8 * 16 * 16 * 10
    assert c.flops == 2 * c.macs == 2 * (3 * 3 * 3 * 8 * 16 * 16 + 8 * 16 * 16 * 10)


def test_attention_share_at_256(counts):
    # reference §6: the attention matmuls are 0.078 / 0.117 / 0.178 G of the totals at 256
    for size, g in (("xxs", 0.078), ("xs", 0.117), ("s", 0.178)):
        assert abs(counts[size].by_column()["attention"] / 1e9 - g) < 0.001


def test_breakdown_rows_add_up(counts):
    c = counts["s"]
    assert list(c.by_stage)[:6] == ["stem", "layer1", "layer2", "layer3", "layer4", "layer5"]
    assert sum(sum(v.values()) for v in c.by_stage.values()) == c.macs
    assert sum(c.by_column().values()) == c.macs
    table = c.table()
    header = ["stage", "conv", "linear", "attention", "norm", "total"]
    assert table.splitlines()[0].split() == header
    assert table.splitlines()[-1].split()[-1] == f"{c.macs / 1e6:.2f}"


def test_skipped_ops_are_reported_and_elementwise_option_counts_them():
    model = create_model("mobilevit_xxs")
    plain = count_macs(model, 64)
    assert {"silu", "add", "mean"} <= set(plain.skipped)
    full = count_macs(model, 64, elementwise=True)
    assert full.macs == plain.macs  # the element-wise column never enters the MAC total
    assert full.elementwise_ops > 0 and not full.skipped
    assert full.by_column()["elementwise"] == full.elementwise_ops


def test_elementwise_counts_one_per_element():
    c = count_macs(nn.Sequential(nn.SiLU()), (2, 3, 4, 5), elementwise=True)
    assert c.elementwise_ops == 2 * 3 * 4 * 5 and c.macs == 0


def test_counting_restores_training_mode():
    model = create_model("mobilevit_xxs").train()
    count_macs(model, 64)
    assert model.training


def test_input_size_forms():
    model = create_model("mobilevit_xxs")
    assert count_macs(model, 64).input_shape == (1, 3, 64, 64)
    assert count_macs(model, (64, 96)).input_shape == (1, 3, 64, 96)
    two = count_macs(model, (2, 3, 64, 64))
    assert two.macs == 2 * count_macs(model, 64).macs
    with pytest.raises(ValueError):
        count_macs(model, (3, 64, 64))


def test_baselines():
    mnv2 = count_macs(create_model("mobilenetv2_100"), 224)
    cols = mnv2.by_column()
    assert abs((cols["conv"] + cols["linear"]) / 1e6 - 300.8) < 1.0  # MobileNetV2 paper: 300 M
    vit = count_macs(create_model("vit_tiny"), 224)
    assert 1.24e9 < vit.macs < 1.27e9  # DeiT-Ti: 1.3 G "FLOPs" (MACs)


def test_plot_mac_breakdown(tmp_path, monkeypatch, counts):
    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    fig = plot_mac_breakdown({k: v for k, v in counts.items()}, name="t_flops")
    assert (tmp_path / "t_flops.png").stat().st_size > 0
    assert len(fig.axes[0].patches) == 3 * 4  # 3 models x (conv, linear, attention, norm)
    plt.close(fig)
    plt.close(plot_mac_breakdown({"xxs": counts["xxs"]}))  # no name: nothing is written
    assert [p.name for p in tmp_path.iterdir()] == ["t_flops.png"]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_mac_breakdown({})


def test_plain_fvcore_misses_the_fused_attention(counts):
    plain = count_macs(create_model("mobilevit_xs"), 256, count_sdpa=False)
    assert plain.skipped["scaled_dot_product_attention"] == 9  # 2 + 4 + 3 encoder layers
    missed = counts["xs"].macs - plain.macs
    assert missed == counts["xs"].by_operator["scaled_dot_product_attention"]
