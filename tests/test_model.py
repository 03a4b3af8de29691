"""The network: architecture facts (parameter counts), shapes, output strides, errors, and the
feature contract every registered model follows."""

import pytest
import torch
from torch import nn

from mobilevit_edu import create_model, list_models
from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import ConvBNAct, make_divisible
from mobilevit_edu.models.mobilevit import architecture_table
from mobilevit_edu.nn.mv2 import InvertedResidual


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mobilevit_xxs", 1_272_024),  # paper 1.3 M
        ("mobilevit_xs", 2_317_848),  # paper 2.3 M
        ("mobilevit_s", 5_578_632),  # paper 5.6 M
        ("mobilenetv2_100", 3_504_872),  # MobileNetV2 1.0 (torchvision / timm)
        ("vit_tiny", 5_717_416),  # DeiT-Tiny
    ],
)
def test_parameter_counts(name, expected):
    assert n_params(create_model(name)) == expected


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError) as e:
        create_model("mobilevit_xl")
    assert "mobilevit_xxs" in str(e.value) and "mobilenetv2_100" in str(e.value)
    with pytest.raises(TypeError, match="patch_sizes"):
        create_model("mobilevit_xs", patch_size=(8, 4, 2))  # misspelt field: the error lists the right one
    assert set(list_models()) >= {"mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "vit_tiny"}


@pytest.mark.parametrize("size", [(256, 256), (224, 224), (192, 320), (32, 32), (33, 47)])
def test_any_input_of_32px_or_more(size):
    m = create_model("mobilevit_xxs", num_classes=7).eval()
    with torch.no_grad():
        feats = m.forward_intermediates(torch.randn(1, 3, *size))
        logits = m(torch.randn(2, 3, *size))
    assert logits.shape == (2, 7)
    for f, info in zip(feats, m.feature_info):
        assert f.shape[1] == info["channels"]
        assert f.shape[-2] == -(-size[0] // info["stride"])  # ceil(H / stride)


@pytest.mark.parametrize("os_,expected", [(32, [2, 4, 8, 16, 32]), (16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])])
def test_output_stride_by_dilation(os_, expected):
    m = create_model("mobilevit_xs", output_stride=os_).eval()
    with torch.no_grad():
        feats = m.forward_intermediates(torch.randn(1, 3, 256, 256))
    assert [256 // f.shape[-1] for f in feats] == expected
    assert [i["stride"] for i in m.feature_info] == expected
    # dilation does not change the number of parameters
    assert n_params(m) == 2_317_848
    dilated = [mod.dilation for mod in m.layer5[0].modules() if isinstance(mod, nn.Conv2d) and mod.groups > 1]
    assert dilated == [(1, 1)] if os_ == 32 else dilated == [(os_ == 16 and 1 or 2,) * 2]


def test_bad_inputs_get_clear_errors():
    m = create_model("mobilevit_xxs").eval()
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        m(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="too small"):
        m(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.randn(3, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="output_stride"):
        create_model("mobilevit_xxs", output_stride=4)


def test_official_initialisation():
    torch.manual_seed(0)
    m = create_model("mobilevit_s")
    lin = m.layer3[1].transformer[0].mlp.fc1
    # trunc_normal_(std=0.02) cuts at +-2 in absolute units (as cvnets and timm call it), so with
    # std 0.02 it is a plain normal in practice
    assert abs(lin.weight.std().item() - 0.02) < 0.001 and lin.weight.abs().max() < 0.2
    conv = m.layer2[1].reduce_1x1.conv  # fan-out Kaiming: std = sqrt(2 / (C_out * k * k))
    expected = (2 / conv.weight.shape[0]) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.05
    assert all(torch.all(b.bias == 0) for b in m.modules() if isinstance(b, nn.Linear))


def test_architecture_table_matches_paper_configuration():
    rows = {r["stage"]: r for r in architecture_table(create_model("mobilevit_s"), 256)}
    assert [rows[f"layer{i}"]["output"] for i in range(1, 6)] == ["128 x 128", "64 x 64", "32 x 32", "16 x 16", "8 x 8"]
    assert [rows[f"layer{i}"]["channels"] for i in range(1, 6)] == [32, 64, 96, 128, 160]
    assert [rows[f"layer{i}"]["d"] for i in (3, 4, 5)] == [144, 192, 240]
    assert [rows[f"layer{i}"]["L"] for i in (3, 4, 5)] == [2, 4, 3]
    assert rows["conv_1x1_exp"]["channels"] == 640
    assert sum(r["params"] for r in rows.values()) + 640 * 1000 + 1000 == 5_578_632


def test_make_divisible_and_mv2():
    assert [make_divisible(v, 8) for v in (16 * 4, 24 * 2, 32 * 0.75, 3.2, 100)] == [64, 48, 24, 8, 104]
    assert make_divisible(17, 8) == 16 and make_divisible(12, 8) == 16  # nearest, never < 90 %
    block = InvertedResidual(32, 32, 1, 4)
    assert block.use_residual and block.hidden_channels == 128
    assert not InvertedResidual(32, 48, 1, 4).use_residual
    assert not InvertedResidual(32, 32, 2, 4).use_residual
    x = torch.randn(2, 32, 16, 16)
    assert block(x).shape == x.shape and InvertedResidual(32, 48, 2, 4)(x).shape == (2, 48, 8, 8)
    with pytest.raises(ValueError, match="groups"):
        ConvBNAct(6, 8, 3, groups=4)


def test_block_preserves_shape_and_fusion_ablation():
    blk = MobileViTBlock(48, 64, 2, fusion=True).eval()
    no_fuse = MobileViTBlock(48, 64, 2, fusion=False).eval()
    x = torch.randn(2, 48, 10, 14)
    assert blk(x).shape == x.shape and no_fuse(x).shape == x.shape
    fusion_params = 2 * 48 * 48 * 9 + 2 * 48  # 3x3 conv on 2C -> C, plus BN
    assert n_params(blk) - n_params(no_fuse) == fusion_params
    with pytest.raises(ValueError, match="expects"):
        blk(torch.randn(1, 32, 8, 8))
    # the (8, 4, 2) patch setting of Table 6 builds and runs
    m = create_model("mobilevit_xs", patch_sizes=(8, 4, 2)).eval()
    assert n_params(m) == 2_317_848
    with torch.no_grad():
        assert m(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


def test_fused_and_explicit_attention_agree():
    torch.manual_seed(0)
    a = create_model("mobilevit_xxs", fused_attention=True).eval()
    b = create_model("mobilevit_xxs", fused_attention=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() < 1e-5


def test_seed_fixes_the_result():
    def run():
        torch.manual_seed(123)
        m = create_model("mobilevit_xxs", num_classes=3)
        m.train()
        return m(torch.randn(2, 3, 64, 64))
    assert torch.equal(run(), run())


@pytest.mark.parametrize("name", list_models())
def test_every_model_follows_the_feature_contract(name):
    """forward_intermediates gives one [B, C, H/s, W/s] map per feature_info entry, in order of
    depth; forward == forward_head(forward_features); a CNN's features are its last stage."""
    torch.manual_seed(0)
    m = create_model(name, num_classes=5).eval()
    info = m.feature_info
    assert info and all(set(i) == {"name", "channels", "stride"} for i in info)
    modules = dict(m.named_modules())
    assert all(i["name"] in modules for i in info)  # every stage names a real module
    strides = [i["stride"] for i in info]
    assert strides == sorted(strides)
    for h, w in [(64, 64), (48, 80)]:  # 48 x 80: not a multiple of 32, sides round up
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            maps = m.forward_intermediates(x)
            feats = m.forward_features(x)
            logits = m(x)
            via_head = m.forward_head(feats)
        assert isinstance(feats, torch.Tensor) and logits.shape == (2, 5)
        assert [tuple(f.shape) for f in maps] == [
            (2, i["channels"], -(-h // i["stride"]), -(-w // i["stride"])) for i in info]
        assert torch.allclose(via_head, logits, rtol=0, atol=1e-6)
        if feats.dim() == 4:  # a CNN: the last map before pooling is the last stage's output
            assert torch.equal(feats, maps[-1])

