"""DeepLabv3's training augmentation (cvnets v0.1 ``RandomResize``, ``RandomCrop``, flip) as
property tests over many seeded random cases.

The images carry their mask (channel 0 = mask / 255, channel 1 = 1 on real pixels, 0 on padding)
or their coordinates, so a test can check that image and mask moved together, against
independent OpenCV-style nearest and bilinear resizes written here in NumPy."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilevit_edu.data.segmentation_transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShortSideResize,
    Resize,
    deeplab_eval_transform,
    deeplab_train_transform,
    short_side_size,
)

CASES = 200
CLASSES = list(range(21)) + [255]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def block_mask(rng: random.Random, h: int, w: int, block: int = 8) -> torch.Tensor:
    """Constant blocks of ``block`` pixels or more (a partial last block joins the one before),
    labels from 0..20 and 255."""
    rows, cols = max(1, h // block), max(1, w // block)
    labels = torch.tensor([[rng.choice(CLASSES) for _ in range(cols)] for _ in range(rows)])
    ys = (torch.arange(h) // block).clamp(max=rows - 1)
    xs = (torch.arange(w) // block).clamp(max=cols - 1)
    return labels[ys][:, xs].long()


def mask_image(mask: torch.Tensor) -> torch.Tensor:
    """Channel 0 = mask / 255, channel 1 = 1 (a real pixel), channel 2 = 0.5."""
    return torch.stack([mask / 255.0, torch.ones(mask.shape), torch.full(mask.shape, 0.5)]).float()


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """Channel 0 = (x + 1) / 1000, channel 1 = (y + 1) / 1000, channel 2 = 1 (0 on padding)."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([(xs + 1) / 1000.0, (ys + 1) / 1000.0, torch.ones(h, w)]).float()


def cv2_nearest(mask: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """OpenCV ``INTER_NEAREST``: source index ``floor(i * in / out)``, the ratio in float32 as
    torch rounds it (OpenCV's double can differ only where ``i * in / out`` is an integer)."""
    def index(n_in, n_out):
        ratio = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * ratio).astype(int), n_in - 1)
    return mask[index(mask.shape[0], out_h)][:, index(mask.shape[1], out_w)]


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


def assert_image_and_mask_agree(image: torch.Tensor, mask: torch.Tensor, radius: int = 3) -> float:
    """Away from label borders (the mask constant within ``radius``) and from the crop's edges
    (a crop cuts the neighbours a bilinear pixel was mixed from), channel 0 * 255 is the mask
    value; on padding (channel 1 = 0) the mask is 255. Returns the share of pixels checked."""
    edge = torch.zeros(mask.shape, dtype=torch.float64)  # 1 on both pixels of a label change
    dx, dy = mask[:, 1:] != mask[:, :-1], mask[1:] != mask[:-1]
    edge[:, 1:] += dx
    edge[:, :-1] += dx
    edge[1:] += dy
    edge[:-1] += dy
    k = 2 * radius + 1  # edges within the k x k window, from an integral image
    c = F.pad(edge, (radius + 1, radius, radius + 1, radius)).cumsum(0).cumsum(1)
    near_edge = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) > 0
    real = image[1] > 0.5
    assert (mask[~real] == 255).all(), "a padded pixel got a class"
    inner = torch.zeros_like(real)
    inner[radius:-radius, radius:-radius] = True
    flat = ~near_edge & real & inner
    err = (image[0] * 255 - mask.float()).abs()[flat]
    assert err.numel() == 0 or err.max() < 1e-3, f"image and mask disagree by {err.max():.3f}"
    return flat.float().mean().item()


# --- random short-side resize ---------------------------------------------------------------------

def test_short_side_resize_matches_opencv_over_random_cases():
    rng, t = random.Random(0), RandomShortSideResize(8, 48)
    for case in range(CASES):
        h, w = rng.randint(10, 40), rng.randint(10, 40)
        mask = torch.tensor(np.array([[rng.choice(CLASSES) for _ in range(w)] for _ in range(h)]))
        image = torch.rand(3, h, w, generator=gen(case), dtype=torch.float64)
        out, out_mask = t(image, mask, generator=gen(case))
        size = torch.randint(8, 49, (1,), generator=gen(case)).item()  # the transform's one draw
        oh, ow = out.shape[-2:]
        assert min(oh, ow) == size
        assert (oh, ow) == ((h, w) if min(h, w) == size else short_side_size(h, w, size))
        assert max(oh, ow) == (int(size * max(h, w) / min(h, w)) if h != w else size)
        assert np.array_equal(out_mask.numpy(), cv2_nearest(mask.numpy(), oh, ow))
        np.testing.assert_allclose(out.numpy(), cv2_linear(image.numpy(), oh, ow), atol=1e-9)
        assert out_mask.dtype == torch.long
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())


def test_short_side_is_drawn_over_the_whole_integer_range():
    image, mask = torch.rand(3, 10, 13), torch.zeros(10, 13, dtype=torch.long)
    sides = {RandomShortSideResize(5, 8)(image, mask, generator=gen(s))[0].shape[-2] for s in range(CASES)}
    assert sides == {5, 6, 7, 8}
    assert (RandomShortSideResize().min_size, RandomShortSideResize().max_size) == (256, 1024)


# --- random crop ----------------------------------------------------------------------------------

