"""The paper's segmentation number, reproducible: cvnets' DeepLabv3 checkpoint layout, load_segmenter
and evaluate_voc, the official PASCAL VOC val protocol (mobilevit_edu.segmentation.cvnets and
.evaluate), on tiny VOC trees written in the real formats (no network, no real data).

The mIoU is checked against an independent numpy computation at the ORIGINAL mask size, with a
stub network whose prediction at every original pixel is known in closed form."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from torch import nn

from conftest import calibrate_random_batchnorm
from mobilevit_edu import create_model
from mobilevit_edu.models.checkpoints import CheckpointError, from_ours
from mobilevit_edu.segmentation import (
    ShapesSegmentation, VOCSegmentation, create_deeplabv3, cvnets_segmentation_key_map,
    detect_segmentation_layout, evaluate_voc, load_segmentation_state_dict, load_segmenter,
    save_voc_mask, segmentation_state_dict, to_cvnets_segmentation_state_dict,
    to_hf_segmentation_state_dict, voc_eval_input,
)
from mobilevit_edu.segmentation.evaluate import labels_at_mask_size

K = 21
# (H, W): non-square, different sizes, odd widths (the stub's split column is never ambiguous)
SIZES = [(37, 75), (90, 61), (53, 101)]
COLOURS = [(200, 40, 10), (30, 180, 20), (20, 30, 210)]  # RGB; the dominant channel picks classes
PAIRS = {0: (1, 2), 1: (3, 4), 2: (5, 6)}  # dominant input channel -> (left class, right class)


# --- a tiny VOC tree --------------------------------------------------------------------------


def gt_mask(h: int, w: int, pair: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Mostly ``pair[0]`` left of the middle and ``pair[1]`` right of it, with blobs of other
    classes, a 255 band over the middle columns and scattered 255 boundary pixels."""
    cols = np.arange(w)[None, :].repeat(h, 0)
    mask = np.where(cols < w / 2, pair[0], pair[1]).astype(np.uint8)
    for _ in range(4):  # rectangles of other classes (some that the stub never predicts)
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y:y + rng.integers(3, 9), x:x + rng.integers(3, 9)] = rng.choice([0, 1, 3, 6, 15])
    mid = w // 2
    mask[:, mid - 1:mid + 2] = 255  # the columns where the two upsampling modes may differ
    mask[rng.random((h, w)) < 0.05] = 255
    return mask


def write_voc_tree(root, sizes=SIZES, colours=COLOURS, seed=0, origin="cvnets"):
    """VOC2012/JPEGImages/*.jpg (flat colours), SegmentationClass/*.png (palette, save_voc_mask),
    ImageSets/Segmentation/val.txt. Returns the ids and the masks (numpy, as written)."""
    from PIL import Image

    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ids, masks = [], []
    for n, ((h, w), colour) in enumerate(zip(sizes, colours)):
        image_id = f"2007_{n:06d}"
        Image.new("RGB", (w, h), colour).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = gt_mask(h, w, expected_pair(colour, origin), rng)
        save_voc_mask(mask, voc / "SegmentationClass" / f"{image_id}.png")
        ids.append(image_id)
        masks.append(mask)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return ids, masks


def expected_pair(colour, origin: str) -> tuple[int, int]:
    channels = colour[::-1] if origin in ("cvnets", "hf") else colour  # what the network sees
    return PAIRS[int(np.argmax(channels))]


