"""SSDLite on MobileViT (mobilevit_edu.detection): parameter counts against the paper's Table 1,
anchors, box encoding, IoU, matching, hard-negative mining, the loss, NMS against brute force,
the COCO evaluator, the COCO JSON loader on files written here, a tiny training run through the
one training loop (metrics, checkpoint, resume), the package's import layering, and the figures
(mobilevit_edu.plots.detection)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from mobilevit_edu.book import paper
from mobilevit_edu.detection import (
    POSTPROCESS, AnchorGenerator, CocoDetection, DetectionSample, Detections, SSDConfig, SSDLite,
    ShapesDetection, batched_nms, box_iou, check_boxes, coco_detections, coco_evaluate,
    coco_ground_truth, create_ssdlite, cxcywh_to_xyxy, decode_boxes, detection_collate,
    encode_boxes, encode_targets, evaluate_detector, hard_negative_mining, hflip_boxes,
    match_anchors, nms, postprocess, ssd_anchors, ssd_feature_sizes, ssd_loss,
    ssdlite_param_table, train_detector, xyxy_to_cxcywh,
)
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT
from mobilevit_edu.plots.detection import plot_anchors, plot_detections, plot_detector_training
from mobilevit_edu.train import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_boxes(n: int, g: torch.Generator, scale: float = 1.0, min_size: float = 0.02) -> torch.Tensor:
    """``n`` valid corner boxes inside ``[0, scale]^2``."""
    xy = torch.rand(n, 2, generator=g) * 0.8
    wh = min_size + torch.rand(n, 2, generator=g) * (1 - min_size - xy.max(1, keepdim=True).values).clamp(min=0.01)
    return torch.cat([xy, xy + wh], 1) * scale


# --- the architecture against Table 1 ------------------------------------------------------------


def test_parameter_counts_match_table1():
    rows = {r["model"]: r for r in ssdlite_param_table(("xxs", "xs", "s"), num_classes=81, image_size=320)}
    exact = {"xxs": 1_755_050, "xs": 2_742_042, "s": 5_738_826}
    for key, n in exact.items():
        row = rows[f"MobileViT-{key.upper()}"]
        assert row["total"] == n
        assert round(row["total"] / 1e6, 3) == paper.SSDLITE_PARAMS_M[key]
        assert row["backbone"] + row["extra"] + row["heads"] == row["total"]
    # the paper's rounding (Table 1a: XS 2.7 M, S 5.7 M)
    assert round(rows["MobileViT-XS"]["total"] / 1e6, 1) == paper.find("table1a", "MobileViT-XS").params_m
    assert round(rows["MobileViT-S"]["total"] / 1e6, 1) == paper.find("table1a", "MobileViT-S").params_m
    # the backbone is the classifier minus its classifier and 1x1 expansion conv
    assert rows["MobileViT-XXS"]["backbone"] == sum(
        p.numel() for p in MobileViT(CONFIGS["xxs"], 0, expand_output=False).parameters())


def test_feature_maps_anchors_and_output_shapes():
    assert ssd_feature_sizes(320) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert ssd_feature_sizes(160) == [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    gen = AnchorGenerator()
    assert gen.anchors_per_location == [6, 6, 6, 6, 6, 4]
    n = 20**2 * 6 + 10**2 * 6 + 5**2 * 6 + 3**2 * 6 + 2**2 * 6 + 1 * 4
    assert n == 3232
    assert gen.num_anchors(ssd_feature_sizes(320)) == n
    torch.manual_seed(0)
    model = create_ssdlite("mobilevit_xxs", num_classes=81).eval()
    assert model.num_anchors() == n
    maps = model.feature_maps(torch.rand(2, 3, 320, 320))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (64, 20, 20), (80, 10, 10), (256, 5, 5), (128, 3, 3), (128, 2, 2), (64, 1, 1)]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 320, 320))
    assert out.scores.shape == (2, n, 81)
    assert out.locations.shape == (2, n, 4)
    assert out.anchors.shape == (n, 4)


def test_anchor_scales_and_layout():
    gen = AnchorGenerator()
    assert np.allclose(gen.scales, np.linspace(0.1, 1.05, 7))
    sizes = ssd_feature_sizes(320)
    anchors = gen(sizes)
    assert anchors.min() >= 0 and anchors.max() <= 1  # clipped
    s0, s1 = gen.scales[0], gen.scales[1]
    first = anchors[:6]  # the first location of the 20 x 20 map
    assert torch.allclose(first[:, :2], torch.full((6, 2), 0.5 / 20))
    expected = [(s0, s0), (math.sqrt(s0 * s1),) * 2, (s0 * math.sqrt(2), s0 / math.sqrt(2)),
                (s0 / math.sqrt(2), s0 * math.sqrt(2)), (s0 * math.sqrt(3), s0 / math.sqrt(3)),
                (s0 / math.sqrt(3), s0 * math.sqrt(3))]
    assert torch.allclose(first[:, 2:], torch.tensor(expected, dtype=torch.float32))
    # row-major: anchor 6 sits one column to the right
    assert torch.allclose(anchors[6, :2], torch.tensor([1.5 / 20, 0.5 / 20]))
    # the global map: one location at the centre, 4 anchors, last scale pair clipped at 1
    last = anchors[-4:]
    assert torch.allclose(last[:, :2], torch.full((4, 2), 0.5))
    assert torch.allclose(last[0, 2:], torch.full((2,), gen.scales[5]))
    assert torch.allclose(last[1, 2:], torch.full((2,), min(1.0, math.sqrt(gen.scales[5] * gen.scales[6]))))
    # unclipped anchors keep the big ones
    raw = ssd_anchors(sizes, SSDConfig().aspect_ratios, clip=False)
    assert raw.max() > 1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown SSDLite backbone"):
        create_ssdlite("mobilevit_m")
    with pytest.raises(ValueError, match="too small"):
        create_ssdlite("xxs", image_size=128)
    with pytest.raises(ValueError, match="num_classes=0 and expand_output=False"):
        SSDLite(MobileViT(CONFIGS["xxs"], 10), 6)
    with pytest.raises(ValueError, match="one entry per feature map"):
        SSDConfig(proj_channels=(512, 256))
    model = create_ssdlite("xxs", num_classes=6, image_size=160)
    with pytest.raises(ValueError, match="too small for SSDLite"):
        model(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"x1 >= x0"):
        check_boxes(torch.tensor([[10.0, 10.0, 5.0, 20.0]]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        check_boxes(torch.zeros(3, 5))
    anchors = AnchorGenerator()(ssd_feature_sizes(160))
    with pytest.raises(ValueError, match="x1 >= x0"):
        match_anchors(torch.tensor([[0.5, 0.5, 0.2, 0.9]]), torch.tensor([1]), anchors)
    with pytest.raises(ValueError, match="x1 >= x0"):
        encode_boxes(torch.tensor([[0.5, 0.5, 0.4, 0.9]]), anchors[:1])


# --- boxes ------------------------------------------------------------------------------------


def test_encode_decode_identity_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(2000, g)
    anchors = xyxy_to_cxcywh(random_boxes(2000, g))
    loc = encode_boxes(boxes, anchors, 0.1, 0.2)
    assert torch.allclose(decode_boxes(loc, anchors, 0.1, 0.2), boxes, atol=1e-5)
    # the box equal to its anchor encodes to zero; a box twice as wide to log(2) / 0.2
    assert torch.allclose(encode_boxes(cxcywh_to_xyxy(anchors), anchors), torch.zeros(2000, 4), atol=1e-4)
    wide = anchors.clone()
    wide[:, 2] *= 2
    assert torch.allclose(encode_boxes(cxcywh_to_xyxy(wide), anchors)[:, 2],
                          torch.full((2000,), math.log(2) / 0.2), atol=1e-4)
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes, atol=1e-6)


def test_box_iou_against_brute_force():
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(17, g, 50.0), random_boxes(23, g, 50.0)
    iou = box_iou(a, b, eps=0.0)

    def ref(p, q):
        ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = ix * iy
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(p) + area(q) - inter)

    expected = torch.tensor([[ref(p, q) for q in b.tolist()] for p in a.tolist()])
    assert torch.allclose(iou, expected, atol=1e-6)
    assert torch.allclose(box_iou(a, a, eps=0.0).diagonal(), torch.ones(17))


def test_matcher_gives_every_object_its_best_anchor():
    anchors = AnchorGenerator()(ssd_feature_sizes(320))
    g = torch.Generator().manual_seed(2)
    checked = 0
    for trial in range(5):
        gt = random_boxes(6, g, min_size=0.03)
        labels = torch.arange(1, 7)
        boxes, assigned = match_anchors(gt, labels, anchors, 0.5)
        iou = box_iou(cxcywh_to_xyxy(anchors), gt)  # [N, K]
        best = iou.argmax(0)
        if len(set(best.tolist())) == len(best):  # distinct best anchors (true for these draws)
            assert torch.equal(assigned[best], labels)
            assert torch.allclose(boxes[best], gt)
            checked += 1
        # every other anchor: the best-overlapping object if IoU >= 0.5, else background
        others = torch.ones(len(anchors), dtype=torch.bool)
        others[best] = False
        top_iou, top_gt = iou.max(1)
        want = torch.where(top_iou >= 0.5, labels[top_gt], torch.zeros_like(top_gt))
        assert torch.equal(assigned[others], want[others])
        # background anchors regress to themselves: zero offsets
        loc = encode_boxes(boxes, anchors)
        assert torch.allclose(loc[assigned == 0], torch.zeros(1, 4), atol=1e-4)
    assert checked >= 3
    # an image without objects: all background
    boxes, assigned = match_anchors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), anchors)
    assert int(assigned.sum()) == 0 and boxes.shape == anchors.shape


def test_hard_negative_mining_is_exactly_three_to_one():
    g = torch.Generator().manual_seed(3)
    b, n = 4, 500
    loss = torch.rand(b, n, generator=g)
    labels = torch.zeros(b, n, dtype=torch.long)
    n_pos = [5, 17, 0, 200]  # the last one has too few negatives for 3:1
    for i, p in enumerate(n_pos):
        labels[i, torch.randperm(n, generator=g)[:p]] = 1 + i
    mask = hard_negative_mining(loss, labels, 3)
    for i, p in enumerate(n_pos):
        neg = mask[i] & (labels[i] == 0)
        assert int((mask[i] & (labels[i] > 0)).sum()) == p  # every positive is in
        assert int(neg.sum()) == min(3 * p, n - p)
        if 0 < neg.sum() < (labels[i] == 0).sum():  # the chosen negatives are the hardest
            assert loss[i][neg].min() >= loss[i][(labels[i] == 0) & ~neg].max()


def test_ssd_loss_matches_a_hand_computation():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(2, 40, 5, generator=g, requires_grad=True)
    locs = torch.randn(2, 40, 4, generator=g, requires_grad=True)
    labels = torch.zeros(2, 40, dtype=torch.long)
    labels[0, :3] = torch.tensor([1, 2, 3])
    labels[1, 10] = 4
    gt_locs = torch.randn(2, 40, 4, generator=g)
    out = ssd_loss(scores, locs, labels, gt_locs, neg_pos_ratio=3)
    assert out.num_pos == 4
    pos = labels > 0
    loc = torch.nn.functional.smooth_l1_loss(locs[pos], gt_locs[pos], reduction="sum")
    bg = -torch.log_softmax(scores.detach(), -1)[..., 0]
    cls = 0.0
    for i, k in ((0, 9), (1, 3)):
        neg = torch.where(labels[i] == 0, bg[i], torch.tensor(-1e9)).topk(k).indices
        chosen = torch.cat([torch.nonzero(labels[i]).flatten(), neg])
        cls = cls + torch.nn.functional.cross_entropy(scores[i, chosen], labels[i, chosen], reduction="sum")
    assert torch.allclose(out.loc, loc / 4) and torch.allclose(out.cls, cls / 4)
    assert torch.allclose(out.total, (loc + cls) / 4)
    out.total.backward()
    assert torch.isfinite(scores.grad).all() and locs.grad[~pos].abs().sum() == 0


# --- NMS ----------------------------------------------------------------------------------------


def nms_reference(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Greedy NMS in plain Python."""
    def iou(p, q):
        ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = ix * iy
        return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter + 1e-5)

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def test_nms_against_brute_force():
    g = torch.Generator().manual_seed(5)
    for trial in range(6):
        centres = torch.rand(4, 2, generator=g) * 80
        jitter = torch.randn(60, 4, generator=g) * 4
        base = torch.cat([centres, centres + 20], 1)[torch.randint(4, (60,), generator=g)]
        boxes = torch.cat([torch.minimum(base[:, :2] + jitter[:, :2], base[:, 2:] + jitter[:, 2:] - 1),
                           base[:, 2:] + jitter[:, 2:]], 1)
        scores = torch.rand(60, generator=g)
        for thr in (0.3, 0.5, 0.7):
            keep = nms(boxes, scores, thr)
            assert keep.tolist() == nms_reference(boxes.tolist(), scores.tolist(), thr)
        assert nms(boxes, scores, 0.5, top_k=2).tolist() == nms_reference(
            boxes.tolist(), scores.tolist(), 0.5)[:2]
        labels = torch.randint(1, 4, (60,), generator=g)
        got = batched_nms(boxes, scores, labels, 0.5)
        want = []
        for c in (1, 2, 3):
            idx = torch.nonzero(labels == c).flatten().tolist()
            want += [idx[j] for j in nms_reference(boxes[idx].tolist(), scores[idx].tolist(), 0.5)]
        assert sorted(got.tolist()) == sorted(want)
        assert (scores[got].diff() <= 0).all()  # sorted by score
    assert nms(torch.zeros(0, 4), torch.zeros(0)).numel() == 0