@pytest.mark.parametrize("crop", [(16, 16), (12, 20)])
def test_random_crop_with_padding_over_random_cases(crop):
    rng, t = random.Random(1), RandomCrop(crop, resize_if_needed=False)
    th, tw = crop
    for case in range(CASES):
        h, w = rng.randint(5, 40), rng.randint(5, 40)
        mask = torch.tensor(np.array([[rng.choice(CLASSES) for _ in range(w)] for _ in range(h)]))
        out, out_mask = t(coordinate_image(h, w), mask, generator=gen(case))
        assert out.shape == (3, th, tw) and out_mask.shape == (th, tw)
        left, top = round(out[0, 0, 0].item() * 1000) - 1, round(out[1, 0, 0].item() * 1000) - 1
        assert 0 <= top <= max(h - th, 0) and 0 <= left <= max(w - tw, 0)
        ref_mask = np.full((max(h, th), max(w, tw)), 255)  # padded at the bottom and right
        ref_mask[:h, :w] = mask.numpy()
        ref_image = np.zeros((3, max(h, th), max(w, tw)), dtype=np.float32)
        ref_image[:, :h, :w] = coordinate_image(h, w).numpy()
        assert np.array_equal(out_mask.numpy(), ref_mask[top : top + th, left : left + tw])
        assert np.array_equal(out.numpy(), ref_image[:, top : top + th, left : left + tw])


def test_random_crop_resizes_small_images_as_the_yaml_asks():
    rng, t = random.Random(2), RandomCrop(32)  # resize_if_needed=True, as the official yaml
    for case in range(CASES):
        h, w = rng.randint(8, 60), rng.randint(8, 60)
        mask = block_mask(rng, h, w, block=4)
        out, out_mask = t(mask_image(mask), mask, generator=gen(case))
        assert out.shape == (3, 32, 32) and out_mask.shape == (32, 32)
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # nothing padded
        assert (out[1] > 0.5).all()
        if min(h, w) >= 32:  # large enough: a plain window of the original
            assert any(torch.equal(out_mask, mask[i : i + 32, j : j + 32])
                       for i in range(h - 31) for j in range(w - 31))


def test_flip_twice_is_the_identity_and_moves_image_and_mask_together():
    rng = random.Random(3)
    for case in range(CASES):
        mask = block_mask(rng, rng.randint(4, 30), rng.randint(4, 30), block=2)
        image = mask_image(mask)
        a, b = RandomHorizontalFlip(p=1.0)(image, mask)
        torch.testing.assert_close(a[0] * 255, b.float(), atol=1e-4, rtol=0)
        assert torch.equal(b, mask.flip(-1))
        a2, b2 = RandomHorizontalFlip(p=1.0)(a, b)
        assert torch.equal(a2, image) and torch.equal(b2, mask)


# --- the pipelines --------------------------------------------------------------------------------

@pytest.mark.parametrize("resize_if_needed", [True, False])
def test_image_and_mask_move_together_through_the_pipeline(resize_if_needed):
    rng = random.Random(4 + resize_if_needed)
    t = Compose([RandomShortSideResize(24, 64), RandomCrop(32, resize_if_needed=resize_if_needed),
                 RandomHorizontalFlip()])
    checked = []
    for case in range(CASES):
        mask = block_mask(rng, rng.randint(32, 48), rng.randint(32, 48), block=12)
        out, out_mask = t(mask_image(mask), mask, generator=gen(case))
        assert out.shape == (3, 32, 32) and out_mask.shape == (32, 32) and out_mask.dtype == torch.long
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist()) | {255}
        checked.append(assert_image_and_mask_agree(out, out_mask))
    assert np.mean(checked) > 0.2  # not a vacuous check: about 0.3 of the pixels are compared


def test_official_pipeline_sizes_and_determinism():
    rng, t = random.Random(6), deeplab_train_transform()
    assert [type(s).__name__ for s in t.transforms] == [
        "RandomShortSideResize", "RandomCrop", "RandomHorizontalFlip"]
    for case, (h, w) in enumerate([(60, 90), (375, 500), (500, 333), (80, 60)]):
        mask = block_mask(rng, h, w, block=16)
        out, out_mask = t(mask_image(mask), mask, generator=gen(case))
        assert out.shape == (3, 512, 512) and out_mask.shape == (512, 512)
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())
        assert_image_and_mask_agree(out, out_mask, radius=20)  # up to 17x upscaling
        again = t(mask_image(mask), mask, generator=gen(case))
        assert torch.equal(again[0], out) and torch.equal(again[1], out_mask)
    image, mask = coordinate_image(40, 50), torch.zeros(40, 50, dtype=torch.long)
    crop = Compose([RandomCrop(16, resize_if_needed=False)])
    origins = {tuple(crop(image, mask, generator=gen(s))[0][:2, 0, 0].tolist()) for s in range(20)}
    assert len(origins) >= 10


def test_eval_transform_resizes_the_image_and_optionally_the_mask():
    mask = block_mask(random.Random(7), 375, 500, block=25)
    out, out_mask = deeplab_eval_transform()(mask_image(mask), mask)
    assert out.shape == (3, 512, 512)
    assert np.array_equal(out_mask.numpy(), cv2_nearest(mask.numpy(), 512, 512))
    out, same = deeplab_eval_transform(resize_mask=False)(mask_image(mask), mask)
    assert out.shape == (3, 512, 512) and same is mask
    out, out_mask = Resize(100)(mask_image(mask), mask)
    assert out.shape == (3, 100, 133) and out_mask.shape == (100, 133)


def test_clear_errors():
    image = torch.rand(3, 8, 8)
    with pytest.raises(TypeError, match="mask.long"):
        RandomCrop(4)(image, torch.zeros(8, 8))
    with pytest.raises(TypeError, match="mask must be"):
        RandomHorizontalFlip()(image, torch.zeros(8, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="min_size"):
        RandomShortSideResize(10, 5)
