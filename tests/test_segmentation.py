"""DeepLabv3 (mobilevit_edu.segmentation): parameter counts, equivalence with Hugging Face's
MobileViTForSemanticSegmentation, the loss, the mIoU metric, the VOC reader, the shapes adapter,
the training loop (the library's one loop, with out_dir and resume), the package's layering and
the figures (mobilevit_edu.plots.segmentation)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from conftest import calibrate_random_batchnorm  # noqa: E402
from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.book import paper  # noqa: E402
from mobilevit_edu.models.checkpoints import CheckpointError, from_ours  # noqa: E402
from mobilevit_edu.data import ShapesDataset  # noqa: E402
from mobilevit_edu.plots.segmentation import (  # noqa: E402
    colourise_mask, plot_aspp_grids, plot_segmentation_curves, plot_segmentation_predictions,
)
from mobilevit_edu.segmentation import (  # noqa: E402
    ASPP, ConfusionMatrix, DeepLabV3, ShapesSegmentation, VOCSegmentation, aspp_sampling_points,
    aspp_valid_taps, build_segmentation_optimizer, create_deeplabv3, deeplabv3_recipe,
    evaluate_segmentation, hf_segmentation_config, hf_segmentation_key_map, load_backbone,
    load_hf_segmentation_state_dict, mean_iou, save_voc_mask, segmentation_loss,
    to_hf_segmentation_state_dict, train_segmenter, voc_palette,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- the network ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["xxs", "xs", "s"])
def test_parameter_counts_match_the_official_networks(size):
    model = create_deeplabv3(size)
    assert n_params(model) == paper.DEEPLABV3_PARAMS[size]
    # the head by hand: 1x1, three 3x3, pooling 1x1 (each conv + BN), projection, classifier
    c5 = model.backbone.config.channels[-1]
    bn = 2 * 256
    aspp = (c5 * 256 + bn) * 2 + 3 * (c5 * 256 * 9 + bn) + (5 * 256 * 256 + bn)
    assert n_params(model.aspp) == aspp
    assert n_params(model.classifier) == 256 * 21 + 21
    assert n_params(model.backbone) == paper.DEEPLABV3_PARAMS[size] - aspp - 256 * 21 - 21


def test_backbone_is_dilated_to_output_stride_16():
    model = create_deeplabv3("xxs")
    assert [f["stride"] for f in model.backbone.feature_info] == [2, 4, 8, 16, 16]
    assert model.backbone.conv_1x1_exp is None and model.backbone.classifier is None
    assert model.aspp.rates == (6, 12, 18)
    dil = [m.dilation for m in model.aspp.modules() if isinstance(m, nn.Conv2d)]
    assert dil == [(1, 1), (6, 6), (12, 12), (18, 18), (1, 1), (1, 1)]


@pytest.mark.parametrize("hw, out", [((128, 128), (8, 8)), ((200, 264), (13, 17)),
                                     ((64, 96), (4, 6))])
def test_logits_are_at_one_sixteenth_and_predict_at_full_size(hw, out):
    model = create_deeplabv3("xxs", num_classes=6).eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        assert model(x).shape == (2, 6, *out)
    pred = model.predict(x)
    assert pred.shape == (2, *hw) and pred.dtype == torch.int64 and int(pred.max()) < 6


def test_output_stride_8_doubles_the_logit_resolution():
    model = create_deeplabv3("xxs", num_classes=3, output_stride=8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 128)).shape == (1, 3, 16, 16)


def test_bad_backbones_and_inputs_are_refused():
    with pytest.raises(ValueError, match="expand_output=False"):
        DeepLabV3(create_model("mobilevit_xxs", num_classes=0))
    with pytest.raises(ValueError, match="unknown MobileViT size 'xxl'"):
        create_deeplabv3("xxl")
    with pytest.raises(ValueError, match="atrous rates"):
        ASPP(8, 16, rates=(0, 6))
    with pytest.raises(ValueError, match="add a batch dimension"):
        create_deeplabv3("xxs")(torch.rand(3, 64, 64))


# --- Hugging Face equivalence -----------------------------------------------------------------

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                              reason="transformers is not installed")


def hf_segmenter(size: str, num_classes: int = 21, seed: int = 0) -> nn.Module:
    """A randomly initialised HF DeepLabv3 whose eval output depends on its input: BatchNorm
    statistics calibrated on a batch (momentum None: exact averages), affine parameters and the
    classifier randomised (with default statistics a fresh network's output is nearly constant)."""
    from transformers import MobileViTForSemanticSegmentation

    torch.manual_seed(seed)
    model = MobileViTForSemanticSegmentation(hf_segmentation_config(size, num_classes))
    calibrate_random_batchnorm(model, torch.rand(4, 3, 128, 128))
    with torch.no_grad():
        model.segmentation_head.classifier.convolution.weight.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["xxs", "xs", "s"])
