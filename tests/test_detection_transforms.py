"""SSD's training augmentation (cvnets v0.1 ``SSDCroping``, ``PhotometricDistort``, flip, resize)
as property tests over many seeded random cases, against independent computations.

The images encode their own coordinates (channel 0 = x / 1000, channel 1 = y / 1000) and each
box's label is its index + 1, so a test can tell which pixels and which box ended where."""

from __future__ import annotations

import colorsys
import random

import numpy as np
import pytest
import torch

from mobilevit_edu.data.detection_transforms import (
    SSD_CROP_MODES,
    Compose,
    PhotometricDistort,
    PhotometricParams,
    RandomHorizontalFlip,
    Resize,
    SSDRandomCrop,
    hsv_to_rgb,
    rgb_to_hsv,
    ssd_eval_transform,
    ssd_train_transform,
)

CASES = 200


def coordinate_image(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs / 1000.0, ys / 1000.0, torch.full((h, w), 0.5)]).float()


def random_case(rng: random.Random, low: int = 20, high: int = 120):
    """An image encoding its coordinates, 1..8 integer boxes of positive area, labels = index + 1."""
    h, w = rng.randint(low, high), rng.randint(low, high)
    boxes = []
    for _ in range(rng.randint(1, 8)):
        x0, y0 = rng.randint(0, w - 2), rng.randint(0, h - 2)
        boxes.append([x0, y0, rng.randint(x0 + 1, w), rng.randint(y0 + 1, h)])
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return coordinate_image(h, w), boxes, torch.arange(1, len(boxes) + 1)


def iou(box, rect) -> float:
    ix = max(0.0, min(box[2], rect[2]) - max(box[0], rect[0]))
    iy = max(0.0, min(box[3], rect[3]) - max(box[1], rect[1]))
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (rect[2] - rect[0]) * (rect[3] - rect[1]) - inter
    return inter / union


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def origin(image: torch.Tensor) -> tuple[int, int]:
    """(x, y) in the original image of the output's top-left pixel (coordinate images only)."""
    return round(image[0, 0, 0].item() * 1000), round(image[1, 0, 0].item() * 1000)


# --- SSD random crop ------------------------------------------------------------------------------

