"""The figures of chapter 06: each function draws what it says and saves one PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.models.mobilevit import architecture_table  # noqa: E402
from mobilevit_edu.plots.network import (  # noqa: E402
    plot_architecture, plot_param_distribution, plot_preprocessing,
)


pytestmark = pytest.mark.usefixtures("figures_in_tmp")


def _rows(channels: list[int], sides: list[int]) -> list[dict]:
    stages = ["stem", "layer1", "layer2", "layer3", "layer4", "layer5", "conv_1x1_exp"]
    mv2 = [0, 1, 3, 1, 1, 1, 0]
    d = [None, None, None, 64, 80, 96, None]
    L = [None, None, None, 2, 4, 3, None]
    return [
        {"stage": s, "output": f"{h} x {h}", "channels": c, "mv2_blocks": m, "d": dd, "L": ll}
        for s, c, h, m, dd, ll in zip(stages, channels, sides, mv2, d, L)
    ]


def test_architecture_draws_one_box_per_stage_coloured_by_kind(figures_in_tmp):
    sides = [128, 128, 64, 32, 16, 8, 8]
    tables = {"A": _rows([16, 16, 24, 48, 64, 80, 320], sides),
              "B": _rows([16, 32, 48, 64, 80, 96, 384], sides)}
    fig = plot_architecture(tables, name="arch_test")
    assert (figures_in_tmp / "arch_test.png").is_file()
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 14
    heights = [b.get_height() for b in boxes[:7]]
    h = heights
    assert h[0] == h[1] > h[2] > h[3] > h[4] > h[5] == h[6]  # taller for larger maps
    colours = [b.get_facecolor() for b in boxes[:7]]
    assert colours[0] == colours[6] != colours[1] == colours[2] != colours[3] == colours[5]
    texts = [t.get_text() for t in ax.texts]
    assert "C=80\nd=96\nL=3" in texts and "C=16" in texts  # d and L only on MobileViT stages
    assert "layer3\n32 x 32" in texts and "A" in texts and "B" in texts


def test_architecture_accepts_real_tables_and_rejects_bad_input():
    rows = architecture_table(create_model("mobilevit_xxs"), 64)
    fig = plot_architecture({"XXS @64": rows}, name="arch_real")
    assert sum(isinstance(p, Rectangle) for p in fig.axes[0].patches) == 7
    with pytest.raises(ValueError):
        plot_architecture({})
    with pytest.raises(ValueError, match="same stages"):
        plot_architecture({"a": rows, "b": rows[:3]})


def test_param_distribution_stacks_parts_and_labels_shares(figures_in_tmp):
    breakdowns = {
        "small": {"stem": {"conv": 4}, "layer3": {"MV2": 10, "transformer": 30},
                  "head": {"classifier": 56}},
        "big": {"stem": {"conv": 1}, "layer3": {"MV2": 100, "transformer": 300},
                "head": {"classifier": 599}},
    }
    fig = plot_param_distribution(breakdowns, name="dist_test")
    assert (figures_in_tmp / "dist_test.png").is_file()
    ax_small, ax_big = fig.axes
    heights = [round(b.get_height() * 1e6) for b in ax_small.patches]
    assert heights == [4, 10, 30, 56]
    assert [t.get_text() for t in ax_small.texts] == ["4%", "40%", "56%"]
    assert [t.get_text() for t in ax_big.texts] == ["<1%", "40%", "60%"]
    assert ax_big.get_title() == "big: 1,000"
    # a part has one colour in every panel
    colour = {round(b.get_height() * 1e6): b.get_facecolor() for b in ax_big.patches}
    assert colour[300] == [b.get_facecolor() for b in ax_small.patches][2]
    with pytest.raises(ValueError):
        plot_param_distribution({})


def test_preprocessing_shows_the_bgr_tensor_as_rgb_and_flipped_back(figures_in_tmp):
    photo = torch.zeros(3, 40, 30)
    photo[0] = 1.0  # a red photo
    bgr = photo[:, :20, :20].flip(0)  # red ends up in channel 2
    fig = plot_preprocessing(photo, bgr, crop_box=(5, 10, 20, 20), name="pre_test")
    assert (figures_in_tmp / "pre_test.png").is_file()
    shown = [ax.images[0].get_array() for ax in fig.axes]
    assert shown[0].shape == (40, 30, 3) and shown[1].shape == (20, 20, 3)
    assert shown[1][0, 0].tolist() == [0.0, 0.0, 1.0]  # displayed as RGB: the red photo looks blue
    assert shown[2][0, 0].tolist() == [1.0, 0.0, 0.0]  # flipped back: red again
    (box,) = fig.axes[0].patches
    assert (box.get_x(), box.get_y(), box.get_width()) == (4.5, 9.5, 20)
    with pytest.raises(ValueError):
        plot_preprocessing(torch.zeros(1, 4, 4), bgr)


def test_nothing_is_saved_without_a_name(figures_in_tmp):
    sides = [128, 128, 64, 32, 16, 8, 8]
    plot_architecture({"A": _rows([16, 16, 24, 48, 64, 80, 320], sides)})
    plot_param_distribution({"a": {"stem": {"conv": 4}}})
    plot_preprocessing(torch.rand(3, 20, 20), torch.rand(3, 10, 10))
    assert list(figures_in_tmp.iterdir()) == []