def hf_pair(request):
    hf = hf_segmenter(request.param)
    ours = load_hf_segmentation_state_dict(create_deeplabv3(request.param).eval(), hf.state_dict())
    return request.param, hf, ours


@needs_hf
@pytest.mark.parametrize("hw", [(256, 256), (200, 264)])
def test_logits_match_hugging_face(hf_pair, hw):
    size, hf, ours = hf_pair
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = hf(pixel_values=x).logits, ours(x)
        mirrored = hf(pixel_values=x.flip(-1)).logits
    assert expected.shape == got.shape == (2, 21, math.ceil(hw[0] / 16), math.ceil(hw[1] / 16))
    assert expected.abs().max() > 1.0 and (mirrored - expected).abs().max() > 0.1
    assert (expected - got).abs().max().item() < 1e-4
    # the same weights with the rates of the newer OS-8 recipe (12, 24, 36) are far off
    broken = load_hf_segmentation_state_dict(
        create_deeplabv3(size, atrous_rates=(12, 24, 36)).eval(), hf.state_dict())
    with torch.no_grad():
        assert (broken(x) - expected).abs().max().item() > 0.05


@needs_hf
def test_export_to_hugging_face_and_key_count():
    from transformers import MobileViTForSemanticSegmentation

    ours = create_deeplabv3("xxs", num_classes=5).eval()
    sd = to_hf_segmentation_state_dict(ours)
    fresh = MobileViTForSemanticSegmentation(hf_segmentation_config("xxs", 5)).eval()
    assert set(sd) == set(fresh.state_dict())
    fresh.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        assert (fresh(pixel_values=x).logits - ours(x)).abs().max().item() < 1e-4
    key_map = hf_segmentation_key_map(ours)
    assert key_map["aspp.branches.4.conv_1x1.bn.running_var"] == [
        "segmentation_head.aspp.convs.4.conv_1x1.normalization.running_var"]
    assert key_map["classifier.bias"] == ["segmentation_head.classifier.convolution.bias"]


def test_checkpoint_problems_are_listed():
    sd = to_hf_segmentation_state_dict(create_deeplabv3("xxs"))
    expected = (r"segmentation_head\.classifier\.convolution\.weight: "
                r"checkpoint \(21, 256, 1, 1\) vs model \(6, 256, 1, 1\)")
    with pytest.raises(CheckpointError, match=expected):
        load_hf_segmentation_state_dict(create_deeplabv3("xxs", num_classes=6), sd)
    broken = dict(sd)
    del broken["segmentation_head.aspp.project.convolution.weight"]
    broken["segmentation_head.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_hf_segmentation_state_dict(create_deeplabv3("xxs"), broken)
    msg = str(err.value)
    assert "missing keys (1): segmentation_head.aspp.project.convolution.weight" in msg
    assert "unexpected keys (1): segmentation_head.extra.weight" in msg
    with pytest.raises(CheckpointError, match="backbone: .*shape mismatches"):
        load_hf_segmentation_state_dict(create_deeplabv3("xs"), sd)
    # BatchNorm's num_batches_tracked buffers are optional (as in PyTorch, timm, Hugging Face)
    slim = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(slim) < len(sd)
    load_hf_segmentation_state_dict(create_deeplabv3("xxs"), slim)


@pytest.mark.parametrize("layout", ["hf", "timm"])
def test_load_backbone_from_a_classification_checkpoint(layout):
    classifier = create_model("mobilevit_xxs", num_classes=10)
    seg = load_backbone(create_deeplabv3("xxs"), from_ours(classifier, layout))
    assert torch.equal(seg.backbone.layer5[1].fusion.conv.weight,
                       classifier.layer5[1].fusion.conv.weight)
    stray = from_ours(classifier, layout)
    stray["something.else"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="something.else"):
        load_backbone(create_deeplabv3("xxs"), stray)


# --- loss -------------------------------------------------------------------------------------


def test_loss_ignores_255_and_upsamples_the_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[0, :3] = 255
    loss = segmentation_loss(logits, target)
    keep = target != 255
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])  # [N, 4] vs [N]
    assert torch.allclose(loss, manual, atol=1e-6)
    loss.backward()
    assert logits.grad[0, :, :3].abs().max() == 0 and logits.grad[0, :, 3:].abs().max() > 0
    # logits at 1/4 of the mask size are upsampled bilinearly first
    small = torch.randn(2, 4, 4, 4, generator=g)
    up = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    big_target = torch.randint(0, 4, (2, 16, 16), generator=g)
    assert torch.allclose(segmentation_loss(small, big_target),
                          F.cross_entropy(up, big_target), atol=1e-6)