def test_official_crop_constants():
    crop = SSDRandomCrop()
    assert SSD_CROP_MODES == (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    assert (crop.trials, crop.min_scale, crop.aspect_range) == (40, 0.3, (0.5, 2.0))


def test_ssd_crop_properties_over_random_cases():
    rng, crop = random.Random(0), SSDRandomCrop()
    modes_seen, cropped = set(), 0
    for case in range(CASES):
        image, boxes, labels = random_case(rng)
        h, w = image.shape[-2:]
        draw = crop.sample_crop(boxes, h, w, gen(case))
        out, out_boxes, out_labels = crop(image, boxes, labels, generator=gen(case))
        if draw is None:
            assert out is image and torch.equal(out_boxes, boxes) and torch.equal(out_labels, labels)
            continue
        cropped += 1
        modes_seen.add(draw.min_iou)
        left, top = origin(out)
        ch, cw = out.shape[-2:]
        rect = (left, top, left + cw, top + ch)
        assert rect == draw.rect
        assert torch.equal(out, image[:, top : top + ch, left : left + cw])
        # the crop's size and aspect bounds (w, h drawn in [0.3 W, W] x [0.3 H, H], then truncated)
        assert 0.3 * w - 1 < cw <= w and 0.3 * h - 1 < ch <= h
        assert 0.5 * (cw - 1) - 1 < ch < 2 * (cw + 1) + 1
        # the criterion: the largest IoU of an original box with the crop reaches the mode
        assert draw.min_iou in SSD_CROP_MODES[1:]
        assert max(iou(b, rect) for b in boxes.tolist()) >= draw.min_iou - 1e-6
        # kept boxes: exactly those whose centre is strictly inside, in order, clipped and shifted
        expected = [i for i, b in enumerate(boxes.tolist())
                    if rect[0] < (b[0] + b[2]) / 2 < rect[2] and rect[1] < (b[1] + b[3]) / 2 < rect[3]]
        assert out_labels.tolist() == [i + 1 for i in expected]
        for (x0, y0, x1, y1), label in zip(out_boxes.tolist(), out_labels.tolist()):
            b = boxes[label - 1].tolist()
            assert [x0, y0, x1, y1] == [max(b[0], left) - left, max(b[1], top) - top,
                                        min(b[2], rect[2]) - left, min(b[3], rect[3]) - top]
            assert 0 <= x0 < x1 <= cw and 0 <= y0 < y1 <= ch
    assert cropped > CASES // 2
    assert {0.1, 0.3, 0.5, 0.7} <= modes_seen  # 0.9 needs a crop close to a box: see below


def test_ssd_crop_uses_the_largest_iou_not_the_smallest():
    image = coordinate_image(100, 100)
    boxes = torch.tensor([[2.0, 2.0, 98.0, 98.0], [0.0, 0.0, 4.0, 4.0]])
    crop, found, modes = SSDRandomCrop(), 0, set()
    for seed in range(CASES):
        draw = crop.sample_crop(boxes, 100, 100, gen(seed))
        if draw is None:
            continue
        ious = [iou(b, draw.rect) for b in boxes.tolist()]
        assert max(ious) >= draw.min_iou - 1e-6
        found += min(ious) < draw.min_iou
        modes.add(draw.min_iou)
    assert found > 10  # accepted although the small box overlaps far less than the mode asks
    assert {0.1, 0.3, 0.5, 0.7, 0.9} <= modes


def test_ssd_crop_rejects_every_crop_that_misses_the_criterion():
    # a 4 x 4 box in 100 x 100: any crop has at least 30 x 30 pixels, so its IoU <= 16 / 900 < 0.1
    image, labels = coordinate_image(100, 100), torch.tensor([1])
    boxes = torch.tensor([[40.0, 40.0, 44.0, 44.0]])
    for seed in range(50):
        out, out_boxes, out_labels = SSDRandomCrop()(image, boxes, labels, generator=gen(seed))
        assert out is image and torch.equal(out_boxes, boxes)


def test_ssd_crop_without_boxes_and_bad_input():
    image = coordinate_image(30, 40)
    out, boxes, labels = SSDRandomCrop()(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert out is image and boxes.shape == (0, 4)
    with pytest.raises(TypeError, match="float tensor"):
        SSDRandomCrop()(image, torch.zeros(1, 4, dtype=torch.long), torch.ones(1, dtype=torch.long))
    with pytest.raises(ValueError, match="one label per box"):
        SSDRandomCrop()(image, torch.zeros(2, 4), torch.ones(1, dtype=torch.long))


def test_same_seed_same_crop_and_different_seeds_differ():
    image, boxes, labels = random_case(random.Random(3), 80, 120)
    t = ssd_train_transform(48)
    a, b = t(image, boxes, labels, generator=gen(7)), t(image, boxes, labels, generator=gen(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    draws = [SSDRandomCrop().sample_crop(boxes, *image.shape[-2:], gen(s)) for s in range(20)]
    rects = {None if d is None else d.rect for d in draws}
    assert len(rects) >= 10


# --- photometric distortion -----------------------------------------------------------------------

def reference_distort(pixel: list[float], params: PhotometricParams) -> list[float]:
    """v0.1's steps on one RGB pixel with Python's colorsys (no quantisation)."""
    x = list(pixel)
    if params.contrast is not None:
        x = [c * params.contrast for c in x]
    if params.brightness is not None:
        x = [c + params.brightness for c in x]
    x = [min(max(c, 0.0), 1.0) for c in x]
    if (params.saturation or 1.0) != 1.0 or (params.hue or 0) != 0:
        h, s, v = colorsys.rgb_to_hsv(*x)
        if params.saturation is not None:
            s = min(s * params.saturation, 1.0)
        if params.hue is not None:
            h = 0.0 if h > 359 / 360 else h  # OpenCV's 8-bit hue: 359..360 degrees round to 0
            h = max(h + params.hue / 180.0, 0.0) % 1.0
        x = list(colorsys.hsv_to_rgb(h, s, v))
    if params.contrast_after is not None:
        x = [min(max(c * params.contrast_after, 0.0), 1.0) for c in x]
    if params.permutation is not None:
        x = [x[i] for i in params.permutation]
    return x


def test_photometric_matches_an_independent_per_pixel_reference():
    distort = PhotometricDistort()
    g = gen(0)
    for case in range(60):
        image = torch.rand(3, 4, 5, generator=g, dtype=torch.float64)
        params = distort.sample_params(gen(case))
        out = distort.apply(image, params)
        want = [reference_distort(image[:, i, j].tolist(), params) for i in range(4) for j in range(5)]
        got = out.permute(1, 2, 0).reshape(-1, 3)  # [3, 4, 5] -> [20, 3]
        np.testing.assert_allclose(got.numpy(), np.array(want), atol=1e-9)


def test_photometric_hue_clips_below_zero_and_wraps_past_360():
    distort = PhotometricDistort()
    red = torch.tensor(colorsys.hsv_to_rgb(2 / 360, 1.0, 1.0), dtype=torch.float64)[:, None, None]
    magenta = torch.tensor(colorsys.hsv_to_rgb(355 / 360, 1.0, 1.0), dtype=torch.float64)[:, None, None]
    only_hue = PhotometricParams(None, None, None, -12, None, None)
    h = rgb_to_hsv(distort.apply(red, only_hue))[0].item()
    assert h == pytest.approx(0.0, abs=1e-9)  # 2 deg - 24 deg clipped at 0, as uint8 clipping does
    h = rgb_to_hsv(distort.apply(magenta, only_hue._replace(hue=12)))[0].item()
    assert h == pytest.approx(19 / 360, abs=1e-9)  # 355 deg + 24 deg wraps to 19 deg


def test_photometric_keeps_range_shape_and_dtype():
    distort, g = PhotometricDistort(), gen(1)
    for case in range(CASES):
        image = torch.rand(3, 6, 7, generator=g)
        out, boxes, labels = distort(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                     generator=gen(case))
        assert out.shape == image.shape and out.dtype == image.dtype
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_channel_shuffle_alone_permutes_the_channels():
    shuffle = PhotometricDistort(p=1.0, contrast=(1, 1), brightness=(0, 0), saturation=(1, 1), hue=(0, 0))
    image = torch.rand(3, 5, 5, generator=gen(2))
    seen = set()
    for case in range(CASES):
        out, _, _ = shuffle(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), generator=gen(case))
        perms = [p for p in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
                 if torch.equal(out, image[list(p)])]
        assert len(perms) == 1
        seen.add(perms[0])
    assert len(seen) == 6


def test_photometric_step_probabilities():
    distort, n = PhotometricDistort(), 4000
    draws = [distort.sample_params(gen(s)) for s in range(n)]
    for field in ("contrast", "brightness", "saturation", "hue", "permutation"):
        rate = sum(getattr(d, field) is not None for d in draws) / n
        assert abs(rate - 0.5) < 0.04, (field, rate)
    assert all(d.contrast is None for d in draws if d.contrast_after is not None)
    assert abs(sum(d.contrast_after is not None for d in draws) / n - 0.25) < 0.04
    assert {d.hue for d in draws if d.hue is not None} <= set(range(-12, 13))
    assert all(0.5 <= d.contrast <= 1.5 for d in draws if d.contrast is not None)
    assert all(-0.2 <= d.brightness <= 0.2 for d in draws if d.brightness is not None)


def test_photometric_in_bgr_order_is_the_mirror_of_rgb():
    rgb = torch.rand(3, 4, 4, generator=gen(5), dtype=torch.float64)
    for case in range(20):
        params = PhotometricDistort().sample_params(gen(case))._replace(permutation=None)
        a = PhotometricDistort().apply(rgb, params)
        b = PhotometricDistort(channels="bgr").apply(rgb.flip(0), params).flip(0)
        torch.testing.assert_close(a, b)


def test_hsv_round_trip_and_colorsys():
    x = torch.rand(3, 8, 8, generator=gen(6), dtype=torch.float64)
    x[:, 0, 0] = 0.0  # black
    x[:, 0, 1] = 0.7  # grey
    hsv = rgb_to_hsv(x)
    want = [colorsys.rgb_to_hsv(*x[:, i, j].tolist()) for i in range(8) for j in range(8)]
    got = hsv.permute(1, 2, 0).reshape(-1, 3)  # [3, 8, 8] -> [64, 3]
    np.testing.assert_allclose(got.numpy(), np.array(want), atol=1e-12)
    torch.testing.assert_close(hsv_to_rgb(hsv), x)


# --- flip, resize, pipelines ----------------------------------------------------------------------

def test_flip_twice_is_the_identity_and_moves_box_content():
    rng = random.Random(8)
    for case in range(CASES):
        image, boxes, labels = random_case(rng)
        w = image.shape[-1]
        once = RandomHorizontalFlip(p=1.0)(image, boxes, labels)
        twice = RandomHorizontalFlip(p=1.0)(*once)
        assert all(torch.equal(a, b) for a, b in zip(twice, (image, boxes, labels)))
        for (x0, y0, x1, y1), b in zip(once[1].tolist(), boxes.tolist()):
            assert (x0, x1) == (w - b[2], w - b[0])
            cols = once[0][0, int(y0), int(x0) : int(x1)] * 1000
            assert sorted(round(c) for c in cols.tolist()) == list(range(int(b[0]), int(b[2])))
    assert RandomHorizontalFlip(p=0.0)(image, boxes, labels)[0] is image
    flip = RandomHorizontalFlip()
    flips = sum(flip(image, boxes, labels, generator=gen(s))[0] is not image for s in range(400))
    assert abs(flips / 400 - 0.5) < 0.08


def cv2_linear(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` (float): half-pixel centres, clamped at the borders."""
    def axis(n_in, n_out):
        pos = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(pos).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, pos - i0
    y0, y1, fy = axis(src.shape[1], out_h)
    x0, x1, fx = axis(src.shape[2], out_w)
    rows = src[:, y0] * (1 - fy)[None, :, None] + src[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def test_resize_scales_boxes_and_matches_opencv_linear():
    image = torch.rand(3, 30, 50, generator=gen(9), dtype=torch.float64)
    boxes = torch.tensor([[5.0, 3.0, 25.0, 27.0], [0.0, 0.0, 50.0, 30.0]])
    for size in [(60, 100), (12, 20), (320, 320)]:
        out, out_boxes, _ = Resize(size)(image, boxes, torch.tensor([1, 2]))
        np.testing.assert_allclose(out.numpy(), cv2_linear(image.numpy(), *size), atol=1e-9)
        sx, sy = size[1] / 50, size[0] / 30
        torch.testing.assert_close(out_boxes, boxes * torch.tensor([sx, sy, sx, sy]))
    out, out_boxes, _ = ssd_eval_transform()(image.float(), boxes, torch.tensor([1, 2]))
    assert out.shape == (3, 320, 320)
    torch.testing.assert_close(out_boxes[1], torch.tensor([0.0, 0.0, 320.0, 320.0]))


def test_crop_and_flip_keep_labels_paired_with_their_pixels():
    rng, t = random.Random(10), Compose([SSDRandomCrop(), RandomHorizontalFlip()])
    for case in range(CASES):
        image, boxes, labels = random_case(rng)
        out, out_boxes, out_labels = t(image, boxes, labels, generator=gen(case))
        xs = (out[0] * 1000).round().long()
        ys = (out[1] * 1000).round().long()
        left, right = xs.min().item(), xs.max().item() + 1
        top, bottom = ys.min().item(), ys.max().item() + 1
        for (x0, y0, x1, y1), label in zip(out_boxes.tolist(), out_labels.tolist()):
            b = [int(v) for v in boxes[label - 1].tolist()]
            region_x = xs[int(y0) : int(y1), int(x0) : int(x1)].unique().tolist()
            region_y = ys[int(y0) : int(y1), int(x0) : int(x1)].unique().tolist()
            assert region_x == list(range(max(b[0], left), min(b[2], right)))
            assert region_y == list(range(max(b[1], top), min(b[3], bottom)))


def test_ssd_train_transform_over_random_cases():
    rng, t = random.Random(11), ssd_train_transform(64)
    assert [type(s).__name__ for s in t.transforms] == [
        "SSDRandomCrop", "PhotometricDistort", "RandomHorizontalFlip", "Resize"]
    for case in range(CASES):
        image, boxes, labels = random_case(rng)
        out, out_boxes, out_labels = t(image, boxes, labels, generator=gen(case))
        assert out.shape == (3, 64, 64) and out.min() >= 0 and out.max() <= 1
        assert len(out_labels) >= 1 and out_labels.tolist() == sorted(set(out_labels.tolist()))
        assert set(out_labels.tolist()) <= set(labels.tolist())
        assert (out_boxes >= 0).all() and (out_boxes <= 64 + 1e-4).all()
        assert (out_boxes[:, 2:] > out_boxes[:, :2]).all()