class StubSegmenter(nn.Module):
    """Logits [B, 21, h/16, w/16]: +10 for class a on the left half of the columns, for class b
    on the right half, -10 elsewhere; (a, b) from the input's dominant channel. After either
    upsampling, the label of an original pixel (row, col) of a W-wide image is a iff col < W/2,
    except in the middle column (scored as 255 in the masks)."""

    num_classes, output_stride = K, 16

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Size] = []
        self.means: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape)
        b, _, h, w = x.shape
        hs, ws = -(-h // 16), -(-w // 16)
        logits = torch.full((b, K, hs, ws), -10.0)
        for i in range(b):
            mean = x[i].mean((1, 2))  # [3, h, w] -> [3]
            self.means.append(mean)
            a, c = PAIRS[int(mean.argmax())]
            logits[i, a, :, : ws // 2] = 10.0
            logits[i, c, :, ws // 2:] = 10.0
        return logits


def numpy_scores(masks: list[np.ndarray], preds: list[np.ndarray], k: int = K) -> dict:
    """Confusion matrix, per-class IoU, mIoU (nan-mean) and pixel accuracy, 255 left out."""
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(masks, preds):
        keep = t != 255
        np.add.at(cm, (t[keep].astype(int), p[keep].astype(int)), 1)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return {"miou": float(np.nanmean(iou)), "iou": iou, "pixels": int(cm.sum()),
            "pixel_acc": float(tp.sum() / cm.sum())}


def stub_prediction(h: int, w: int, pair: tuple[int, int]) -> np.ndarray:
    cols = np.arange(w)[None, :].repeat(h, 0)
    return np.where(cols < w / 2, pair[0], pair[1])


# --- (a) mIoU at the original mask size ------------------------------------------------------


@pytest.mark.parametrize("upsample", ["cvnets", "bilinear"])
def test_evaluate_voc_scores_at_the_original_mask_size(tmp_path, upsample):
    _, masks = write_voc_tree(tmp_path)
    stub = StubSegmenter()
    got = evaluate_voc(stub, tmp_path, origin="cvnets", batch_size=2, progress=False,
                       upsample=upsample)
    preds = [stub_prediction(h, w, expected_pair(c, "cvnets")) for (h, w), c in zip(SIZES, COLOURS)]
    want = numpy_scores(masks, preds)
    assert got["images"] == 3 and got["pixels"] == want["pixels"]
    assert got["miou"] == pytest.approx(want["miou"], abs=1e-12)
    assert got["pixel_acc"] == pytest.approx(want["pixel_acc"], abs=1e-12)
    assert np.allclose(list(got["per_class_iou"].values()), want["iou"], equal_nan=True)
    assert 0.2 < got["miou"] < 0.95  # neither trivial nor perfect: blobs of missed classes
    assert list(got["per_class_iou"])[:2] == ["background", "aeroplane"]
    # the network saw 512 x 512 BGR inputs on uint8 levels, two images a batch, then one
    assert [tuple(s) for s in stub.seen] == [(2, 3, 512, 512), (1, 3, 512, 512)]
    assert int(stub.means[0].argmax()) == 2  # (200, 40, 10) RGB arrives as BGR
    # scoring a mask resized to the network's 512 x 512 (nearest) gives another number
    resized = []
    for t in masks:
        h, w = t.shape
        rows, cols = (np.arange(512) * h) // 512, (np.arange(512) * w) // 512
        resized.append(t[rows][:, cols])
    at_512 = numpy_scores(resized, [stub_prediction(512, 512, expected_pair(c, "cvnets"))
                                    for c in COLOURS])
    assert abs(at_512["miou"] - got["miou"]) > 1e-3
    assert at_512["pixels"] != got["pixels"]


def test_the_origin_sets_the_channel_order(tmp_path):
    _, masks = write_voc_tree(tmp_path, origin="ours")  # masks drawn for an RGB-reading network
    rgb = evaluate_voc(StubSegmenter(), tmp_path, origin="ours", progress=False)
    bgr = evaluate_voc(StubSegmenter(), tmp_path, origin="hf", progress=False)
    preds = [stub_prediction(h, w, expected_pair(c, "ours")) for (h, w), c in zip(SIZES, COLOURS)]
    assert rgb["miou"] == pytest.approx(numpy_scores(masks, preds)["miou"], abs=1e-12)
    assert bgr["miou"] < rgb["miou"] - 0.1  # fed BGR, the stub picks other classes
    with pytest.raises(ValueError, match="unknown weights origin 'timm'"):
        evaluate_voc(StubSegmenter(), tmp_path, origin="timm", progress=False)


def test_limit_and_native_size_evaluation(tmp_path):
    _, masks = write_voc_tree(tmp_path)
    stub = StubSegmenter()
    first = evaluate_voc(stub, tmp_path, origin="cvnets", limit=1, progress=False)
    pred = stub_prediction(*SIZES[0], expected_pair(COLOURS[0], "cvnets"))
    assert first["images"] == 1
    assert first["miou"] == pytest.approx(numpy_scores(masks[:1], [pred])["miou"], abs=1e-12)
    # image_size=None: each image at its own size, cut to a multiple of 16, one at a time
    stub = StubSegmenter()
    native = evaluate_voc(stub, tmp_path, origin="cvnets", image_size=None, progress=False)
    assert [tuple(s) for s in stub.seen] == [(1, 3, 32, 64), (1, 3, 80, 48), (1, 3, 48, 96)]
    assert native["images"] == 3 and native["pixels"] == first["pixels"] + sum(
        int((m != 255).sum()) for m in masks[1:])


def test_voc_eval_input_is_cv2_style_bgr():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 30, 50), generator=g).float() / 255
    x = voc_eval_input(image, origin="cvnets", image_size=64)
    assert x.shape == (3, 64, 64)
    assert torch.allclose(x * 255, (x * 255).round(), atol=1e-4)  # uint8 levels
    # bilinear with half-pixel centres and no anti-aliasing (cv2.resize), rounded to uint8
    ref = torch.nn.functional.interpolate(image.flip(0)[None] * 255, size=(64, 64),
                                          mode="bilinear", align_corners=False)[0]
    assert (x * 255 - ref).abs().max() <= 0.5 + 1e-4
    assert torch.equal(voc_eval_input(image, origin="ours", image_size=(30, 50)), image)
    assert torch.equal(voc_eval_input(image, origin="hf", image_size=(30, 50)), image.flip(0))


def test_labels_at_mask_size_follows_cvnets_predict_and_save():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, 4, generator=g)
    labels = labels_at_mask_size(logits, (64, 64), (30, 47))
    up = torch.nn.functional.interpolate(logits[None], size=(64, 64), mode="bilinear",
                                         align_corners=False)  # the classifier's UpSample x16
    ref = torch.nn.functional.interpolate(up, size=(30, 47), mode="nearest").argmax(1)[0]
    assert labels.shape == (30, 47) and torch.equal(labels, ref)
    direct = labels_at_mask_size(logits, (64, 64), (30, 47), "bilinear")
    assert torch.equal(direct, torch.nn.functional.interpolate(
        logits[None], size=(30, 47), mode="bilinear", align_corners=False).argmax(1)[0])
    with pytest.raises(ValueError, match="unknown upsample"):
        labels_at_mask_size(logits, (64, 64), (30, 47), "bicubic")


