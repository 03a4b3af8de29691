"""Checkpoints: equivalence with Hugging Face's MobileViT, and the timm / cvnets layouts.

The Hugging Face model is an independent implementation; loading its weights into ours must give
the same logits (max abs diff < 1e-4) in eval mode with non-trivial BatchNorm statistics, at
256 x 256, at 224 x 224 (where layer5's 7 x 7 map takes the resize path) and at a non-square size.
"""

import re

import numpy as np
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
from transformers import MobileViTConfig as HFConfig  # noqa: E402
from transformers import MobileViTForImageClassification  # noqa: E402

from conftest import calibrate_random_batchnorm  # noqa: E402
from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.models.checkpoints import (  # noqa: E402
    LAYOUTS, CheckpointError, detect_layout, from_ours, load_checkpoint, official_preprocess,
    read_checkpoint_file, read_state_dict, save_checkpoint, to_ours,
)

HF_SIZES = {  # transformers' convert_mlcvnets_to_pytorch.py, get_mobilevit_config
    "xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                expand_ratio=2.0, hidden_dropout_prob=0.05),
    "xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def hf_model(size: str, seed: int = 0) -> nn.Module:
    """A randomly initialised HF MobileViT whose eval-mode output really depends on its input.

    With default running statistics (mean 0, var 1) a fresh network's activations shrink to almost
    nothing in eval mode, and every input gives nearly the same logits, which would make a
    comparison blind to a broken fold. So the BatchNorm statistics are calibrated on a batch of
    images (one train-mode pass with momentum=None: exact batch statistics) and the affine
    parameters randomised.
    """
    torch.manual_seed(seed)
    model = MobileViTForImageClassification(HFConfig(num_labels=1000, **HF_SIZES[size]))
    calibrate_random_batchnorm(model, torch.rand(8, 3, 128, 128))
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["xxs", "xs", "s"])
def pair(request):
    size = request.param
    hf = hf_model(size)
    ours = create_model(f"mobilevit_{size}").eval()
    ours.load_state_dict(to_ours(hf.state_dict(), ours, "hf"))
    return size, hf, ours


@pytest.mark.parametrize("hw", [(256, 256), (224, 224), (192, 320)])
def test_logits_match_hugging_face(pair, hw):
    size, hf, ours = pair
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = hf(pixel_values=x).logits, ours(x)
        mirrored = hf(pixel_values=x.flip(-1)).logits
    # the comparison is meaningful: logits are not tiny and depend on the image's layout
    assert expected.abs().max() > 1.0 and (mirrored - expected).abs().max() > 0.1
    assert (expected - got).abs().max().item() < 1e-4


def test_export_to_hugging_face(pair):
    size, _, ours = pair
    fresh = MobileViTForImageClassification(HFConfig(num_labels=1000, **HF_SIZES[size])).eval()
    fresh.load_state_dict(from_ours(ours, "hf"), strict=True)
    x = torch.rand(1, 3, 224, 288)
    with torch.no_grad():
        assert (fresh(pixel_values=x).logits - ours(x)).abs().max().item() < 1e-4


def test_layout_sizes_match_the_known_key_counts():
    s = create_model("mobilevit_s")
    assert len(from_ours(s, "hf")) == 347  # MobileViTForImageClassification, small
    assert len(from_ours(s, "timm")) == 311  # timm mobilevit_s
    assert detect_layout(from_ours(s, "timm")) == "timm"
    assert detect_layout(from_ours(s, "cvnets")) == "cvnets"
    assert detect_layout(s.state_dict()) == "ours"


def cvnets_to_hf(sd: dict) -> dict:
    """transformers' own cvnets -> HF renaming (convert_mlcvnets_to_pytorch.py), re-stated
    independently here as the oracle for our cvnets layout."""
    out = {}
    for key, value in sd.items():
        k = key.replace("conv_1.", "conv_stem.")
        k = re.sub(r"layer_(\d)\.", lambda m: f"encoder.layer.{int(m[1]) - 1}.", k)
        k = k.replace(".block.", ".").replace("exp_1x1", "expand_1x1").replace("red_1x1", "reduce_1x1")
        k = k.replace(".local_rep.conv_3x3.", ".conv_kxk.").replace(".local_rep.conv_1x1.", ".conv_1x1.")
        k = k.replace(".norm.", ".normalization.").replace(".conv.", ".convolution.")
        k = k.replace(".conv_proj.", ".conv_projection.")
        k = re.sub(r"encoder\.layer\.([01])\.(\d+)\.", r"encoder.layer.\1.layer.\2.", k)
        k = re.sub(r"encoder\.layer\.([234])\.0\.", r"encoder.layer.\1.downsampling_layer.", k)
        k = re.sub(r"encoder\.layer\.([234])\.1\.", r"encoder.layer.\1.", k)
        depth = {"2": 2, "3": 4, "4": 3}
        k = re.sub(r"encoder\.layer\.([234])\.global_rep\.(\d+)\.(weight|bias)$",
                   lambda m: f"encoder.layer.{m[1]}.layernorm.{m[3]}"
                   if int(m[2]) == depth[m[1]] else m[0], k)
        k = k.replace(".global_rep.", ".transformer.layer.")
        k = k.replace(".pre_norm_mha.0.", ".layernorm_before.").replace(".pre_norm_mha.1.out_proj.", ".attention.output.dense.")
        k = k.replace(".pre_norm_ffn.0.", ".layernorm_after.").replace(".pre_norm_ffn.1.", ".intermediate.dense.")
        k = k.replace(".pre_norm_ffn.4.", ".output.dense.")
        k = k.replace("classifier.fc.", "classifier.")
        if not k.startswith("classifier."):
            k = "mobilevit." + k
        if ".pre_norm_mha.1.qkv_proj." in k:
            d = value.shape[0] // 3
            for i, name in enumerate(("query", "key", "value")):
                out[k.replace(".pre_norm_mha.1.qkv_proj.", f".attention.attention.{name}.")] = value[i * d:(i + 1) * d]
            continue
        out[k] = value
    return out