def test_loss_edge_cases_and_errors():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    zero = segmentation_loss(logits, torch.full((1, 4, 4), 255))
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match=r"values \[7\] outside \[0, 3\)"):
        segmentation_loss(logits, torch.full((1, 4, 4), 7))
    with pytest.raises(TypeError, match="integer class indices"):
        segmentation_loss(logits, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"expected logits \[B, K, h, w\] and target \[B, H, W\]"):
        segmentation_loss(logits, torch.zeros(4, 4, dtype=torch.long))


# --- mIoU -------------------------------------------------------------------------------------


def test_miou_on_a_hand_computed_example():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 2, 2]])
    # class 0: TP 3, GT 4, predicted 3 -> 3 / 4; class 1: TP 2, GT 3, predicted 3 -> 2 / 4;
    # class 2: TP 0, GT 0, predicted 1 -> 0 / 1 (counts); class 3: absent -> excluded
    cm = ConfusionMatrix(4).update(pred, target)
    iou = cm.iou()
    assert iou[:3].tolist() == [0.75, 0.5, 0.0] and math.isnan(iou[3])
    assert cm.mean_iou() == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    assert int(cm.matrix.sum()) == 7  # the 255 pixel is left out, whatever was predicted there
    assert mean_iou(pred, target, 4) == pytest.approx(5 / 12)


def test_miou_matches_a_brute_force_loop_over_classes():
    g = torch.Generator().manual_seed(3)
    k = 6
    cm = ConfusionMatrix(k)
    preds, targets = [], []
    for _ in range(3):  # accumulated over batches
        t = torch.randint(0, k - 1, (2, 17, 23), generator=g)  # class 5 never in the ground truth
        t[torch.rand(t.shape, generator=g) < 0.1] = 255
        p = torch.randint(0, k - 2, (2, 17, 23), generator=g)  # class 4 never predicted
        cm.update(p, t)
        preds.append(p)
        targets.append(t)
    p, t = torch.cat(preds), torch.cat(targets)
    valid = t != 255
    ious = []
    for c in range(k):
        inter = ((p == c) & (t == c) & valid).sum().item()
        union = (((p == c) | (t == c)) & valid).sum().item()
        ious.append(inter / union if union else float("nan"))
    assert np.allclose(cm.iou().numpy(), ious, equal_nan=True)
    assert math.isnan(ious[5]) and ious[4] == 0.0  # absent from both vs. only missed
    assert cm.mean_iou() == pytest.approx(np.nanmean(ious))


def test_confusion_matrix_takes_logits_and_checks_inputs():
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 2] = 1.0  # class 2 everywhere, upsampled to the 4 x 4 mask
    cm = ConfusionMatrix(3).update(logits, torch.full((1, 4, 4), 2))
    assert cm.matrix[2, 2] == 16 and cm.mean_iou() == 1.0
    with pytest.raises(ValueError, match="same shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 2, dtype=torch.long),
                                  torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"predictions must be in \[0, 3\)"):
        ConfusionMatrix(3).update(torch.full((2, 2), 5), torch.zeros(2, 2, dtype=torch.long))
    assert math.isnan(ConfusionMatrix(3).mean_iou())


