"""Activation memory per output stride (paper Table 8) and the peak of a forward pass."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from torch import nn  # noqa: E402

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.book import paper  # noqa: E402
from mobilevit_edu.measure.memory import memory_per_output_stride, memory_table, peak_memory  # noqa: E402
from mobilevit_edu.plots.cost import plot_memory_per_os  # noqa: E402


@pytest.fixture(scope="module")
def xs_rows():
    return memory_per_output_stride(create_model("mobilevit_xs"), 224, bytes_per_element=2)


def test_xs_feature_maps_per_stride(xs_rows):
    assert [r.output_stride for r in xs_rows] == [2, 4, 8, 16, 32]
    assert [r.output_shape for r in xs_rows] == [
        (1, 32, 112, 112), (1, 48, 56, 56), (1, 64, 28, 28), (1, 80, 14, 14), (1, 384, 7, 7)
    ]
    # fp16 KiB: exactly 784, 294, 98, 30.625, 36.75
    assert [r.output_bytes for r in xs_rows] == [802816, 301056, 100352, 31360, 37632]


def test_xs_reproduces_table8_to_the_unit(xs_rows):
    table8 = {row.output_stride: row.mobilevit_xs for row in paper.table("table8")}
    ours = {r.output_stride: round(r.output_bytes / 1024) for r in xs_rows}
    assert ours == table8


def test_totals_cover_the_outputs(xs_rows):
    for r in xs_rows:
        assert r.total_bytes >= r.largest_bytes >= r.output_bytes > 0
        assert r.tensors > 0


def test_resized_layer5_still_counts_as_os32():
    rows = memory_per_output_stride(create_model("mobilevit_xxs"), 224)  # 7x7 -> 8x8 inside
    assert [r.output_stride for r in rows] == [2, 4, 8, 16, 32]


def test_mobilenetv2_strides():
    rows = memory_per_output_stride(create_model("mobilenetv2_100"), 224)
    assert [r.output_shape[1] for r in rows] == [16, 24, 32, 96, 1280]
    assert rows[0].output_bytes == 16 * 112 * 112 * 4


def test_peak_of_a_known_network():
    # [16, 4] -> Linear -> [16, 8] (512 B) -> ReLU -> [16, 8] (512 B) -> Linear -> [16, 2]
    # the first Linear's output is freed only after ReLU has made its own: peak 1024 B
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model.in_channels = 1
    p = peak_memory(model, (2, 2), batch=16)
    assert p.peak_bytes == 1024
    assert p.total_bytes >= 512 + 512 + 128
    assert p.input_bytes == 16 * 4 * 4
    assert p.param_bytes == (4 * 8 + 8 + 8 * 2 + 2) * 4


def test_peak_is_freed_and_scales_with_batch():
    model = create_model("mobilevit_xxs")
    one, four = peak_memory(model, 64), peak_memory(model, 64, batch=4)
    assert one.timeline[-1] < one.peak_bytes  # activations are freed along the way
    assert one.peak_bytes < one.total_bytes
    assert four.peak_bytes == pytest.approx(4 * one.peak_bytes, rel=0.05)


def test_memory_table_and_plot(tmp_path, monkeypatch, xs_rows):
    text = memory_table({"XS": xs_rows})
    assert text.splitlines()[2].split() == ["2", "784.0"]
    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    fig = plot_memory_per_os({"XS": xs_rows}, {"XS": {2: 784, 4: 294}}, name="t_mem")
    assert (tmp_path / "t_mem.png").exists()
    assert len(fig.axes[0].patches) == 5
    plt.close(fig)
    plt.close(plot_memory_per_os({"XS": xs_rows}))  # no name: nothing is written
    assert [p.name for p in tmp_path.iterdir()] == ["t_mem.png"]
    with pytest.raises(ValueError, match="input_size"):
        memory_per_output_stride(create_model("mobilevit_xxs"), (1, 3, 64, 64))