def test_postprocess_decodes_thresholds_and_suppresses():
    sizes = ssd_feature_sizes(160)
    anchors = AnchorGenerator()(sizes)
    n = len(anchors)
    scores = torch.full((1, n, 3), -10.0)
    scores[..., 0] = 10.0  # background everywhere ...
    scores[0, 5, 1] = 10.0  # ... except a confident class-1 anchor
    scores[0, 5, 0] = 0.0
    from mobilevit_edu.detection import SSDOutput

    out = SSDOutput(scores, torch.zeros(1, n, 4), anchors)
    det = postprocess(out, conf_threshold=0.5)[0]
    assert det.labels.tolist() == [1]
    # the decoded box is the anchor itself, not clipped to the image (as the official code)
    assert torch.allclose(det.boxes[0], cxcywh_to_xyxy(anchors[5]))
    assert det.boxes[0].min() < 0


# --- COCO JSON, the evaluator and the loaders ------------------------------------------------------


def shapes_samples(n: int = 6, size: int = 160) -> list[DetectionSample]:
    ds = ShapesDetection(n, image_size=size, seed=3)
    return [ds[i] for i in range(n)]


def test_coco_evaluate_perfect_and_shifted_detections():
    samples = shapes_samples()
    cats = ["circle", "square", "triangle", "ring", "cross"]
    gt = coco_ground_truth(samples, cats)
    assert len(gt["images"]) == 6 and min(a["id"] for a in gt["annotations"]) == 1
    perfect = [Detections(s.boxes, torch.ones(len(s.boxes)), s.labels) for s in samples]
    r = coco_evaluate(gt, coco_detections(perfect, [s.image_id for s in samples]))
    assert r["mAP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0)
    assert len(r["stats"]) == 12
    # shift every box right by a fifth of its width: IoU 0.8 / 1.2 = 2/3, a hit at the IoU
    # thresholds 0.50, 0.55, 0.60, 0.65 and a miss at 0.70 ... 0.95, so mAP = 4/10
    shifted = [Detections(s.boxes + torch.stack([dx, 0 * dx, dx, 0 * dx], 1),
                          torch.ones(len(s.boxes)), s.labels)
               for s in samples for dx in [0.2 * (s.boxes[:, 2] - s.boxes[:, 0])]]
    r2 = coco_evaluate(gt, coco_detections(shifted, [s.image_id for s in samples]))
    assert r2["AP50"] == pytest.approx(1.0) and r2["mAP"] == pytest.approx(0.4, abs=1e-6)
    wrong = [Detections(d.boxes, d.scores, d.labels % 5 + 1) for d in perfect]
    assert coco_evaluate(gt, coco_detections(wrong, [s.image_id for s in samples]))["mAP"] < 0.05
    assert coco_evaluate(gt, [])["mAP"] == 0.0


def write_coco(tmp_path, *, corrupt: bool = False):
    """Two PNG images and an instances JSON with gappy category ids and a crowd box."""
    from PIL import Image

    img_dir = tmp_path / "val2017"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in (("a.png", (40, 30)), ("b.png", (64, 48))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(img_dir / name)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 9, "file_name": "b.png", "width": 64, "height": 48}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 44, "name": "bottle"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [2, 3, 10, 20], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 5, 15, 10], "area": 150, "iscrowd": 0},
            {"id": 3, "image_id": 9, "category_id": 44, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 1},
            {"id": 4, "image_id": 9, "category_id": 44, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0},
        ],
    }
    ann = tmp_path / "instances_val2017.json"
    ann.write_text("{not json" if corrupt else json.dumps(data))
    return img_dir, ann, data