# --- PASCAL VOC -------------------------------------------------------------------------------


def write_voc(root, masks: dict[str, np.ndarray], splits: dict[str, list[str]]):
    """A tiny VOC2012 tree: flat-colour JPEGs and palette PNG masks written with PIL directly."""
    from PIL import Image

    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette().reshape(-1).tolist()
    for image_id, mask in masks.items():
        h, w = mask.shape
        Image.new("RGB", (w, h), (200, 40, 10)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        png = Image.fromarray(mask.astype(np.uint8), mode="P")
        png.putpalette(palette)
        png.save(voc / "SegmentationClass" / f"{image_id}.png")
    for split, ids in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


def test_voc_reader_on_a_tiny_tree(tmp_path):
    a = np.zeros((30, 40), np.uint8)
    a[5:20, 10:30] = 15  # person
    a[4, 10:30] = 255  # boundary
    b = np.full((24, 32), 7, np.uint8)
    write_voc(tmp_path, {"2007_000032": a, "2007_000039": b},
              {"train": ["2007_000032", "2007_000039"], "val": ["2007_000039"]})
    ds = VOCSegmentation(tmp_path, "train")  # found under VOCdevkit/VOC2012
    assert len(ds) == 2 and len(VOCSegmentation(tmp_path / "VOCdevkit", "val")) == 1
    image, mask = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert torch.allclose(image.mean((1, 2)), torch.tensor([200, 40, 10]) / 255, atol=0.03)
    assert mask.dtype == torch.int64 and torch.equal(mask, torch.from_numpy(a.astype(np.int64)))
    with Image_open(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png") as im:
        assert im.mode == "P"
    image, mask = ds[(15, 20, 0)]  # resized: image bilinear, mask nearest (no new labels)
    assert image.shape == (3, 15, 20) and mask.shape == (15, 20)
    assert set(mask.unique().tolist()) <= {0, 15, 255}
    fixed = VOCSegmentation(tmp_path, "train", image_size=16)
    assert all(fixed[i][1].shape == (16, 16) for i in range(2))


def Image_open(path):
    from PIL import Image

    return Image.open(path)


def test_save_voc_mask_round_trips(tmp_path):
    mask = torch.tensor([[0, 1, 20], [255, 3, 0]])
    path = save_voc_mask(mask, tmp_path / "m.png")
    with Image_open(path) as im:
        assert im.mode == "P" and np.array(im).tolist() == mask.tolist()
        assert im.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]  # person


def test_voc_palette_is_the_standard_colour_map():
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0] and pal[15].tolist() == [192, 128, 128]
    assert pal[255].tolist() == [224, 224, 192]


def test_voc_reader_errors(tmp_path):
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="no PASCAL VOC 2012 tree"):
        VOCSegmentation(tmp_path)
    voc = write_voc(tmp_path, {"x": np.zeros((8, 8), np.uint8)}, {"train": ["x", "y"]})
    with pytest.raises(FileNotFoundError,
                       match=r"no split file .*val\.txt; splits found: \['train'\]"):
        VOCSegmentation(tmp_path, "val")
    with pytest.raises(FileNotFoundError,
                       match=r"2 file\(s\) listed in train\.txt are missing: .*y\.jpg"):
        VOCSegmentation(tmp_path, "train")
    (voc / "ImageSets/Segmentation/train.txt").write_text("x\n")
    Image.new("RGB", (8, 8), (128, 0, 0)).save(voc / "SegmentationClass" / "x.png")  # colour mask
    with pytest.raises(ValueError, match="palette"):
        VOCSegmentation(tmp_path)[0]
    save_voc_mask(np.full((8, 8), 30), voc / "SegmentationClass" / "x.png")
    with pytest.raises(ValueError, match=r"values \[30\] outside \[0, 21\)"):
        VOCSegmentation(tmp_path)[0]


# --- shapes -----------------------------------------------------------------------------------