# --- (b) 255 is ignored -----------------------------------------------------------------------


def test_255_pixels_are_ignored(tmp_path):
    ids, masks = write_voc_tree(tmp_path)
    before = evaluate_voc(StubSegmenter(), tmp_path, origin="cvnets", progress=False)
    # hide every wrongly predicted pixel of image 0 behind 255: only its correct pixels count
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    pred0 = stub_prediction(*SIZES[0], expected_pair(COLOURS[0], "cvnets"))
    hidden = masks[0].copy()
    hidden[(hidden != pred0) & (hidden != 255)] = 255
    save_voc_mask(hidden, voc / "SegmentationClass" / f"{ids[0]}.png")
    # and add an image that is all boundary: it must change nothing but the image count
    from PIL import Image

    Image.new("RGB", (41, 29), (200, 40, 10)).save(voc / "JPEGImages" / "2007_000099.jpg")
    save_voc_mask(np.full((29, 41), 255), voc / "SegmentationClass" / "2007_000099.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids + ["2007_000099"]))
    after = evaluate_voc(StubSegmenter(), tmp_path, origin="cvnets", progress=False)
    preds = [stub_prediction(h, w, expected_pair(c, "cvnets")) for (h, w), c in zip(SIZES, COLOURS)]
    want = numpy_scores([hidden, *masks[1:]], preds)
    assert after["images"] == 4 and after["pixels"] == want["pixels"] < before["pixels"]
    assert after["miou"] == pytest.approx(want["miou"], abs=1e-12)
    assert after["pixel_acc"] > before["pixel_acc"]
    assert after["pixels"] == sum(int((m != 255).sum()) for m in [hidden, *masks[1:]])


# --- (c) cvnets' checkpoint layout ------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    model = create_deeplabv3("xxs").eval()
    calibrate_random_batchnorm(model, torch.rand(4, 3, 96, 96))
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.1)
    return model.eval()


