"""The paper's numbers as data (mobilevit_edu.book.paper): complete, consistent, and the exact
architecture facts the rest of the book checks against."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mobilevit_edu.book import paper
from mobilevit_edu.book.paper import Ablation, Entry, Latency, MemoryRow, TrainingCost

REQUIRED = [
    "headline", "fig8b", "fig8c", "fig9b", "table1a", "table1b", "table2", "table3", "table11",
    "table10b", "table10c", "fig7b", "table5", "fig13", "fig14", "table6", "table7", "table8",
    "released",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_tables_present_and_non_empty(name):
    rows = paper.table(name)
    assert len(rows) > 0
    assert paper.TABLES[name].name == name
    assert paper.TABLES[name].source and paper.TABLES[name].caption


def test_table_is_iterable_and_table_returns_a_copy():
    t = paper.TABLES["fig8b"]
    assert list(t) == paper.table("fig8b") and len(t) == 6
    rows = paper.table("fig8b")
    rows.clear()
    assert len(paper.table("fig8b")) == 6


def test_unknown_table_raises_with_the_known_names():
    with pytest.raises(KeyError, match="fig8b"):
        paper.table("fig99")


def test_rows_are_frozen():
    row = paper.table("fig8b")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.top1 = 99.0  # type: ignore[misc]


def _numbers(row) -> dict[str, float]:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
    return {
        k: v for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


@pytest.mark.parametrize("name", list(paper.TABLES))
def test_every_number_is_positive_and_finite(name):
    for row in paper.table(name):
        for key, value in _numbers(row).items():
            assert math.isfinite(value) and value > 0, (name, row, key)
        if isinstance(row, Entry):
            assert row.source, row
            if row.params_m is not None:
                assert 0 < row.params_m < 100, row
            for score in (row.top1, row.top5, row.map, row.miou):
                assert score is None or 0 < score < 100, row


@pytest.mark.parametrize("name", list(paper.TABLES))
def test_each_table_holds_one_row_type(name):
    kinds = {type(r) for r in paper.table(name)}
    assert len(kinds) == 1 and kinds <= {Entry, Latency, Ablation, TrainingCost, MemoryRow}


def test_headline_numbers():
    got = {r.model: (r.params_m, r.top1, r.top5) for r in paper.table("headline")}
    assert got == {
        "MobileViT-XXS": (1.3, 69.0, 88.9),
        "MobileViT-XS": (2.3, 74.8, 92.3),
        "MobileViT-S": (5.6, 78.4, 94.1),
    }


def test_mobilevit_rows_in_fig8_and_fig9b():
    assert paper.find("fig8b", "MobileViT-XS").top1 == 74.8
    assert paper.find("fig8c", "MobileViT-S").top1 == 78.4
    assert paper.find("fig9b", "MobileViT-XS").top1 == 74.8
    assert paper.find("fig9b", "MobileViT-S").top1 == 78.4
    # MobileViT is the best row of each comparison it is in
    for name in ("fig8b", "fig8c"):
        best = max(paper.table(name), key=lambda r: r.top1)
        assert best.is_mobilevit, name
    assert max(paper.table("fig9b"), key=lambda r: r.top1).model == "MobileViT-S"


def test_fig9b_rows_and_augmentation():
    rows = paper.table("fig9b")
    assert len(rows) == 20
    assert [r.setting for r in rows] == [f"R{i}" for i in range(1, 21)]
    assert {r.aug for r in rows} == {"basic", "advanced"}
    assert all(r.aug == "basic" for r in rows if r.is_mobilevit)
    deit = {(r.aug, r.params_m): r.top1 for r in rows if r.model == "DeIT"}
    assert deit == {("basic", 5.7): 68.7, ("advanced", 5.7): 72.2, ("advanced", 10.0): 75.9}


def test_find_needs_a_unique_match():
    with pytest.raises(LookupError):
        paper.find("table3", "MobileViT-XS")  # two patch settings
    assert paper.find("table3", "MobileViT-XS", setting="patches (2,2,2)").latency_ms == 7.28
    with pytest.raises(LookupError):
        paper.find("fig8b", "ResNet-101")


def test_detection_and_segmentation():
    assert paper.find("table1a", "MobileViT-XS").map == 24.8
    assert paper.find("table1a", "MobileViT-S").map == 27.7
    assert paper.find("table1b", "ResNet50").map == 25.2
    assert {r.model: r.miou for r in paper.table("table2") if r.is_mobilevit} == {
        "MobileViT-XXS": 73.6, "MobileViT-XS": 77.1, "MobileViT-S": 79.1,
    }
    assert all(r.map is not None for r in paper.table("table10b"))
    assert all(r.miou is not None for r in paper.table("table10c"))


def test_latency_tables():
    t11 = {r.model: r for r in paper.table("table11")}
    assert (t11["MobileViT-XS"].iphone12_cpu_ms, t11["MobileViT-XS"].v100_ms) == (17.86, 0.62)
    # Table 3's Neural Engine column is Table 11's middle column
    for r in paper.table("table3"):
        if r.setting != "patches (8,4,2)":
            assert t11[r.model].iphone12_neural_engine_ms == r.latency_ms
    assert any("224" in c for c in paper.TABLES["table3"].caveats)


def test_sampler_tables():
    fig7b = {r.sampler: r for r in paper.table("fig7b")}
    assert (fig7b["standard"].updates_k, fig7b["multi-scale"].updates_k) == (375, 232)
    assert (fig7b["standard"].sec_per_epoch, fig7b["multi-scale"].sec_per_epoch) == (380, 270)
    ms = [r for r in paper.table("table5") if r.sampler == "multi-scale"]
    assert {r.model: r.top1 for r in ms} == {"ResNet-50": 78.6, "MobileNetv2-1.0": 73.3}


def test_ablations_mark_the_released_setting():
    for name, value, top1 in [
        ("fig13", "0.01", 78.4), ("fig14", "with", 78.4), ("table6", "2,2,2", 78.4),
        ("table7", "LS + EMA", 78.4),
    ]:
        defaults = [r for r in paper.table(name) if r.is_default]
        assert len(defaults) == 1 and (defaults[0].value, defaults[0].top1) == (value, top1)
    assert [r.top1 for r in paper.table("fig13")] == [76.5, 78.4, 77.6, 77.4]
    assert paper.table("fig14")[0].top1 == 77.9


def test_table8_memory():
    rows = paper.table("table8")
    assert [r.output_stride for r in rows] == [2, 4, 8, 16, 32]
    assert [(r.mobilenetv2, r.mobilevit_xs) for r in rows] == [
        (400, 784), (200, 294), (100, 98), (62, 31), (32, 37)
    ]


def test_released_checkpoints():
    got = {(r.model, r.setting): r.metric for r in paper.table("released")}
    assert got[("MobileViT-XS", "classification")] == 74.7
    assert got[("MobileViT-S", "SSDLite-320")] == 27.9
    assert got[("MobileViT-XXS", "DeepLabv3")] == 72.8
    assert len(got) == 9


def test_architecture_facts_exact():
    assert paper.PARAMS == {"xxs": 1_272_024, "xs": 2_317_848, "s": 5_578_632}
    assert paper.DEEPLABV3_PARAMS == {"xxs": 1_854_853, "xs": 2_944_069, "s": 6_357_941}
    assert paper.SSDLITE_PARAMS_M == {"xxs": 1.755, "xs": 2.742, "s": 5.739}
    assert paper.MACS_256_G == {"xxs": 0.41, "xs": 1.03, "s": 2.00}
    assert paper.FVCORE_MACS_256 == {"xxs": 418_183_680, "xs": 1_052_168_192, "s": 2_033_383_424}
    assert paper.FVCORE_MACS_XS_224 == 792_602_336
    # the paper's rounded numbers agree with the exact counts
    for size, exact in paper.PARAMS.items():
        assert round(exact / 1e6, 1) == paper.PARAMS_M[size]
        assert paper.find("headline", f"MobileViT-{size.upper()}").params_m == paper.PARAMS_M[size]
    for size, exact in paper.DEEPLABV3_PARAMS.items():
        assert round(exact / 1e6, 1) == paper.find("table2", f"MobileViT-{size.upper()}").params_m
    for size, macs in paper.MACS_G.items():
        assert round(macs[256], 2) == paper.MACS_256_G[size]
        assert list(macs) == sorted(macs) and list(macs.values()) == sorted(macs.values())


def test_sampler_facts_exact():
    assert paper.SAMPLER_RESOLUTIONS == (160, 192, 256, 288, 320)
    assert paper.SAMPLER_BATCH_V01 == {160: 328, 192: 224, 256: 128, 288: 128, 320: 128}
    assert paper.SAMPLER_BATCH_CURRENT == {160: 327, 192: 227, 256: 128, 288: 101, 320: 81}
    # the current rule is int(base_res^2 * base_batch / res^2); v0.1 floors at the base batch
    res, batch = paper.SAMPLER_BASE
    for r, b in paper.SAMPLER_BATCH_CURRENT.items():
        assert b == max(1, int(res * res * batch / (r * r)))
        assert paper.SAMPLER_BATCH_V01[r] >= batch
        assert paper.SAMPLER_BATCH_V01[r] % paper.SAMPLER_N_GPUS == 0


# --- plots.paper: the figures of the paper's numbers ---------------------------------------------
def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_plot_cnn_comparison_draws_and_saves_every_row(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.paper import plot_cnn_comparison

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    plt.close(plot_cnn_comparison(paper.TABLES["fig8b"], paper.TABLES["fig8c"]))
    assert not list(tmp_path.glob("*.png"))  # saved only when given a name
    fig = plot_cnn_comparison(paper.TABLES["fig8b"], paper.TABLES["fig8c"], name="cnns_test")
    try:
        assert (tmp_path / "cnns_test.png").stat().st_size > 10_000
        ax8b, ax8c = fig.axes
        assert "Fig. 8b" in ax8b.get_title() and "Fig. 8c" in ax8c.get_title()
        for ax, name in ((ax8b, "fig8b"), (ax8c, "fig8c")):
            assert sorted(_texts(ax)) == sorted(r.model for r in paper.table(name))
            assert sum(len(c.get_offsets()) for c in ax.collections) == len(paper.table(name))
        assert any("not measured" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)


def test_plot_vit_comparison_marks_augmentation(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.paper import plot_vit_comparison

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    fig = plot_vit_comparison(paper.TABLES["fig9b"], name="vits_test")
    try:
        assert (tmp_path / "vits_test.png").exists()
        (ax,) = fig.axes
        assert sum(len(c.get_offsets()) for c in ax.collections) == 20
        labels = _texts(ax)
        assert len(labels) == 20 and "MobileViT-S" in labels and "DeIT (basic)" in labels
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("basic" in t for t in legend) and any("advanced" in t for t in legend)
        # every label lies inside the axes
        renderer = fig.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        for t in ax.texts:
            bb = t.get_window_extent(renderer)
            assert box.x0 - 1 <= bb.x0 and bb.x1 <= box.x1 + 1, t.get_text()
    finally:
        plt.close(fig)
