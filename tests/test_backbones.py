"""MobileNetV2 as a detection and segmentation backbone (Tables 1 and 2 compare with it):
output stride 16/8 by dilation, no expansion conv, SSDLite and DeepLabv3 on it, and the
experiments that train both backbones."""

from __future__ import annotations

import pytest
import torch

from mobilevit_edu import create_model
from mobilevit_edu.detection import create_ssdlite
from mobilevit_edu.segmentation import create_deeplabv3

count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


@pytest.mark.parametrize("width", ["050", "100"])
@pytest.mark.parametrize("size", [64, 96, 128])
def test_output_stride_trades_stride_for_dilation(width, size):
    torch.manual_seed(0)
    plain = create_model(f"mobilenetv2_{width}", num_classes=0).eval()
    shapes = {}
    for os_ in (32, 16, 8):
        m = create_model(f"mobilenetv2_{width}", num_classes=0, output_stride=os_).eval()
        assert count(m) == count(plain)  # dilation adds no parameter
        feats = m.forward_intermediates(torch.rand(1, 3, size, size))
        shapes[os_] = [f.shape[-1] for f in feats]
        assert [i["stride"] for i in m.feature_info] == [2, 4, 8, min(16, os_), os_]
        assert shapes[os_] == [-(-size // i["stride"]) for i in m.feature_info]
    assert shapes[32][:4] == shapes[16][:4]


def test_output_stride_32_is_the_classifier_and_bad_strides_are_refused():
    torch.manual_seed(0)
    a = create_model("mobilenetv2_050", num_classes=5).eval()
    torch.manual_seed(0)
    b = create_model("mobilenetv2_050", num_classes=5, output_stride=32).eval()
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError, match="output_stride"):
        create_model("mobilenetv2_050", output_stride=4)
    bare = create_model("mobilenetv2_100", num_classes=0, expand_output=False)
    assert bare.conv_1x1_exp is None and bare.num_features == 320
    assert count(create_model("mobilenetv2_100", num_classes=0)) - count(bare) == 320 * 1280 + 2 * 1280


def test_deeplabv3_on_mobilenetv2_has_the_papers_size():
    # Table 2: DeepLabv3 with MobileNetV2 has 4.5 M parameters
    m = create_deeplabv3("mobilenetv2_100", num_classes=21)
    assert count(m) == 4_523_541 and round(count(m) / 1e6, 1) == 4.5
    assert m.output_stride == 16
    y = m.eval()(torch.rand(1, 3, 128, 128))
    assert y.shape == (1, 21, 8, 8)
    assert m.predict(torch.rand(1, 3, 96, 96)).shape == (1, 96, 96)


@pytest.mark.parametrize("name", ["mobilenetv2_050", "mobilenetv2_100", "mobilevit_xxs"])
def test_ssdlite_reads_any_backbone_of_the_feature_contract(name):
    torch.manual_seed(0)
    m = create_ssdlite(name, num_classes=6, image_size=160).eval()
    out = m(torch.rand(2, 3, 160, 160))
    assert out.scores.shape == (2, m.num_anchors(), 6) and out.locations.shape[-1] == 4
    assert m.backbone.conv_1x1_exp is None


def test_ssdlite_refuses_a_backbone_without_the_right_strides():
    from mobilevit_edu.detection import SSDLite

    with pytest.raises(ValueError, match="output stride 16 and 32"):
        SSDLite(create_model("mobilenetv2_050", num_classes=0, expand_output=False,
                             output_stride=16), 6, image_size=160)
    with pytest.raises(ValueError, match="expand_output=False"):
        SSDLite(create_model("mobilenetv2_050", num_classes=0), 6, image_size=160)
    with pytest.raises(ValueError, match="mobilenetv2_100"):
        create_ssdlite("resnet50")


@pytest.mark.parametrize("which", ["detection", "segmentation"])
def test_dense_runs_are_functions_of_config_and_seed(which):
    from mobilevit_edu.experiments.dense import run_detection, run_segmentation

    run = run_detection if which == "detection" else run_segmentation
    config = {"n_train": 8, "n_val": 4, "n_test": 4, "epochs": 1, "batch_size": 4,
              "backbone": "mobilenetv2_050", "image_size": 160 if which == "detection" else 64}
    a, b = run(config, 0), run(config, 0)
    assert a == b and a["updates"] == 2
    assert all(0 <= v <= 1 for k, v in a.items() if k != "updates")
    with pytest.raises(ValueError, match="unknown settings"):
        run({"backbon": "x"}, 0)