def test_coco_loader_reads_the_real_format(tmp_path):
    img_dir, ann, data = write_coco(tmp_path)
    ds = CocoDetection(img_dir, ann)
    assert len(ds) == 2
    assert ds.categories == ["car", "dog", "bottle"] and ds.category_ids == [3, 18, 44]
    s = ds[0]
    assert s.image.shape == (3, 30, 40) and s.image.dtype == torch.float32
    assert 0 <= s.image.min() and s.image.max() <= 1
    from PIL import Image

    pixels = np.asarray(Image.open(img_dir / "a.png"), dtype=np.float32) / 255
    assert torch.allclose(s.image, torch.from_numpy(pixels).permute(2, 0, 1))
    assert s.image_id == 7
    assert s.labels.tolist() == [2, 1]  # dog -> 2, car -> 1
    assert s.boxes.tolist() == [[2, 3, 12, 23], [20, 5, 35, 15]]  # xywh -> xyxy
    s1 = ds[1]
    assert s1.labels.tolist() == [3] and s1.boxes.tolist() == [[10, 10, 40, 30]]  # crowd skipped
    # square resize scales the boxes along
    r = CocoDetection(img_dir, ann, image_size=160)[1]
    assert r.image.shape == (3, 160, 160)
    assert torch.allclose(r.boxes, torch.tensor([[10 * 2.5, 10 * 160 / 48, 40 * 2.5, 30 * 160 / 48]]))
    # the loader's ground truth evaluates to 1.0 against itself, with the original category ids
    samples = [ds[0], ds[1]]
    gt = coco_ground_truth(samples, ds.categories, ds.category_ids)
    assert {a["category_id"] for a in gt["annotations"]} == {3, 18, 44}
    dets = [Detections(x.boxes, torch.ones(len(x.labels)), x.labels) for x in samples]
    assert coco_evaluate(gt, coco_detections(dets, [7, 9], ds.category_ids))["mAP"] == pytest.approx(1.0)
    # ... and against the JSON file itself (crowd regions are ignored by COCOeval)
    (tmp_path / "dets.json").write_text(json.dumps(coco_detections(dets, [7, 9], ds.category_ids)))
    assert coco_evaluate(ann, tmp_path / "dets.json")["mAP"] == pytest.approx(1.0)
    batch = detection_collate([CocoDetection(img_dir, ann, image_size=64)[i] for i in range(2)])
    assert batch.images.shape == (2, 3, 64, 64) and batch.image_ids == [7, 9]
    with pytest.raises(ValueError, match="share a size"):
        detection_collate(samples)


