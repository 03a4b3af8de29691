"""The plotting functions of chapters 04 and 05 (attention, transformer, block figures).

Each test draws into a temporary figures folder and checks what the figure must contain, plus the
input validation. nbval never compares images, so these tests are what guards the figures.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from mobilevit_edu.plots.blocks import (  # noqa: E402
    plot_attention_cost, plot_attention_maps, plot_block_shapes, plot_layer_params,
)
from mobilevit_edu.plots.receptive_fields import plot_influence_maps  # noqa: E402


pytestmark = pytest.mark.usefixtures("figures_in_tmp")


def _png_ok(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_maps_layout_and_file(figures_in_tmp):
    image = torch.rand(3, 64, 64)
    uniform = torch.full((4, 4), 1 / 16)
    peaked = torch.zeros(4, 4)
    peaked[1, 2] = 1.0
    maps = [[uniform, peaked]] * 2
    fig = plot_attention_maps(image, maps, [(1, 2), (0, 0)], ["a", "b"], name="t_maps")
    assert _png_ok(figures_in_tmp / "t_maps.png")
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2 * 3  # per query: the photo + two maps (colorbars have no images)
    # the uniform map is drawn as N x weight = 1 everywhere
    assert images[1].images[0].get_array().max() == pytest.approx(1.0)
    assert images[2].images[0].get_array().max() == pytest.approx(16.0)


def test_attention_maps_rejects_mismatched_titles():
    grid = torch.full((2, 2), 0.25)
    with pytest.raises(ValueError):
        plot_attention_maps(torch.rand(3, 8, 8), [[grid, grid]], [(0, 0)], ["only one title"])
    with pytest.raises(ValueError):
        plot_attention_maps(torch.rand(3, 8, 8), [[grid]], [(0, 0), (1, 1)], ["t"])


def test_attention_cost_lines(figures_in_tmp):
    sizes = [128, 256, 512]
    curves = {"MobileViT": [1.0, 16.0, 256.0], "ViT": [2.0, 32.0, 512.0]}
    fig = plot_attention_cost(sizes, curves, name="t_cost")
    assert _png_ok(figures_in_tmp / "t_cost.png")
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in curves]
    assert [ln.get_label() for ln in lines] == ["MobileViT", "ViT"]
    assert list(lines[1].get_ydata()) == [2.0, 32.0, 512.0]
    assert lines[1].get_linestyle() == "--"  # ViT curves are dashed
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError):
        plot_attention_cost(sizes, {"short": [1.0, 2.0]})


def test_layer_params_bars_sum(figures_in_tmp):
    bars = {"2d": {"qkv": 30, "FFN": 40}, "4d": {"qkv": 30, "FFN": 80}}
    fig = plot_layer_params(bars, name="t_params")
    assert _png_ok(figures_in_tmp / "t_params.png")
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    assert sum(widths) == 30 + 40 + 30 + 80
    assert "110" in [t.get_text().strip() for t in ax.texts]  # the 4d bar's total
    with pytest.raises(ValueError):
        plot_layer_params({})


def test_block_shapes_boxes(figures_in_tmp):
    steps = [("input", "x", "[1, 8, 4, 4]"), ("local", "conv", "[1, 8, 4, 4]"),
             ("global", "attn", "[4, 4, 8]"), ("fusion", "fuse", "[1, 8, 4, 4]")]
    fig = plot_block_shapes(steps, skip=(0, 3), name="t_shapes")
    assert _png_ok(figures_in_tmp / "t_shapes.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for _, label, shape in steps:
        assert label in texts and shape in texts
    assert any("skip" in t for t in texts)
    with pytest.raises(ValueError):
        plot_block_shapes([("middle", "x", "[1]")])


def test_influence_maps_counts_changed_pixels(figures_in_tmp):
    local = torch.zeros(8, 8)
    local[2:5, 3:6] = 1.0
    full = torch.full((8, 8), 1e-3)
    fig = plot_influence_maps([local, full], ["local", "full"], (3, 4), name="t_influence")
    assert _png_ok(figures_in_tmp / "t_influence.png")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["local\n9 of 64 pixels changed", "full\n64 of 64 pixels changed"]
    with pytest.raises(ValueError):
        plot_influence_maps([torch.zeros(4, 4)], ["nothing"], (0, 0))


def test_nothing_is_saved_without_a_name(figures_in_tmp):
    grid = torch.full((2, 2), 0.25)
    plot_attention_maps(torch.rand(3, 8, 8), [[grid]], [(0, 0)], ["t"])
    plot_attention_cost([128, 256], {"a": [1.0, 4.0]})
    plot_layer_params({"2d": {"qkv": 3}})
    plot_block_shapes([("input", "x", "[1]")])
    plot_influence_maps([torch.rand(4, 4)], ["a"], (0, 0))
    assert list(figures_in_tmp.iterdir()) == []
    with pytest.raises(TypeError):  # name is keyword-only everywhere
        plot_layer_params({"2d": {"qkv": 3}}, "positional_name")