def test_shapes_segmentation_uses_the_generator_masks():
    ds = ShapesSegmentation(12, image_size=64, seed=3)
    assert ds.num_classes == 6 and ds.classes[0] == "background" and ds.classes[1] == "circle"
    image, mask = ds[5]
    ref = ShapesDataset(12, task="shape", image_size=64, seed=3).render(5)
    assert torch.equal(image, ref.image) and torch.equal(mask, ref.mask)
    assert mask.dtype == torch.int64 and int(mask.max()) <= 5
    # the large object's class is the shape label + 1, and it covers the most foreground pixels
    fg = mask[mask > 0]
    assert int(fg.mode().values) == ref.label + 1
    again = ds[5]  # cached
    assert torch.equal(again[1], mask) and again[1].dtype == torch.int64
    assert ds[(32, 48, 5)][1].shape == (32, 48)
    with pytest.raises(IndexError):
        ds[12]


# --- training ---------------------------------------------------------------------------------


def test_optimizer_groups_cover_every_parameter_once_with_head_lr_x10():
    model = create_deeplabv3("xxs", num_classes=6)
    opt = build_segmentation_optimizer(model, deeplabv3_recipe(), 10.0)
    groups = opt.param_groups
    assert [g["lr_multiplier"] for g in groups] == [1.0, 10.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    head = n_params(model.aspp) + n_params(model.classifier)
    assert sum(p.numel() for p in groups[1]["params"]) == head
    assert all(g["weight_decay"] == 0.01 for g in groups)


def test_recipe_is_the_official_one():
    r = deeplabv3_recipe()
    schedule = (r.epochs, r.lr, r.warmup_lr, r.min_lr, r.warmup_iters)
    assert schedule == (50, 0.0009, 0.00009, 1e-6, 500)
    assert r.label_smoothing == 0.0 and r.weight_decay == 0.01 and r.ema_momentum == 0.0005


def test_train_segmenter_runs_and_reports_miou():
    torch.manual_seed(0)
    tr = ShapesSegmentation(17, image_size=64, seed=0)  # 17 = 2 x 8 + 1: a batch of 1 is skipped
    va = ShapesSegmentation(6, image_size=64, seed=1)
    model = create_deeplabv3("xxs", num_classes=tr.num_classes)
    cfg = deeplabv3_recipe(num_classes=6, epochs=1, batch_size=8, warmup_iters=1, verbose=False,
                           progress=False, ema_momentum=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = train_segmenter(model, tr, va, cfg)
    row = hist[-1]
    assert row["iteration"] == 2  # batches of 8 + 8; the last batch, of 1 image, is skipped
    assert math.isfinite(row["train_loss"])
    assert 0 <= row["val_miou"] <= 1 and 0 <= row["ema_val_miou"] <= 1
    assert not torch.equal(before["classifier.weight"], model.state_dict()["classifier.weight"])
    m = evaluate_segmentation(model, va, batch_size=4)
    assert m["miou"] == pytest.approx(row["val_miou"]) and len(m["iou"]) == 6


def tiny_run(out_dir, epochs, **changes):
    """A DeepLabv3-XXS trained on 4 shapes at 32 px, 2 images a batch (2 updates an epoch)."""
    torch.manual_seed(0)
    model = create_deeplabv3("xxs", num_classes=6)
    cfg = deeplabv3_recipe(num_classes=6, epochs=epochs, batch_size=2, val_batch_size=4,
                           warmup_iters=1, verbose=False, progress=False, ema_momentum=0.5,
                           out_dir=str(out_dir), device="cpu", **changes)
    return model, cfg, ShapesSegmentation(4, image_size=32, seed=0), ShapesSegmentation(
        2, image_size=32, seed=1)


def test_train_segmenter_writes_metrics_and_last_pt_and_resumes(tmp_path):
    model, cfg, tr, va = tiny_run(tmp_path / "run", 2)
    hist = train_segmenter(model, tr, va, cfg)
    assert (tmp_path / "run" / "last.pt").is_file()
    assert (tmp_path / "run" / "metrics.csv").is_file()
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(rows) == 2 and rows[-1]["iteration"] == hist[-1]["iteration"] == 4
    assert {"train_loss", "val_loss", "val_miou", "val_pixel_acc", "ema_val_miou",
            "lr", "seconds", "iteration"} <= set(rows[-1])
    # one epoch, then resumed from its last.pt for the second: the same weights as in one go
    half, cfg1, _, _ = tiny_run(tmp_path / "half", 1)
    train_segmenter(half, tr, va, cfg1)
    resumed, cfg2, _, _ = tiny_run(tmp_path / "half", 2)
    hist2 = train_segmenter(resumed, tr, va, cfg2, resume=tmp_path / "half" / "last.pt")
    assert [r["epoch"] for r in hist2] == [1, 2]
    assert hist2[-1]["train_loss"] == pytest.approx(hist[-1]["train_loss"])
    for key, value in model.state_dict().items():
        assert torch.allclose(value.float(), resumed.state_dict()[key].float()), key
    # only what out_dir asks for: log_format="json" writes no CSV
    model, cfg, tr, va = tiny_run(tmp_path / "json", 1, log_format="json")
    train_segmenter(model, tr, None, cfg)
    assert (tmp_path / "json" / "metrics.json").is_file()
    assert not (tmp_path / "json" / "metrics.csv").exists()


# --- layering ---------------------------------------------------------------------------------


def test_the_network_imports_neither_the_training_loop_nor_matplotlib():
    code = ("import sys, mobilevit_edu.segmentation.deeplabv3, mobilevit_edu.segmentation; "
            "bad = [m for m in sys.modules if m == 'mobilevit_edu.train' or "
            "m.startswith(('mobilevit_edu.train.', 'matplotlib'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # the training names are still there, imported when first used
    import mobilevit_edu.segmentation as seg
    from mobilevit_edu.segmentation import train as seg_train

    assert seg.train_segmenter is seg_train.train_segmenter
    with pytest.raises(AttributeError, match="no attribute 'plot_aspp_grids'"):
        seg.plot_aspp_grids  # noqa: B018 (the figures moved to mobilevit_edu.plots.segmentation)


# --- the ASPP geometry and the figures --------------------------------------------------------


def test_aspp_sampling_points_and_valid_taps():
    pts = aspp_sampling_points((16, 16), 18, 32)
    assert sum(p[2] for p in pts) == 1 and (16, 16, True) in pts
    assert all(p[2] for p in aspp_sampling_points((16, 16), 12, 32))
    assert aspp_valid_taps(8, 6) == pytest.approx(0.25)
    assert aspp_valid_taps(8, 18) == pytest.approx(1 / 9)
    for size, rate in [(32, 6), (16, 12), (11, 4)]:
        brute = np.mean([sum(p[2] for p in aspp_sampling_points((i, j), rate, size)) / 9
                         for i in range(size) for j in range(size)])
        assert aspp_valid_taps(size, rate) == pytest.approx(brute)


def test_figures_are_saved_only_when_named(figures_in_tmp):
    fig = plot_aspp_grids()
    assert len(fig.axes) == 3 and not list(figures_in_tmp.glob("*.png"))
    mask = torch.tensor([[0, 15], [255, 1]])
    assert colourise_mask(mask).tolist() == voc_palette()[mask.numpy()].tolist()
def test_figures_are_saved(figures_in_tmp):
    fig = plot_aspp_grids(name="aspp_test")
    assert (figures_in_tmp / "aspp_test.png").is_file() and len(fig.axes) == 3
    assert "1/9" in fig.axes[2].get_title()  # rate 18 at the centre of a 32 x 32 map
    ds = ShapesSegmentation(3, image_size=32)
    images = torch.stack([ds[i][0] for i in range(3)])
    masks = torch.stack([ds[i][1] for i in range(3)])
    fig = plot_segmentation_predictions(images, masks, {"model": masks}, ds.classes,
                                        name="pred_test")
    assert (figures_in_tmp / "pred_test.png").is_file() and len(fig.axes) == 9
    with pytest.raises(ValueError, match="expected images"):
        plot_segmentation_predictions(images[0], masks, {}, ds.classes)
    hist = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_miou": 0.2},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "val_miou": 0.4}]
    fig = plot_segmentation_curves(hist, baselines={"untrained": 0.05, "other": 0.1},
                                   name="curves_test")
    assert (figures_in_tmp / "curves_test.png").is_file()
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "trained", "untrained", "other"]