# key names written out from cvnets v0.1: enc_dec.py (encoder, seg_head), heads/deeplabv3.py
# (aspp.aspp_layer, classifier.classifier), aspp_block.py (convs, project, aspp_pool.conv_1x1),
# layers/conv_layer.py (block.conv, block.norm), models/classification/mobilevit.py (conv_1, layer_N)
OFFICIAL_KEYS = {
    "encoder.conv_1.block.conv.weight": (16, 3, 3, 3),
    "encoder.layer_1.0.block.exp_1x1.block.conv.weight": (32, 16, 1, 1),
    "encoder.layer_5.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight": (288, 96),
    "encoder.layer_5.1.fusion.block.conv.weight": (80, 160, 3, 3),
    "seg_head.aspp.aspp_layer.convs.0.block.conv.weight": (256, 80, 1, 1),
    "seg_head.aspp.aspp_layer.convs.0.block.norm.running_var": (256,),
    "seg_head.aspp.aspp_layer.convs.3.block.conv.weight": (256, 80, 3, 3),
    "seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.conv.weight": (256, 80, 1, 1),
    "seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.norm.bias": (256,),
    "seg_head.aspp.aspp_layer.project.block.conv.weight": (256, 1280, 1, 1),
    "seg_head.aspp.aspp_layer.project.block.norm.weight": (256,),
    "seg_head.classifier.classifier.block.conv.weight": (21, 256, 1, 1),
    "seg_head.classifier.classifier.block.conv.bias": (21,),
}


def test_cvnets_layout_round_trip_gives_equal_logits(segmenter, tmp_path):
    sd = to_cvnets_segmentation_state_dict(segmenter)
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert all(k.startswith(("encoder.", "seg_head.")) for k in sd)
    assert not any(k.startswith(("encoder.conv_1x1_exp", "encoder.classifier")) for k in sd)
    assert len(sd) == len(segmenter.state_dict())
    assert detect_segmentation_layout(sd) == "cvnets"
    fresh = create_deeplabv3("xxs").eval()
    assert load_segmentation_state_dict(fresh, sd) == "cvnets"
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = segmenter(x), fresh(x)
    assert want.abs().max() > 1.0 and (want - want.mean()).abs().max() > 0.1
    assert torch.equal(want, got)
    mapping = cvnets_segmentation_key_map(segmenter)
    assert mapping["aspp.branches.2.conv.weight"] == ["seg_head.aspp.aspp_layer.convs.2.block.conv.weight"]
    # through a file, as a released deeplabv3_mobilevit_xxs.pt would come
    torch.save(sd, tmp_path / "deeplabv3_mobilevit_xxs.pt")
    loaded, origin = load_segmenter(tmp_path / "deeplabv3_mobilevit_xxs.pt")
    assert origin == "cvnets" and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), want)


