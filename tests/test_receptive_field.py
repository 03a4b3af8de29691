"""Receptive fields (chapter 08): the theoretical walk, the effective receptive field, the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.nn.block import MobileViTBlock  # noqa: E402
from mobilevit_edu.nn.mv2 import InvertedResidual  # noqa: E402
from mobilevit_edu.measure.receptive_field import (  # noqa: E402
    effective_receptive_field,
    format_rf_table,
    input_gradient_map,
    receptive_field_table,
    stage_features,
    stage_indices,
    stage_rows,
    summarize_erf,
)
from mobilevit_edu.models.batchnorm import calibrate_batchnorm  # noqa: E402
from mobilevit_edu.plots.receptive_fields import (  # noqa: E402
    plot_erf_grid,
    plot_erf_overlay,
    plot_rf_growth,
    plot_support_maps,
)


def _convs(*specs: tuple[int, int, int]) -> nn.Sequential:
    """A stack of 1-channel convs from (kernel, stride, dilation), 'same' padded."""
    return nn.Sequential(*[nn.Conv2d(1, 1, k, s, padding=d * (k - 1) // 2, dilation=d)
                           for k, s, d in specs])


# --- theoretical receptive field ----------------------------------------------------------------
def test_three_3x3_convs_give_7():
    rows = receptive_field_table(_convs((3, 1, 1), (3, 1, 1), (3, 1, 1)))
    assert [r.rf for r in rows] == [3, 5, 7]
    assert [r.jump for r in rows] == [1, 1, 1]
    assert not any(r.is_global for r in rows)


@pytest.mark.parametrize(
    ("specs", "rfs", "jumps"),
    [
        (((3, 2, 1), (3, 1, 1), (3, 1, 1)), [3, 7, 11], [2, 2, 2]),  # stride 2 doubles later steps
        (((3, 2, 1), (3, 2, 1), (3, 1, 1)), [3, 7, 15], [2, 4, 4]),
        (((3, 1, 1), (3, 1, 2), (3, 1, 4)), [3, 7, 15], [1, 1, 1]),  # dilations 1, 2, 4
        (((5, 1, 1), (3, 2, 2), (1, 1, 1), (3, 1, 1)), [5, 9, 9, 13], [1, 2, 2, 2]),
    ],
)
def test_stride_and_dilation(specs, rfs, jumps):
    rows = receptive_field_table(_convs(*specs))
    assert [r.rf for r in rows] == rfs
    assert [r.jump for r in rows] == jumps


def test_pooling_counts_like_a_conv():
    rows = receptive_field_table(nn.Sequential(nn.MaxPool2d(2, 2), nn.Conv2d(1, 1, 3, padding=1)))
    assert [(r.kind, r.rf, r.jump) for r in rows] == [("pool", 2, 2), ("conv", 6, 2)]


@pytest.mark.parametrize("specs", [((3, 2, 1), (3, 1, 2), (3, 2, 1)), ((5, 1, 1), (3, 1, 3))])
def test_formula_matches_the_measured_gradient_window(specs):
    torch.manual_seed(0)
    net = _convs(*specs).double()
    for m in net:
        nn.init.uniform_(m.weight, 0.5, 1.5)  # positive weights: no accidental cancellation
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    g, (i, j), _ = input_gradient_map(net, x)
    rows = torch.nonzero(g.sum(1) > 0).flatten()
    assert rows.max() - rows.min() + 1 == receptive_field_table(net)[-1].rf


def test_mobilevit_is_global_after_its_first_transformer():
    rows = receptive_field_table(create_model("mobilevit_xxs"))
    first = next(i for i, r in enumerate(rows) if r.is_global)
    assert rows[first].name == "layer3.1.transformer" and rows[first].kind == "attention"
    assert all(r.is_global for r in rows[first:])
    before = rows[first - 1]
    assert (before.rf, before.jump) == (51, 8)  # conv window before attention, in input px
    assert rows[first].period == 2 * 8  # 2x2 patches at output stride 8


def test_mobilenetv2_never_global_and_its_rf_grows_by_jump():
    rows = receptive_field_table(create_model("mobilenetv2_100"))
    assert not any(r.is_global for r in rows) and all(r.period is None for r in rows)
    assert rows[-1].rf == 491 and rows[-1].jump == 32
    assert all(b.rf - a.rf == (b.kernel - 1) * b.dilation * a.jump for a, b in zip(rows, rows[1:]))


def test_vit_global_after_patch_embedding():
    rows = receptive_field_table(create_model("vit_tiny", image_size=64, patch_size=8, depth=2))
    assert [(r.name, r.rf, r.jump, r.is_global) for r in rows] == [
        ("patch_embed", 8, 8, False), ("blocks", 8, 8, True)]


def test_large_patches_make_a_lattice_that_the_fusion_conv_may_close():
    rows = {r.name: r for r in receptive_field_table(MobileViTBlock(16, 32, 1, patch_size=8))}
    assert rows["transformer"].period == 8 and rows["transformer"].rf == 3
    assert not rows["fusion.conv"].is_global and rows["fusion.conv"].rf == 5
    net = {r.name: r for r in receptive_field_table(create_model("mobilevit_xs", patch_sizes=(8, 4, 2)))}
    assert not net["layer3.1.transformer"].is_global  # window 51 < period 64
    assert net["layer3.1.fusion.conv"].is_global  # 51 + 2 * 8 = 67 >= 64


def test_stage_rows_and_table_text():
    rows = receptive_field_table(create_model("mobilevit_xxs"))
    stages = stage_rows(rows)
    assert [r.name.split(".")[0] for r in stages] == [
        "stem", "layer1", "layer2", "layer3", "layer4", "layer5", "conv_1x1_exp"]
    text = format_rf_table(stages, image_size=256)
    assert "global" in text and text.count("\n") == len(stages) + 1
    assert "11%" in text  # layer2: 27 px of 256


# --- effective receptive field -----------------------------------------------------------------
def _calibrated(block: nn.Module, x: torch.Tensor) -> nn.Module:
    return calibrate_batchnorm(block, [x])


def test_mobilevit_block_reaches_every_pixel_and_mv2_a_window():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64)
    vit_block = _calibrated(MobileViTBlock(16, 32, 1, dropout=0.0).double(), x)
    mv2 = _calibrated(InvertedResidual(16, 16, 1, 2.0).double(), x)
    g_vit, loc, _ = input_gradient_map(vit_block, x)
    g_mv2, _, _ = input_gradient_map(mv2, x)
    assert loc == (6, 6)
    assert bool((g_vit > 0).all())  # Fig. 4: one output pixel, every input pixel
    assert summarize_erf(g_vit).support == 1.0
    support = torch.nonzero(g_mv2 > 0)
    assert support.shape[0] == 9 and support.min(0).values.tolist() == [5, 5]
    assert support.max(0).values.tolist() == [7, 7]  # exactly the 3x3 depth-wise window


def test_patch8_block_reaches_the_predicted_lattice():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 16, 16, dtype=torch.float64)
    block = _calibrated(MobileViTBlock(16, 32, 1, patch_size=8, dropout=0.0).double(), x)
    g, _, _ = input_gradient_map(block, x)
    assert int((g > 0).sum()) == 100  # 10 rows x 10 columns: offsets -2..+2 in both patches


def test_summarize_erf_normalises_and_measures():
    delta = torch.zeros(9, 9)
    delta[4, 4] = 5.0
    e = summarize_erf(delta)
    assert e.map.sum().item() == pytest.approx(1.0) and e.radius90 == 0.0
    assert e.centre == (4.0, 4.0) and e.support == pytest.approx(1 / 81)
    flat = summarize_erf(torch.full((10, 10), 3.0))
    assert flat.map.sum().item() == pytest.approx(1.0) and flat.support == 1.0
    assert torch.allclose(flat.map, torch.full((10, 10), 0.01, dtype=torch.float64))
    assert 0 < flat.radius90 < 10 * 2**0.5 / 2  # inside the corner distance
    ring = torch.zeros(21, 21)
    ring[10, 10], ring[10, 20] = 1.0, 9.0  # 90 % sits 10 px right of the first pixel
    assert summarize_erf(ring).radius90 == pytest.approx(1.0)  # centre of mass is at column 19
    with pytest.raises(ValueError):
        summarize_erf(torch.zeros(4, 4))
    with pytest.raises(ValueError):
        summarize_erf(torch.ones(2, 4, 4))


def test_input_gradient_map_rejects_bad_locations():
    with pytest.raises(ValueError):
        input_gradient_map(nn.Conv2d(1, 1, 1), torch.randn(1, 1, 4, 4), location=(4, 0))


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "keys"),
    [
        ("mobilevit_xxs", {}, 64, ["OS 8", "OS 16", "OS 32"]),
        ("mobilenetv2_035", {}, 64, ["OS 8", "OS 16", "OS 32"]),
        ("vit_tiny", {"image_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 48},
         32, ["L 1/3 (stride 8)", "L 2/3 (stride 8)", "L 3/3 (stride 8)"]),
    ],
)
def test_effective_receptive_field_of_networks(name, kwargs, size, keys):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **kwargs)
    x = torch.rand(2, 3, size, size)
    calibrate_batchnorm(model, [x])
    model.train()
    erfs = effective_receptive_field(model, x)
    assert list(erfs) == keys and model.training  # mode restored
    for e in erfs.values():
        assert e.map.shape == (size, size)
        assert e.map.sum().item() == pytest.approx(1.0) and (e.map >= 0).all()
        assert 0 < e.support <= 1 and e.radius90 > 0
    feats = stage_features(model.eval(), x)
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [e.feature_size for e in erfs.values()]
    if name == "mobilevit_xxs":
        assert all(e.support == 1.0 for e in erfs.values())
    if name == "mobilenetv2_035":
        assert erfs["OS 8"].support < 1.0


def test_stage_indices_pick_strides_or_depths():
    info = lambda strides: [{"name": f"s{i}", "channels": 8, "stride": s}  # noqa: E731
                            for i, s in enumerate(strides)]
    assert stage_indices(info([2, 4, 8, 16, 32])) == {"OS 8": 2, "OS 16": 3, "OS 32": 4}
    assert stage_indices(info([2, 4, 8, 16, 16])) == {"OS 8": 2, "OS 16": 4}  # dilated: the last
    assert stage_indices(info([16] * 12)) == {
        "L 4/12 (stride 16)": 3, "L 8/12 (stride 16)": 7, "L 12/12 (stride 16)": 11}
    with pytest.raises(ValueError):
        stage_indices([])


def test_stage_features_are_entries_of_forward_intermediates():
    for name, kw, size in [("mobilenetv2_035", {}, 64),
                           ("vit_tiny", {"image_size": 32, "patch_size": 8, "depth": 3,
                                         "embed_dim": 24}, 32)]:
        model = create_model(name, num_classes=3, **kw).eval()
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            maps = model.forward_intermediates(x)
            feats = stage_features(model, x)
        picked = stage_indices(model.feature_info)
        assert all(torch.equal(feats[label], maps[i]) for label, i in picked.items())


def test_stage_features_dilated_mobilevit():
    model = create_model("mobilevit_xxs", output_stride=16).eval()
    feats = stage_features(model, torch.rand(1, 3, 64, 64))
    assert list(feats) == ["OS 8", "OS 16"] and feats["OS 16"].shape[-1] == 4
    with pytest.raises(TypeError):
        stage_features(nn.Conv2d(3, 3, 1), torch.rand(1, 3, 8, 8))


# --- figures ------------------------------------------------------------------------------------
@pytest.fixture
def figures_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    yield tmp_path
    plt.close("all")


def _png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_files(figures_tmp):
    a, b = torch.rand(8, 8), torch.zeros(8, 8)
    b[3:6, 3:6] = 1.0
    fig = plot_support_maps([a, b], ["global", "local"], name="t_support")
    assert _png(figures_tmp / "t_support.png")
    assert "9 of 64" in fig.axes[1].get_title() and "64 of 64" in fig.axes[0].get_title()

    tables = {"convs": receptive_field_table(_convs((3, 2, 1), (3, 1, 1))),
              "vit": receptive_field_table(create_model("vit_tiny", image_size=32, patch_size=8,
                                                        depth=1, embed_dim=24))}
    plot_rf_growth(tables, 32, name="t_growth")
    assert _png(figures_tmp / "t_growth.png")

    e1, e2 = summarize_erf(a), summarize_erf(b)
    fig = plot_erf_grid({"m1": {"OS 8": e1, "OS 16": e2}, "m2": {"OS 8": e2}}, name="t_grid")
    assert _png(figures_tmp / "t_grid.png") and len(fig.axes) == 4
    plot_erf_overlay(torch.rand(3, 8, 8), {"a": e1, "b": e2}, name="t_overlay")
    assert _png(figures_tmp / "t_overlay.png")


def test_plots_save_only_when_named(figures_tmp):
    e = summarize_erf(torch.rand(8, 8))
    plot_support_maps([torch.rand(8, 8)], ["a"])
    plot_rf_growth({"convs": receptive_field_table(_convs((3, 1, 1)))}, 8)
    plot_erf_grid({"m": {"OS 8": e}})
    plot_erf_overlay(torch.rand(3, 8, 8), {"a": e})
    assert list(figures_tmp.iterdir()) == []


def test_plots_validate_inputs(figures_tmp):
    with pytest.raises(ValueError):
        plot_support_maps([torch.rand(4, 4)], ["a", "b"])
    with pytest.raises(ValueError):
        plot_rf_growth({}, 32)
    with pytest.raises(ValueError):
        plot_erf_grid({})
    e = summarize_erf(torch.rand(8, 8))
    with pytest.raises(ValueError):
        plot_erf_overlay(torch.rand(3, 16, 16), {"a": e})  # map and photo differ in size
    with pytest.raises(ValueError):
        plot_erf_overlay(torch.rand(16, 16), {"a": e})


def test_stage_receptive_fields_match_stage_features():
    from mobilevit_edu.measure.receptive_field import stage_receptive_fields

    for name, kw in [("mobilevit_xxs", {}), ("mobilenetv2_035", {}),
                     ("vit_tiny", {"image_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 24})]:
        model = create_model(name, num_classes=3, **kw).eval()
        rfs = stage_receptive_fields(model)
        assert list(rfs) == list(stage_features(model, torch.rand(1, 3, 64, 64)))
    mnv2 = stage_receptive_fields(create_model("mobilenetv2_100"))
    assert mnv2["OS 8"].name == "blocks.5.reduce_1x1.conv" and mnv2["OS 8"].rf == 59 and mnv2["OS 32"].rf == 491
    xxs = stage_receptive_fields(create_model("mobilevit_xxs"))
    assert all(r.is_global for r in xxs.values())
