"""unfold / fold: the three implementations agree and fold inverts unfold (paper §3.1, Eq. 1)."""

import random

import pytest
import torch

from mobilevit_edu.nn.patches import (
    fold, fold_einops, fold_loop, patch_grid, unfold, unfold_einops, unfold_loop,
)


def random_shapes(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        ph, pw = rng.choice([1, 2, 3, 4]), rng.choice([1, 2, 3, 4])
        yield (rng.randint(1, 3), rng.randint(1, 5), ph * rng.randint(1, 5),
               pw * rng.randint(1, 5)), (ph, pw)


@pytest.mark.parametrize("shape,patch", list(random_shapes(40)))
def test_fold_inverts_unfold_exactly(shape, patch):
    x = torch.randn(shape)
    seq, grid = unfold(x, patch)
    assert seq.shape == (shape[0] * patch[0] * patch[1], grid.num_patches, shape[1])
    assert torch.equal(fold(seq, grid), x)
    assert torch.equal(fold_einops(unfold_einops(x, patch), grid), x)
    assert torch.equal(fold_loop(unfold_loop(x, patch), grid), x)


@pytest.mark.parametrize("shape,patch", list(random_shapes(25, seed=1)))
def test_three_versions_agree(shape, patch):
    x = torch.randn(shape)
    official, _ = unfold(x, patch)
    assert torch.equal(unfold_loop(x, patch), official)
    assert torch.equal(unfold_einops(x, patch), official)


def test_ordering_is_position_major():
    # a 1-channel 4x4 image whose values are their own raster index
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    seq, _ = unfold(x, 2)  # [B*P, N, C] = [4, 4, 1]
    # sequence p holds pixel (i, j) = divmod(p, 2) of every patch, patches in raster order
    assert seq[:, :, 0].tolist() == [[0, 2, 8, 10], [1, 3, 9, 11], [4, 6, 12, 14], [5, 7, 13, 15]]


def test_resize_path_for_odd_sizes():
    x = torch.randn(2, 3, 7, 9)
    seq, grid = unfold(x, 2)
    assert grid.resized and (grid.new_height, grid.new_width) == (8, 10)
    assert seq.shape == (2 * 4, 4 * 5, 3)
    back = fold(seq, grid)
    assert back.shape == x.shape
    # a constant map survives the bilinear round trip exactly; a random one does not
    c = torch.full((1, 2, 7, 7), 3.0)
    s, g = unfold(c, 2)
    assert torch.allclose(fold(s, g), c)
    assert not torch.allclose(back, x)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        unfold(torch.randn(3, 8, 8), 2)
    with pytest.raises(ValueError, match="patch size must be positive"):
        unfold(torch.randn(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="not divisible"):
        unfold_einops(torch.randn(1, 1, 7, 8), 2)
    grid = patch_grid(torch.randn(1, 2, 8, 8), 2)
    with pytest.raises(ValueError, match="expects"):
        fold(torch.randn(4, 15, 2), grid)
