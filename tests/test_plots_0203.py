"""The figures of chapters 02 and 03: each function draws what it says and saves one PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mobilevit_edu.plots.blocks import plot_param_breakdown, plot_patch_sequences  # noqa: E402
from mobilevit_edu.plots.receptive_fields import (  # noqa: E402
    plot_gradient_maps, plot_receptive_windows,
)


pytestmark = pytest.mark.usefixtures("figures_in_tmp")


def _photo(size: int = 32) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))


def test_receptive_windows_draws_one_box_per_window_per_panel(figures_in_tmp):
    windows = {"one conv": (9, 9, 11, 11), "two convs": (8, 8, 12, 12)}
    fig = plot_receptive_windows(_photo(), windows, zoom=4, name="rf_test")
    assert (figures_in_tmp / "rf_test.png").is_file()
    ax_full, ax_zoom = fig.axes[:2]
    boxes = [p for p in ax_zoom.patches if isinstance(p, Rectangle)]
    assert [(b.get_width(), b.get_height()) for b in boxes] == [(3, 3), (5, 5)]
    assert len(ax_full.patches) == 3  # the two windows and the dashed zoom box
    assert ax_zoom.get_xlim() == (8 - 4 - 0.5, 12 + 4 + 0.5)
    labels = [t.get_text() for t in ax_zoom.get_legend().get_texts()]
    assert labels == ["one conv: 3x3", "two convs: 5x5"]


def test_receptive_windows_rejects_bad_input():
    with pytest.raises(ValueError):
        plot_receptive_windows(torch.rand(1, 8, 8), {"a": (0, 0, 1, 1)})
    with pytest.raises(ValueError):
        plot_receptive_windows(_photo(), {})


def test_param_breakdown_stacks_counts_and_labels_totals(figures_in_tmp):
    breakdown = {
        "depth-wise": {"expand": 10, "3x3": 2, "reduce": 7},
        "standard": {"expand": 10, "3x3": 40, "reduce": 7},
    }
    fig = plot_param_breakdown(breakdown, name="mv2_test")
    assert (figures_in_tmp / "mv2_test.png").is_file()
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 6
    assert [b.get_width() for b in bars] == [10, 2, 7, 10, 40, 7]
    assert [b.get_x() for b in bars] == [0, 10, 12, 0, 10, 50]
    assert {t.get_text() for t in ax.texts} == {"19", "57"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["expand", "3x3", "reduce"]
    # a sub-layer keeps its colour across bars
    assert bars[1].get_facecolor() == bars[4].get_facecolor()
    with pytest.raises(ValueError):
        plot_param_breakdown({})


def test_patch_sequences_shows_strided_views_of_the_photo(figures_in_tmp):
    photo = _photo(16)
    fig = plot_patch_sequences(photo, 2, crop=(4, 6, 4), name="seq_test")
    assert (figures_in_tmp / "seq_test.png").is_file()
    assert len(fig.axes) == 2 + 4
    for p, ax in enumerate(fig.axes[2:]):
        i, j = divmod(p, 2)
        shown = torch.as_tensor(ax.images[0].get_array())
        expected = photo[:, i::2, j::2].permute(1, 2, 0)  # [3, 8, 8] -> [8, 8, 3]
        assert torch.allclose(shown.float(), expected)
    zoom = fig.axes[1]
    assert [t.get_text() for t in zoom.texts[:4]] == ["0", "1", "0", "1"]
    with pytest.raises(ValueError):
        plot_patch_sequences(photo, 2, crop=(3, 6, 4))  # not on a patch border


def test_gradient_maps_count_nonzero_pixels(figures_in_tmp):
    photo = _photo(8)
    local = torch.zeros(8, 8)
    local[2:5, 3:6] = 1.0
    maps = {"local": local, "global": torch.rand(8, 8) + 0.1}
    fig = plot_gradient_maps(photo, maps, (3, 4), name="grad_test")
    assert (figures_in_tmp / "grad_test.png").is_file()
    titles = [ax.get_title() for ax in fig.axes[1:3]]
    assert "9 of 64 pixels" in titles[0] and "64 of 64 pixels" in titles[1]
    shown = fig.axes[1].images[0].get_array()
    assert int(shown.mask.sum()) == 64 - 9  # zeros are masked (drawn white)
    with pytest.raises(ValueError):
        plot_gradient_maps(photo, {"wrong": torch.zeros(4, 4)}, (0, 0))


def test_nothing_is_saved_without_a_name(figures_in_tmp):
    plot_receptive_windows(_photo(), {"one conv": (9, 9, 11, 11)}, zoom=4)
    plot_param_breakdown({"a": {"x": 1}})
    plot_patch_sequences(_photo(16), 2, crop=(4, 6, 4))
    plot_gradient_maps(_photo(8), {"a": torch.rand(8, 8)}, (3, 4))
    assert list(figures_in_tmp.iterdir()) == []