def test_coco_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file"):
        CocoDetection(tmp_path, tmp_path / "missing.json")
    img_dir, ann, data = write_coco(tmp_path, corrupt=True)
    with pytest.raises(ValueError, match="not valid JSON"):
        CocoDetection(img_dir, ann)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="'annotations'"):
        CocoDetection(img_dir, ann)
    bad = dict(data, annotations=[dict(data["annotations"][0], image_id=123)])
    ann.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unknown image 123"):
        CocoDetection(img_dir, ann)
    bad = dict(data, annotations=[dict(data["annotations"][0], bbox=[1, 2, 3])])
    ann.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bbox \[x, y, w, h\]"):
        CocoDetection(img_dir, ann)
    ann.write_text(json.dumps(data))
    (img_dir / "b.png").unlink()
    ds = CocoDetection(img_dir, ann)
    with pytest.raises(FileNotFoundError, match="b.png"):
        ds[1]


def test_shapes_adapter_and_flip():
    ds = ShapesDetection(4, image_size=160, seed=0)
    from mobilevit_edu.data.shapes import ShapesDataset

    ref = ShapesDataset(4, task="shape", image_size=160, seed=0).render(2)
    s = ds[2]
    assert torch.equal(s.image, ref.image) and torch.equal(s.labels, ref.box_labels + 1)
    assert torch.equal(s.boxes, ref.boxes) and s.image_id == 2
    assert ds.categories == ["circle", "square", "triangle", "ring", "cross"]
    flipped = hflip_boxes(s.boxes, 160)
    assert torch.allclose(hflip_boxes(flipped, 160), s.boxes)
    check_boxes(flipped)