@pytest.mark.parametrize("layout", ["ours", "hf", "cvnets"])
def test_every_layout_loads_through_a_file(segmenter, tmp_path, layout):
    path = tmp_path / f"seg_{layout}.pt"
    torch.save(segmentation_state_dict(segmenter, layout), path)
    model, origin = load_segmenter(path, name="mobilevit_xxs")
    assert origin == layout
    if layout == "hf":  # a Hugging Face model folder
        (tmp_path / "snapshot").mkdir()
        path.rename(tmp_path / "snapshot" / "pytorch_model.bin")
        assert load_segmenter(tmp_path / "snapshot")[1] == "hf"
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (model(x) - segmenter(x)).abs().max().item() < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="transformers is not installed")
def test_cvnets_layout_agrees_with_transformers_conversion(segmenter):
    """transformers' convert_mlcvnets_to_pytorch.py turns the released cvnets files into Hugging
    Face's: strip "encoder.", then its renaming; re-stated here, it must load our export."""
    from test_checkpoints import cvnets_to_hf
    from transformers import MobileViTForSemanticSegmentation

    from mobilevit_edu.segmentation import hf_segmentation_config

    sd = to_cvnets_segmentation_state_dict(segmenter)
    backbone = cvnets_to_hf({k[len("encoder."):]: v for k, v in sd.items()
                             if k.startswith("encoder.")})
    head = {}
    for key, value in sd.items():
        if key.startswith("seg_head."):
            k = key.replace(".aspp_layer.", ".").replace(".aspp_pool.", ".")
            k = k.replace("seg_head.", "segmentation_head.")
            k = k.replace("segmentation_head.classifier.classifier.", "segmentation_head.classifier.")
            k = k.replace(".block.", ".").replace(".norm.", ".normalization.")
            head[k.replace(".conv.", ".convolution.")] = value
    hf = MobileViTForSemanticSegmentation(hf_segmentation_config("xxs")).eval()
    hf.load_state_dict({**backbone, **head}, strict=True)
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (hf(pixel_values=x).logits - segmenter(x)).abs().max().item() < 1e-4