def test_cvnets_layout_agrees_with_transformers_conversion_rules():
    ours = create_model("mobilevit_xxs").eval()
    hf = MobileViTForImageClassification(HFConfig(num_labels=1000, **HF_SIZES["xxs"])).eval()
    hf.load_state_dict(cvnets_to_hf(from_ours(ours, "cvnets")), strict=True)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert (hf(pixel_values=x).logits - ours(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize("layout", ["timm", "cvnets", "hf", "ours"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_through_files(tmp_path, layout, suffix):
    src = create_model("mobilevit_xxs", num_classes=5)
    path = save_checkpoint(from_ours(src, layout), tmp_path / f"w{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    dst = load_checkpoint(create_model("mobilevit_xxs", num_classes=5), path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_wrapped_and_ddp_prefixed_checkpoints(tmp_path):
    src = create_model("mobilevit_xxs", num_classes=3)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "c.pt")
    dst = load_checkpoint(create_model("mobilevit_xxs", num_classes=3), tmp_path / "c.pt")
    assert torch.equal(dst.classifier.weight, src.classifier.weight)


def test_missing_unexpected_and_mis_shaped_keys_are_listed():
    model = create_model("mobilevit_xxs")
    sd = from_ours(model, "timm")
    del sd["stem.conv.weight"]
    sd["stages.9.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        to_ours(sd, model)
    msg = str(e.value)
    assert "missing keys (1): stem.conv.weight" in msg and "unexpected keys (1): stages.9.extra.weight" in msg
    with pytest.raises(CheckpointError, match=r"head.fc.weight: checkpoint \(1000, 320\) vs model \(10, 320\)"):
        to_ours(from_ours(model, "timm"), create_model("mobilevit_xxs", num_classes=10))
    with pytest.raises(CheckpointError, match=r"shape mismatches \(273\)"):  # an XXS file into XS
        to_ours(from_ours(create_model("mobilevit_xxs"), "hf"), create_model("mobilevit_xs"))


def test_ignore_drops_the_classifier_on_purpose():
    pretrained = create_model("mobilevit_xxs")
    model = create_model("mobilevit_xxs", num_classes=10)
    load_checkpoint(model, from_ours(pretrained, "hf"), ignore=("classifier",))
    assert torch.equal(model.stem.conv.weight, pretrained.stem.conv.weight)
    assert model.classifier.weight.shape == (10, 320)


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": np.dtype("float32").__class__}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):  # was FileNotFoundError
        read_state_dict(tmp_path / "nope.pt")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_state_dict_without_num_batches_tracked_loads(layout, tmp_path):
    # PyTorch, timm and Hugging Face load a state dict without BatchNorm's step counters
    torch.manual_seed(0)
    source = create_model("mobilevit_xxs").eval()
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    full = from_ours(source, layout)
    sd = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert len(full) - len(sd) == sum(isinstance(m, nn.BatchNorm2d) for m in source.modules())
    for given in (layout, None):  # named, and detected from the keys
        model = load_checkpoint(create_model("mobilevit_xxs"), sd, given)
        for key, value in source.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(model.state_dict()[key], value), key
    path = save_checkpoint(sd, tmp_path / f"{layout}.safetensors")  # and through a file
    model = load_checkpoint(create_model("mobilevit_xxs").eval(), path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("not a checkpoint\n")
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("how", ["half", "random", "empty", "text", "missing"])
def test_unreadable_files_raise_checkpoint_error_naming_the_file(tmp_path, suffix, how):
    model = create_model("mobilevit_xxs")
    path = save_checkpoint(model.state_dict(), tmp_path / f"model{suffix}")
    assert set(read_checkpoint_file(path)) == set(model.state_dict())  # the intact file reads
    _damage(path, how)
    for read in (read_checkpoint_file, read_state_dict, lambda p: load_checkpoint(model, p)):
        with pytest.raises(CheckpointError) as err:
            read(path)
        message = str(err.value)
        assert str(path) in message and "Fix:" in message
        assert "\n" not in message  # one line, not a traceback's worth


def test_read_checkpoint_file_keeps_a_training_checkpoint_whole(tmp_path):
    model = create_model("mobilevit_xxs")
    ckpt = {"model": model.state_dict(), "epoch": 3, "history": [{"loss": 1.5}]}
    loaded = read_checkpoint_file(save_checkpoint(ckpt, tmp_path / "last.pt"))
    assert loaded["epoch"] == 3 and loaded["history"] == [{"loss": 1.5}]
    assert set(read_state_dict(tmp_path / "last.pt")) == set(model.state_dict())  # unwrapped
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        read_checkpoint_file(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="a folder, not a file"):
        read_checkpoint_file(tmp_path)


def test_official_preprocess_gives_bgr_in_unit_range():
    from PIL import Image

    red = Image.new("RGB", (400, 300), (255, 0, 0))
    x = official_preprocess(red)
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert torch.allclose(x[2], torch.ones(256, 256)) and x[:2].abs().max() == 0  # red -> last channel
    with pytest.raises(ValueError, match="uint8"):
        official_preprocess(np.zeros((8, 8), dtype=np.float32))