# --- training -----------------------------------------------------------------------------------


def test_a_few_steps_reduce_the_loss_and_evaluation_runs():
    torch.manual_seed(0)
    ds = ShapesDetection(8, image_size=160, seed=0)
    model = create_ssdlite("xxs", num_classes=6, image_size=160)
    config = TrainConfig(epochs=6, batch_size=8, lr=0.002, warmup_lr=0.002, min_lr=0.002,
                         warmup_iters=0, ema_momentum=None, verbose=False, progress=False, seed=0,
                         label_smoothing=0.0)
    hist = train_detector(model, ds, config, hflip=False)
    losses = [s["loss"] for s in hist.steps]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0]
    result = evaluate_detector(model, ShapesDetection(4, image_size=160, seed=1), batch_size=4,
                               return_detections=True)
    assert 0.0 <= result["mAP"] <= 1.0 and len(result["detections"]) == 4
    for det in result["detections"]:
        assert det.boxes.numel() == 0 or (det.boxes.min() >= 0 and det.boxes.max() <= 160)
        # v0.1 (the default) keeps at most 200 boxes per class after NMS, no cap per image
        assert all(int((det.labels == k).sum()) <= POSTPROCESS["v0.1"].per_class_top_k
                   for k in range(1, 6))


def test_encode_targets_batch():
    anchors = AnchorGenerator()(ssd_feature_sizes(160))
    samples = shapes_samples(3)
    locs, labels = encode_targets([s.boxes / 160 for s in samples], [s.labels for s in samples], anchors)
    assert locs.shape == (3, len(anchors), 4) and labels.shape == (3, len(anchors))
    for i, s in enumerate(samples):
        assert set(labels[i].unique().tolist()) - {0} == set(s.labels.tolist())
        pos = labels[i] > 0
        decoded = decode_boxes(locs[i][pos], anchors[pos]) * 160
        # every positive anchor decodes to one of the image's boxes
        assert (box_iou(decoded, s.boxes).max(1).values > 0.999).all()


