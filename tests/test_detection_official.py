"""Detection as apple/ml-cvnets does it (issue 15), proven on tiny files written here:
COCO scoring in original pixels against the original annotation file (crowd regions ignored,
areas from the file), the v0.1 / main post-processing and the boxes each keeps, no clipping
before NMS, the cvnets checkpoint layout of SSDLite (key names against the official code, and a
round trip with equal outputs), load_detector, and CocoDetection's transform / original sizes.
No network; a few seconds."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from mobilevit_edu.detection import (
    POSTPROCESS, CocoDetection, Detections, ShapesDetection, SSDOutput,
    coco_evaluate, coco_ground_truth, create_ssdlite, decode_boxes,
    detect_ssdlite_layout, evaluate_coco, load_detector, load_ssdlite_checkpoint, postprocess,
    postprocess_settings, ssdlite_from_ours, ssdlite_key_map,
)
from mobilevit_edu.models.checkpoints import CheckpointError, key_map
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a tiny COCO: non-square images, gappy category ids, a crowd region ---------------------------

A_COLOUR = (200, 100, 30)  # a.png is one flat colour (R, G, B): any resize keeps it
DOG = [4, 6, 20, 30]  # image 7 (a.png, 40 wide x 60 high); area field 2000: "medium" by the file
CAR = [25, 2, 20, 24]  # image 9 (b.png, 50 wide x 30 high); area 480: "small"
CROWD = [0, 0, 20, 30]  # image 9, iscrowd 1: a region, disjoint from CAR


def write_coco(tmp_path):
    from PIL import Image

    img_dir = tmp_path / "val2017"
    img_dir.mkdir(exist_ok=True)
    Image.fromarray(np.full((60, 40, 3), A_COLOUR, dtype=np.uint8)).save(img_dir / "a.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(img_dir / "b.png")
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 60},
                   {"id": 9, "file_name": "b.png", "width": 50, "height": 30}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": DOG, "area": 2000, "iscrowd": 0},
            {"id": 2, "image_id": 9, "category_id": 3, "bbox": CAR, "area": 480, "iscrowd": 0},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": CROWD, "area": 600, "iscrowd": 1},
        ],
    }
    ann = tmp_path / "instances_val2017.json"
    ann.write_text(json.dumps(data))
    return img_dir, ann


SIZES = {7: (60, 40), 9: (30, 50)}  # (height, width)
LABEL = {18: 2, 3: 1}  # COCO id -> contiguous label (sorted ids: car 3 -> 1, dog 18 -> 2)


def xyxy(b):
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def xywh(b):
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def to_input(box_xywh, image_id, size):
    """A box in original pixels -> the same box in the pixels of the size x size input."""
    h0, w0 = SIZES[image_id]
    x0, y0, x1, y1 = xyxy(box_xywh)
    return [x0 * size / w0, y0 * size / h0, x1 * size / w0, y1 * size / h0]


class StubDetector(nn.Module):
    """Returns fixed detections (boxes in the pixels of its input), image by image in file
    order, and records what it was given."""

    def __init__(self, per_image: list[list[tuple[list[float], float, int]]], num_classes: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.num_classes, self.queue = num_classes, list(per_image)
        self.images: list[torch.Tensor] = []
        self.settings: list = []

    def predict(self, images, settings="v0.1"):
        self.images.append(images.clone())
        self.settings.append(settings)
        out = []
        for _ in images:
            dets = self.queue.pop(0)
            boxes = torch.tensor([d[0] for d in dets], dtype=torch.float32)
            out.append(Detections(boxes.reshape(-1, 4),  # [M, 4] (or [0, 4])
                                  torch.tensor([d[1] for d in dets]),
                                  torch.tensor([d[2] for d in dets], dtype=torch.long)))
        return out


def perfect(size, extra9=()):
    return [[(to_input(DOG, 7, size), 0.9, LABEL[18])],
            [(to_input(CAR, 9, size), 0.9, LABEL[3]), *extra9]]


def run(tmp_path, per_image, size=64, drop_crowd=False, **kw):
    img_dir, ann = write_coco(tmp_path)
    if drop_crowd:
        data = json.loads(ann.read_text())
        data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]
        ann.write_text(json.dumps(data))
    stub = StubDetector(per_image)
    kw.setdefault("origin", "cvnets")
    r = evaluate_coco(stub, img_dir, ann, image_size=size, batch_size=2, progress=False,
                      return_results=True, **kw)
    return r, stub, ann


# (a) original pixels --------------------------------------------------------------------------


def test_boxes_are_scored_in_original_pixels(tmp_path):
    r, stub, ann = run(tmp_path, perfect(64))
    assert r["mAP"] == pytest.approx(1.0) and r["images"] == 2 and r["detections"] == 2
    got = {d["image_id"]: d for d in r["results"]}
    assert got[7]["category_id"] == 18 and got[9]["category_id"] == 3
    assert np.allclose(got[7]["bbox"], DOG, atol=1e-4)
    assert np.allclose(got[9]["bbox"], CAR, atol=1e-4)
    # the same boxes in the pixels of the 64 x 64 input miss the original boxes
    resized = [{"image_id": i, "category_id": c, "bbox": xywh(to_input(box, i, 64)), "score": 0.9}
               for i, c, box in ((7, 18, DOG), (9, 3, CAR))]
    assert coco_evaluate(ann, resized)["mAP"] < 0.1
    # areas come from the file: DOG is 600 px^2 as a box but its area field (2000) says medium
    assert r["AP_medium"] == pytest.approx(1.0) and r["AP_small"] == pytest.approx(1.0)
    ds = CocoDetection(*write_coco(tmp_path))  # ground truth rebuilt from samples: box areas
    rebuilt = coco_ground_truth([ds[0], ds[1]], ds.categories, ds.category_ids)
    assert coco_evaluate(rebuilt, r["results"])["AP_medium"] == -1  # no medium object left
    # what the detector saw: one batch of two 64 x 64 images, BGR (a.png is flat R, G, B)
    (images,) = stub.images
    assert images.shape == (2, 3, 64, 64) and stub.settings == ["v0.1"]
    assert torch.allclose(images[0, :, 0, 0], torch.tensor(A_COLOUR[::-1]) / 255)
    assert torch.allclose(images[0].amax((1, 2)), images[0].amin((1, 2)))  # still flat


def test_origin_decides_the_channel_order_and_settings_pass_through(tmp_path):
    r, stub, _ = run(tmp_path, perfect(96), size=96, origin="ours", postprocess="main")
    assert r["mAP"] == pytest.approx(1.0) and stub.settings == ["main"]
    assert torch.allclose(stub.images[0][0, :, 5, 5], torch.tensor(A_COLOUR) / 255)  # RGB
    _, stub, _ = run(tmp_path, perfect(96), size=96, origin="ours", channels="bgr")
    assert torch.allclose(stub.images[0][0, :, 5, 5], torch.tensor(A_COLOUR[::-1]) / 255)
    with pytest.raises(ValueError, match="unknown origin"):
        run(tmp_path, perfect(64), origin="timm")


def test_boxes_are_clipped_to_the_original_image_after_nms(tmp_path):
    out = [(to_input([-10, -5, 30, 40], 7, 64), 0.9, LABEL[18])]
    r, _, _ = run(tmp_path, [out, []])
    (d,) = r["results"]
    assert d["bbox"][:2] == [0.0, 0.0]  # cut at the border, as cvnets' np.clip
    assert d["bbox"][2] == pytest.approx(20) and d["bbox"][3] == pytest.approx(35)


def test_limit_scores_only_the_first_images(tmp_path):
    only_dog = [[(to_input(DOG, 7, 64), 0.9, LABEL[18])], []]
    r, _, _ = run(tmp_path, only_dog[:1], limit=1)
    assert r["images"] == 1 and r["mAP"] == pytest.approx(1.0)  # image 9's car is not counted
    r, _, _ = run(tmp_path, only_dog)
    assert r["images"] == 2 and r["mAP"] == pytest.approx(0.5)  # dog 1.0, car 0.0 (missed)


# (b) crowd regions ------------------------------------------------------------------------------


def test_a_detection_on_a_crowd_region_is_ignored(tmp_path):
    base, _, _ = run(tmp_path, perfect(64))
    # a more confident car inside the crowd region: neither a true nor a false positive
    on_crowd = (to_input([2, 2, 14, 24], 9, 64), 0.99, LABEL[3])
    crowd, _, _ = run(tmp_path, perfect(64, [on_crowd]))
    assert crowd["detections"] == 3
    assert crowd["stats"][:6] == base["stats"][:6] and crowd["mAP"] == pytest.approx(1.0)
    # (it still takes one of COCO's maxDets slots: with one detection per image and class
    # the car is missed, so AR1 drops from 1.0 to 0.5, exactly as in COCOeval)
    assert crowd["AR1"] == pytest.approx(0.5) and crowd["AR100"] == base["AR100"] == 1.0
    # without the crowd annotation the same detection is a false positive ranked first
    no_crowd, _, _ = run(tmp_path, perfect(64, [on_crowd]), drop_crowd=True)
    assert no_crowd["mAP"] == pytest.approx(0.75)  # dog 1.0, car 0.5
    # ... which is what the samples-based evaluator sees: CocoDetection drops crowd boxes
    ds = CocoDetection(*write_coco(tmp_path))
    gt = coco_ground_truth([ds[0], ds[1]], ds.categories, ds.category_ids)
    assert not any(a["iscrowd"] for a in gt["annotations"]) and len(gt["annotations"]) == 2
    assert coco_evaluate(gt, crowd["results"])["mAP"] == pytest.approx(0.75)


# (c) the two official post-processing settings ---------------------------------------------------


def crafted_output(n_side: int = 30, classes: int = 3) -> SSDOutput:
    """``n_side**2`` disjoint small anchors, zero offsets (boxes = anchors). The first half of
    the anchors: every class at probability ~0.3 (above both thresholds); the second half: ~0.03
    (above main's 0.01, below v0.1's 0.05). Scores differ slightly so top-k is well defined."""
    n = n_side * n_side
    c = (torch.arange(n_side) + 0.5) / n_side
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    anchors = torch.stack([cx.flatten(), cy.flatten(), torch.full((n,), 0.5 / n_side),
                           torch.full((n,), 0.5 / n_side)], 1)  # [n, 4], no two overlap
    g = torch.Generator().manual_seed(0)
    probs = torch.empty(n, classes + 1)
    half = n // 2
    probs[:half, 1:] = 0.3 - 0.01 * torch.rand(half, classes, generator=g)
    probs[half:, 1:] = 0.03 - 0.001 * torch.rand(n - half, classes, generator=g)
    probs[:, 0] = 1 - probs[:, 1:].sum(1)
    return SSDOutput(probs.log()[None], torch.zeros(1, n, 4), anchors)


def test_v01_and_main_keep_the_boxes_each_promises():
    out = crafted_output()  # 900 anchors, 3 classes
    v01 = postprocess(out, "v0.1")[0]
    counts = [int((v01.labels == k).sum()) for k in (1, 2, 3)]
    assert counts == [200, 200, 200] and len(v01.boxes) == 600  # 200 per class, no image cap
    assert v01.scores.min() > 0.05  # nothing of the 0.03 half
    main = postprocess(out, "main")[0]
    assert len(main.boxes) == 200 and main.scores.min() > 0.05  # the 200 best of the image
    # main's pre-NMS cap: 400 per class enter NMS (of 900 above 0.01); without the image cap
    # all 400 survive the NMS of disjoint boxes
    uncapped = postprocess(out, dataclasses.replace(POSTPROCESS["main"], max_detections=None))[0]
    assert [int((uncapped.labels == k).sum()) for k in (1, 2, 3)] == [400, 400, 400]
    assert int((uncapped.scores < 0.05).sum()) == 0  # the top 400 of 450 are all from the 0.3 half
    # sorted best first, and the overrides apply on top of a named setting
    assert (main.scores.diff() <= 0).all() and (v01.scores.diff() <= 0).all()
    low = postprocess(out, "v0.1", conf_threshold=0.01)[0]
    assert len(low.boxes) == 600
    assert postprocess_settings("v0.1", conf_threshold=0.01) == dataclasses.replace(
        POSTPROCESS["v0.1"], conf_threshold=0.01)
    assert POSTPROCESS["v0.1"].conf_threshold == 0.05 and POSTPROCESS["main"].conf_threshold == 0.01
    with pytest.raises(ValueError, match="unknown post-processing settings"):
        postprocess(out, "v0.2")


def test_main_pre_nms_cap_takes_the_most_probable():
    out = crafted_output(n_side=30, classes=1)  # 450 at ~0.3, 450 at ~0.03
    p = out.scores.softmax(-1)[0, :, 1]
    cfg = dataclasses.replace(POSTPROCESS["main"], max_detections=None, pre_nms_top_k=500)
    det = postprocess(out, cfg)[0]
    assert len(det.boxes) == 500  # 450 strong + the 50 best weak
    assert torch.allclose(det.scores, p.topk(500).values)


# (d) no clipping before NMS ---------------------------------------------------------------------


def test_decoded_boxes_are_not_clipped_before_nms():
    # two boxes sticking out of the left border: IoU 0.375 as decoded, 1.0 if both were cut at 0
    boxes = torch.tensor([[-0.3, 0.1, 0.1, 0.3], [-0.05, 0.1, 0.1, 0.3]])
    anchors = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    scores = torch.tensor([[[0.0, 5.0], [0.0, 4.0]]])  # class 1 wins for both
    out = SSDOutput(scores, torch.zeros(1, 2, 4), anchors)
    for settings in ("v0.1", "main"):
        det = postprocess(out, settings)[0]
        assert len(det.boxes) == 2, settings  # both survive NMS at 0.5
        assert torch.allclose(det.boxes, boxes, atol=1e-6)  # x0 < 0 kept
    # and with offsets: the decoded box is exactly decode_boxes, outside [0, 1] where it lands
    locs = torch.tensor([[[-3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    det = postprocess(SSDOutput(scores, locs, anchors), "v0.1")[0]
    assert torch.allclose(det.boxes[0], decode_boxes(locs[0, 0], anchors[0]))
    assert det.boxes[0, 0] < -0.3


# (e) cvnets' checkpoint layout ------------------------------------------------------------------

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def official_ssd_keys(name: str, num_classes: int) -> set[str]:
    """The state-dict names of cvnets v0.1's SingleShotDetector, derived from its code: the
    encoder is the classification MobileViT in cvnets' names minus ``classifier`` and
    ``conv_1x1_exp`` (set to None); ``ConvLayer`` = ``block.conv`` (+ ``block.norm``);
    ``SeparableConv`` = ``dw_conv`` (always normed) + ``pw_conv``; ``SSDHead`` = ``proj_layer``
    (where proj channels != in channels and k > 1) + ``loc_cls_layer`` (SeparableConv with a
    bias and no norm; a 1 x 1 ConvLayer with a bias for OS -1)."""
    cls = MobileViT(CONFIGS[name], num_classes=1000)
    keys = {"encoder." + v[0] for v in key_map(cls, "cvnets").values()}
    keys = {k for k in keys if not k.startswith(("encoder.classifier.", "encoder.conv_1x1_exp."))}

    def conv(prefix, norm=True, bias=False):
        return ({f"{prefix}.block.conv.weight"} | ({f"{prefix}.block.conv.bias"} if bias else set())
                | ({f"{prefix}.block.norm.{n}" for n in BN} if norm else set()))

    for os_ in (64, 128, 256):
        keys |= conv(f"extra_layers.os_{os_}.dw_conv") | conv(f"extra_layers.os_{os_}.pw_conv")
    keys |= conv("extra_layers.os_-1.1", norm=False)
    c4, c5 = CONFIGS[name].channels[4], CONFIGS[name].channels[5]
    for i, (c_in, proj) in enumerate(zip([c4, c5, 256, 128, 128], [512, 256, 256, 128, 128])):
        if proj != c_in:
            keys |= conv(f"ssd_heads.{i}.proj_layer")
        keys |= conv(f"ssd_heads.{i}.loc_cls_layer.dw_conv")
        keys |= conv(f"ssd_heads.{i}.loc_cls_layer.pw_conv", norm=False, bias=True)
    keys |= conv("ssd_heads.5.loc_cls_layer", norm=False, bias=True)
    return keys


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name
                        else 0.2 * torch.randn(t.shape, generator=g))
    return model.eval()


def test_cvnets_layout_round_trip(tmp_path):
    model = randomised(create_ssdlite("xxs", num_classes=4, image_size=160))
    sd = ssdlite_from_ours(model, "cvnets")
    assert set(sd) == official_ssd_keys("xxs", 4) and len(sd) == len(model.state_dict())
    for key in ("encoder.conv_1.block.conv.weight",
                "encoder.layer_3.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight",
                "extra_layers.os_64.dw_conv.block.norm.running_mean",
                "extra_layers.os_256.pw_conv.block.conv.weight",
                "extra_layers.os_-1.1.block.conv.weight",
                "ssd_heads.0.proj_layer.block.norm.running_var",
                "ssd_heads.1.loc_cls_layer.dw_conv.block.conv.weight",
                "ssd_heads.4.loc_cls_layer.pw_conv.block.conv.bias",
                "ssd_heads.5.loc_cls_layer.block.conv.weight"):
        assert key in sd, key
    assert "ssd_heads.2.proj_layer.block.conv.weight" not in sd  # 256 -> 256: no projection
    assert sd["ssd_heads.5.loc_cls_layer.block.conv.bias"].shape == (4 * (4 + 4),)
    assert detect_ssdlite_layout(sd) == "cvnets"
    # keys in a shuffled order: loading is by name, never by position
    items = list(sd.items())
    random.Random(0).shuffle(items)
    torch.save(dict(items), tmp_path / "ssd_cvnets.pt")
    loaded, origin = load_detector(tmp_path / "ssd_cvnets.pt")
    assert origin == "cvnets" and not loaded.training
    assert loaded.backbone.config.name == "mobilevit_xxs" and loaded.num_classes == 4
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.locations, b.locations)
    back = ssdlite_from_ours(loaded, "cvnets")
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    # into a fresh model, and our own layout too
    fresh = load_ssdlite_checkpoint(create_ssdlite("xxs", num_classes=4),
                                    tmp_path / "ssd_cvnets.pt")
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x).scores, a.scores)
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pt")
    again, origin = load_detector(tmp_path / "ours.pt", name="xxs", num_classes=4)
    assert origin == "ours"
    with torch.no_grad():
        assert torch.equal(again(x).locations, a.locations)
    assert ssdlite_key_map(model, "ours")["heads.0.proj.bn.weight"] == "heads.0.proj.bn.weight"


def test_size_is_inferred_and_bad_files_name_their_keys(tmp_path):
    xs = randomised(create_ssdlite("xs", num_classes=3))
    sd = ssdlite_from_ours(xs, "cvnets")
    model, _ = load_detector(sd)
    assert model.backbone.config.name == "mobilevit_xs" and model.num_classes == 3
    broken = dict(sd)
    del broken["ssd_heads.1.loc_cls_layer.dw_conv.block.conv.weight"]
    broken["ssd_heads.9.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as err:
        load_detector(tmp_path / "broken.pt", name="xs")
    msg = str(err.value)
    assert "missing keys (1): ssd_heads.1.loc_cls_layer.dw_conv.block.conv.weight" in msg
    assert "unexpected keys (1): ssd_heads.9.extra.weight" in msg
    with pytest.raises(CheckpointError, match="fits no SSDLite-MobileViT"):
        load_detector(tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="3 classes .*not num_classes=81"):
        load_detector(sd, num_classes=81)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_detector(sd, name="s")
    cls = MobileViT(CONFIGS["xxs"], num_classes=1000)
    with pytest.raises(CheckpointError, match="classification checkpoint"):
        load_detector(cls.state_dict())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_detector(tmp_path / "junk.pt")


def test_evaluate_coco_runs_a_real_ssdlite(tmp_path):
    img_dir, ann = write_coco(tmp_path)
    model = create_ssdlite("xxs", num_classes=3, image_size=160)
    r = evaluate_coco(model, img_dir, ann, origin="ours", image_size=160, progress=False)
    assert r["images"] == 2 and len(r["stats"]) == 12 and -1 <= r["mAP"] <= 1
    with pytest.raises(ValueError, match="num_classes=3"):
        evaluate_coco(create_ssdlite("xxs", num_classes=81, image_size=160), img_dir, ann,
                      origin="cvnets", image_size=160, progress=False)
    with pytest.raises(FileNotFoundError, match="annotation file"):
        evaluate_coco(model, img_dir, tmp_path / "none.json", origin="ours")


# CocoDetection and ShapesDetection: original sizes, ids, transform= -----------------------------


def flip_transform(image, boxes, labels, generator=None):
    """A horizontal flip with the detection-transform signature."""
    w = image.shape[-1]
    return image.flip(-1), torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0],
                                        boxes[:, 3]], 1), labels


def test_coco_dataset_sizes_ids_and_transform(tmp_path):
    img_dir, ann = write_coco(tmp_path)
    ds = CocoDetection(img_dir, ann, image_size=32, transform=flip_transform)
    assert [ds.original_size(i) for i in range(2)] == [(60, 40), (30, 50)]
    assert [ds.image_id(i) for i in range(2)] == [7, 9]
    s = ds[1]  # flipped in original pixels (x -> 50 - x), then scaled to 32 x 32
    x0, y0, x1, y1 = xyxy(CAR)
    expect = torch.tensor([[(50 - x1) * 32 / 50, y0 * 32 / 30, (50 - x0) * 32 / 50, y1 * 32 / 30]])
    assert s.image.shape == (3, 32, 32) and torch.allclose(s.boxes, expect)
    assert len(CocoDetection(img_dir, ann, skip_crowd=False)[1].boxes) == 2  # the crowd box too
    data = json.loads(ann.read_text())
    for im in data["images"]:
        del im["width"], im["height"]
    ann.write_text(json.dumps(data))
    assert CocoDetection(img_dir, ann).original_size(0) == (60, 40)  # from the file itself


def test_shapes_transform_is_resized_back():
    def crop(image, boxes, labels, generator=None):  # keep the left 100 x 120 px
        return image[:, :120, :100], boxes.clamp(max=torch.tensor([100.0, 120, 100, 120])), labels

    plain, cropped = ShapesDetection(2, image_size=160, seed=0), ShapesDetection(
        2, image_size=160, seed=0, transform=crop)
    a, b = plain[0], cropped[0]
    assert b.image.shape == (3, 160, 160)
    ref = a.boxes.clamp(max=torch.tensor([100.0, 120, 100, 120])) * torch.tensor(
        [1.6, 160 / 120, 1.6, 160 / 120])
    assert torch.allclose(b.boxes, ref) and torch.equal(plain.scene_sample(0).image, a.image)
    assert torch.equal(b.labels, a.labels) and b.image_id == 0