def test_cvnets_problems_are_listed(segmenter):
    sd = to_cvnets_segmentation_state_dict(segmenter)
    broken = dict(sd)
    del broken["seg_head.aspp.aspp_layer.project.block.conv.weight"]
    broken["seg_head.aux_head.aux_projection.block.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_segmentation_state_dict(create_deeplabv3("xxs"), broken)
    msg = str(err.value)
    assert "missing keys (1): seg_head.aspp.aspp_layer.project.block.conv.weight" in msg
    assert "unexpected keys (1): seg_head.aux_head.aux_projection.block.conv.weight" in msg
    with pytest.raises(CheckpointError, match=r"classifier\.block\.conv\.weight: checkpoint "
                                              r"\(21, 256, 1, 1\) vs model \(6, 256, 1, 1\)"):
        load_segmentation_state_dict(create_deeplabv3("xxs", num_classes=6), sd)
    slim = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    load_segmentation_state_dict(create_deeplabv3("xxs"), {f"module.{k}": v for k, v in slim.items()})


def test_layout_detection_refuses_what_is_not_a_segmenter():
    classifier = create_model("mobilevit_xxs")
    for layout in ("cvnets", "hf", "timm", "ours"):
        with pytest.raises(CheckpointError, match="classification checkpoint .*load_backbone"):
            detect_segmentation_layout(from_ours(classifier, layout))
    with pytest.raises(CheckpointError, match="no segmentation head"):
        detect_segmentation_layout({"encoder.conv_1.block.conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="cannot tell a DeepLabv3 layout"):
        detect_segmentation_layout({"weight": torch.zeros(1)})


# --- (d) load_segmenter's errors name the file ------------------------------------------------


def test_load_segmenter_errors_name_the_file(segmenter, tmp_path):
    def fails(path, match, **kw):
        with pytest.raises(CheckpointError) as err:
            load_segmenter(path, **kw)
        assert str(path) in str(err.value) and re.search(match, str(err.value)), str(err.value)

    fails(tmp_path / "missing.pt", "no such file")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    fails(junk, "not a readable")
    cls = tmp_path / "mobilevit_xxs.pt"
    torch.save(from_ours(create_model("mobilevit_xxs"), "cvnets"), cls)
    fails(cls, "classification checkpoint")
    good = tmp_path / "deeplabv3_mobilevit_xxs.pt"
    torch.save(to_cvnets_segmentation_state_dict(segmenter), good)
    fails(good, r"DeepLabv3-MobileViT-XXS, not 'xs'.*name='xxs'", name="xs")
    fails(good, r"21 classes, not num_classes=6.*num_classes=21", num_classes=6)
    model, _ = load_segmenter(good, num_classes=None)
    assert model.num_classes == 21
    broken = to_cvnets_segmentation_state_dict(segmenter)
    broken["seg_head.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "extra.pt")
    fails(tmp_path / "extra.pt", r"unexpected keys \(1\): seg_head\.extra\.weight")
    wrong = dict(to_cvnets_segmentation_state_dict(segmenter))
    wrong["seg_head.aspp.aspp_layer.convs.0.block.conv.weight"] = torch.zeros(256, 81, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pt")
    fails(tmp_path / "wrong.pt", "81 channels")


# --- a real network end to end, and the data sets' transforms ---------------------------------


def test_a_released_style_file_end_to_end(segmenter, tmp_path):
    """The weights as a cvnets file and as a Hugging Face file score the same."""
    _, masks = write_voc_tree(tmp_path / "voc")
    torch.save(to_cvnets_segmentation_state_dict(segmenter), tmp_path / "cv.pt")
    torch.save(to_hf_segmentation_state_dict(segmenter), tmp_path / "hf.pt")
    results = []
    for name in ("cv.pt", "hf.pt"):
        model, origin = load_segmenter(tmp_path / name)
        results.append(evaluate_voc(model, tmp_path / "voc", origin=origin, image_size=64,
                                    progress=False))
    assert results[0]["origin"] == "cvnets" and results[1]["origin"] == "hf"
    assert results[0]["miou"] == pytest.approx(results[1]["miou"], abs=1e-9)
    assert results[0]["confusion"] == results[1]["confusion"]
    assert results[0]["pixels"] == sum(int((m != 255).sum()) for m in masks)
    assert results[0]["images"] == 3 and 0.0 <= results[0]["miou"] <= 1.0


def test_voc_transform_runs_at_the_original_size(tmp_path):
    write_voc_tree(tmp_path)
    seen = []

    def crop(image, mask, generator=None):
        seen.append((tuple(image.shape), tuple(mask.shape)))
        return image[:, :20, :30], mask[:20, :30]

    ds = VOCSegmentation(tmp_path, "val", transform=crop)
    image, mask = ds[1]
    assert seen == [((3, 90, 61), (90, 61))] and image.shape == (3, 20, 30)
    plain = VOCSegmentation(tmp_path, "val")[1]  # evaluation mode: the files as stored
    assert plain[0].shape == (3, 90, 61) and torch.equal(mask, plain[1][:20, :30])
    sized = VOCSegmentation(tmp_path, "val", image_size=16, transform=crop)[1]
    assert sized[0].shape == (3, 16, 16) and sized[1].shape == (16, 16)


def test_shapes_take_a_transform_after_the_cache():
    flips = ShapesSegmentation(3, image_size=32, seed=0,
                               transform=lambda i, m, generator=None: (i.flip(-1), m.flip(-1)))
    plain = ShapesSegmentation(3, image_size=32, seed=0)
    for _ in range(2):  # the second read comes from the cache, transformed again
        image, mask = flips[2]
        assert torch.equal(image, plain[2][0].flip(-1)) and torch.equal(mask, plain[2][1].flip(-1))