def test_train_detector_writes_metrics_and_checkpoint_and_resumes(tmp_path):
    """out_dir gets metrics.csv/json and last.pt (through the one loop); resuming from the
    checkpoint of epoch 2 reproduces a straight 3-epoch run exactly (flips included: they come
    from the global RNG, which the checkpoint saves)."""
    ds = ShapesDetection(4, image_size=160, seed=0)
    val = ShapesDetection(2, image_size=160, seed=1)

    def config(epochs: int, out_dir=None) -> TrainConfig:
        # a constant learning rate, so that the schedule does not depend on `epochs`
        return TrainConfig(epochs=epochs, batch_size=4, lr=0.002, warmup_lr=0.002, min_lr=0.002,
                           warmup_iters=0, ema_momentum=None, verbose=False, progress=False,
                           seed=0, device="cpu", val_batch_size=2, checkpoint_every=1,
                           label_smoothing=0.0,
                           out_dir=None if out_dir is None else str(out_dir))

    def fresh() -> SSDLite:
        torch.manual_seed(0)
        return create_ssdlite("xxs", num_classes=6, image_size=160)

    straight = fresh()
    full = train_detector(straight, ds, config(3))

    first = fresh()
    run = tmp_path / "run"
    hist = train_detector(first, ds, config(2, run), val_data=val)
    for name in ("metrics.csv", "metrics.json", "last.pt"):
        assert (run / name).is_file(), name
    rows = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "loc_loss", "cls_loss", "mAP", "AP50", "AP75", "lr", "seconds", "iteration"} \
        <= set(rows[-1])
    assert not any(k.startswith("ema_") for k in rows[-1])  # the EMA model is not scored
    assert 0.0 <= hist[-1]["mAP"] <= 1.0 and len(hist.steps) == 2
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,loss,loc_loss")

    resumed = fresh()
    hist2 = train_detector(resumed, ds, config(3), resume=run / "last.pt")
    assert [r["epoch"] for r in hist2] == [1, 2, 3] and hist2[-1]["iteration"] == 3
    assert [s["iteration"] for s in hist2.steps] == [1, 2, 3]
    assert hist2[-1]["loss"] == full[-1]["loss"]
    assert [s["loss"] for s in hist2.steps] == [s["loss"] for s in full.steps]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_train_detector_log_format_and_device_argument(tmp_path):
    ds = ShapesDetection(2, image_size=160, seed=0)
    torch.manual_seed(0)
    model = create_ssdlite("xxs", num_classes=6, image_size=160)
    config = TrainConfig(epochs=1, batch_size=2, ema_momentum=None, verbose=False,
                         progress=False, out_dir=str(tmp_path), log_format="csv",
                         label_smoothing=0.0)
    hist = train_detector(model, ds, config, device="cpu")
    assert (tmp_path / "metrics.csv").is_file() and not (tmp_path / "metrics.json").exists()
    assert set(hist.steps[0]) == {"iteration", "lr", "loss", "loc_loss", "cls_loss"}
    assert next(model.parameters()).device.type == "cpu"


def test_network_modules_do_not_import_training_or_matplotlib():
    """Layering: building or evaluating a detector never imports the training loop or
    matplotlib; only ``detection.train`` imports ``mobilevit_edu.train``."""
    code = (
        "import sys\n"
        "import mobilevit_edu.detection.ssdlite\n"
        "import mobilevit_edu.detection\n"
        "from mobilevit_edu.detection import create_ssdlite, evaluate_detector, ssd_loss\n"
        "bad = [m for m in sys.modules if m == 'mobilevit_edu.train' or m.startswith("
        "('mobilevit_edu.train.', 'matplotlib'))]\n"
        "assert not bad, bad\n"
        "from mobilevit_edu.detection import train_detector\n"
        "assert 'mobilevit_edu.train.loop' in sys.modules\n"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- figures ------------------------------------------------------------------------------------


def test_plots_write_files(figures_in_tmp):
    s = shapes_samples(2)
    fig = plot_anchors(s[0].image, s[0].boxes, name="t_anchors")
    assert (figures_in_tmp / "t_anchors.png").exists() and len(fig.axes) == 7  # 6 maps + matches
    dets = [Detections(x.boxes, torch.full((len(x.boxes),), 0.9), x.labels) for x in s]
    plot_detections([x.image for x in s], dets, s, ["a", "b", "c", "d", "e"], name="t_preds")
    assert (figures_in_tmp / "t_preds.png").exists()
    from mobilevit_edu.train import History

    h = History([{"epoch": 1, "loss": 1.0}])
    h.steps = [{"iteration": i, "loss": 3 - i / 10, "loc_loss": 1.0, "cls_loss": 2 - i / 10}
               for i in range(1, 11)]
    plot_detector_training(h, {"mAP": {0: 0.0, 10: 0.2}}, name="t_train")
    assert (figures_in_tmp / "t_train.png").exists()
    with pytest.raises(ValueError, match="one Detections per image"):
        plot_detections([s[0].image], [], name="t_bad")
    # without name= nothing is written
    before = sorted(p.name for p in figures_in_tmp.iterdir())
    plot_anchors(s[0].image, s[0].boxes)
    plot_detections([x.image for x in s], dets)
    plot_detector_training(h)
    assert sorted(p.name for p in figures_in_tmp.iterdir()) == before


def test_train_detector_refuses_label_smoothing():
    model = create_ssdlite("xxs", num_classes=6, image_size=160)
    with pytest.raises(ValueError, match="detection task's loss has no label smoothing"):
        train_detector(model, ShapesDetection(4, image_size=160), TrainConfig(epochs=1))
