"""Data: the shapes data set, the CIFAR-10 and ImageFolder loaders (on fixtures written in the
real formats), the augmentations."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch

from mobilevit_edu.data import (
    CIFAR10,
    PALETTE,
    SHAPES,
    TASKS,
    CenterCrop,
    Compose,
    ImageFolder,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ShapesDataset,
    eval_transform,
    train_transform,
    transform_at_size,
)

# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
def test_shapes_basic_contract(task):
    ds = ShapesDataset(30, task, image_size=48, seed=3)
    assert len(ds) == 30 and ds.num_classes == len(ds.classes)
    x, y = ds[7]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert isinstance(y, int) and 0 <= y < ds.num_classes
    x2, y2 = ds[(96, 80, 7)]
    assert x2.shape == (3, 96, 80) and y2 == y
    # deterministic from (seed, index): a new object gives the same pixels
    assert torch.equal(ShapesDataset(30, task, 48, seed=3)[7][0], x)
    assert not torch.equal(ShapesDataset(30, task, 48, seed=4)[7][0], x)
    assert not torch.equal(ds[8][0], x)
    # labels are exactly balanced
    labels = [ds.label(i) for i in range(len(ds))]
    assert labels == [ds[i][1] for i in range(len(ds))]
    counts = np.bincount(labels, minlength=ds.num_classes)
    assert counts.max() - counts.min() <= 1
    with pytest.raises(IndexError):
        ds[30]
    assert torch.equal(ds[-1][0], ds[29][0])


def test_bad_task_lists_valid_tasks():
    with pytest.raises(ValueError, match="shape.*same_colour"):
        ShapesDataset(10, task="colour_of_sky")


def test_same_scene_at_every_resolution():
    ds = ShapesDataset(5, "shape", seed=0)
    lo = ds[(64, 64, 2)][0]
    hi = ds[(256, 256, 2)][0]
    # area-averaging the high-resolution render gives (almost) the low-resolution one
    pooled = torch.nn.functional.avg_pool2d(hi[None], 4)[0]
    assert (pooled - lo).abs().mean() < 0.01
    # boxes scale with the resolution; masks agree on the object
    a, b = ds.render(2, 64, 64), ds.render(2, 256, 256)
    assert torch.allclose(a.boxes * 4, b.boxes, atol=1e-3)
    assert a.box_labels.tolist() == b.box_labels.tolist()
    assert a.mask.unique().tolist() == b.mask.unique().tolist()


def test_antialiased_edges():
    s = ShapesDataset(1, "shape", image_size=64).render(0)
    # the object's edge has intermediate values: not a hard 0/1 mask blend
    scene = ShapesDataset(1, "shape").scene(0)
    main = scene.objects[-1]
    rgb = torch.tensor(main.rgb)[:, None, None]
    dist = (s.image - rgb).abs().sum(0)  # [H, W]
    inside = s.mask == main.label + 1
    assert dist[inside].median() < 0.05  # the inside is the object's colour
    # pixels on the boundary are mixtures
    border = inside ^ torch.nn.functional.max_pool2d(inside[None, None].float(), 3, 1, 1)[0, 0].bool()
    assert (dist[border] > 0.05).float().mean() > 0.5


def test_labels_boxes_masks_consistent():
    ds = ShapesDataset(20, "shape", seed=1)
    checked = 0
    for i in range(20):
        s = ds.render(i, 64, 64)
        scene = ds.scene(i)
        assert s.label == SHAPES.index(scene.objects[-1].shape) == i % len(SHAPES)
        assert s.boxes.shape == (len(scene.objects), 4) and s.mask.shape == (64, 64)
        x0, y0, x1, y1 = s.boxes[-1].tolist()
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        if any(o.shape == scene.objects[-1].shape for o in scene.objects[:-1]):
            continue  # a distractor of the same shape shares the mask value
        checked += 1
        ys, xs = torch.nonzero(s.mask == s.label + 1, as_tuple=True)
        # the largest object is on top and its mask lies inside its box (1 px slack)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1
    assert checked >= 10


def test_same_colour_objects_far_apart_and_label():
    ds = ShapesDataset(200, "same_colour", seed=0)
    for i in range(200):
        sc = ds.scene(i)
        a, b = sc.objects
        assert (a.colour == b.colour) == (sc.label == 1)
        assert a.colour in PALETTE and b.colour in PALETTE
        # in opposite thirds along at least one axis
        assert max(abs(a.cx - b.cx), abs(a.cy - b.cy)) >= 0.4
    # colours alone carry no information about the label: each colour appears in both classes
    same = {o.colour for i in range(200) for o in ds.scene(i).objects if ds.label(i) == 1}
    diff = {o.colour for i in range(200) for o in ds.scene(i).objects if ds.label(i) == 0}
    assert same == diff == set(PALETTE)


def test_shapes_fast_enough():
    ds = ShapesDataset(500, "shape", image_size=64)
    t = time.perf_counter()
    for i in range(500):
        ds[i]
    assert time.perf_counter() - t < 5.0  # ~0.4 ms per image on one core


def test_cache_and_transform():
    ds = ShapesDataset(4, "shape", 32, cache=True, transform=RandomHorizontalFlip(p=1.0))
    plain = ShapesDataset(4, "shape", 32)
    assert torch.equal(ds[1][0], plain[1][0].flip(-1))
    assert torch.equal(ds[1][0], ds[1][0])


# --- augmentations --------------------------------------------------------------------------------


def test_random_resized_crop_deterministic_with_generator():
    img = torch.rand(3, 50, 70)
    t = RandomResizedCrop(24)
    a = t(img, generator=torch.Generator().manual_seed(0))
    b = t(img, generator=torch.Generator().manual_seed(0))
    c = t(img, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    assert t.scale == (0.08, 1.0) and t.ratio == pytest.approx((0.75, 4 / 3))
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = t.get_params(50, 70, g)
        assert 0 <= top and top + h <= 50 and 0 <= left and left + w <= 70
        assert 0.08 * 3500 * 0.8 <= h * w <= 3500
    # scale=(1, 1) with the image's own aspect ratio: the whole image, unchanged
    full = RandomResizedCrop((50, 70), scale=(1.0, 1.0), ratio=(1.4, 1.4))
    assert torch.allclose(full(img), img)


def test_flip_resize_centercrop_compose():
    img = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)[0]  # [3, 4, 6]
    assert torch.equal(RandomHorizontalFlip(1.0)(img), img.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(img), img)
    assert Resize(8)(img).shape == (3, 8, 12)  # shorter side to 8
    assert Resize((5, 5))(img).shape == (3, 5, 5)
    assert torch.equal(CenterCrop((2, 2))(img), img[:, 1:3, 2:4])
    assert CenterCrop(8)(img).shape == (3, 8, 8)  # pads when too small
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    t = train_transform(16)
    assert torch.equal(t(img, generator=g1), t(img, generator=g2))
    e = eval_transform(256)
    assert [type(x).__name__ for x in e.transforms] == ["Resize", "CenterCrop"] and e.transforms[0].size == 288
    e2 = transform_at_size(e, (128, 128))
    assert e2.transforms[0].size == 144 and e2.transforms[1].size == (128, 128)
    assert e.transforms[0].size == 288  # the original is untouched
    assert transform_at_size(t, (40, 30)).transforms[0].size == (40, 30)
    with pytest.raises(TypeError, match="float tensor"):
        Resize(4)(torch.zeros(3, 4, 4, dtype=torch.uint8))


# --- CIFAR-10 fixtures in the real format ---------------------------------------------------------


def _write_cifar(root, n_per_batch=4):
    rng = np.random.default_rng(0)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    written = {}
    for k, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        batch = {b"batch_label": f"batch {k}".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{k}_{j}.png".encode() for j in range(n_per_batch)]}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (data, labels)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}, f)
    return written


def test_cifar10_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = _write_cifar(folder)
    train = CIFAR10(tmp_path, train=True)  # the parent folder works too
    test = CIFAR10(folder, train=False)
    assert len(train) == 20 and len(test) == 4
    assert train.classes[0] == "airplane" and train.num_classes == 10
    data, labels = written["data_batch_2"]
    x, y = train[4 + 1]  # second image of the second batch
    expected = torch.from_numpy(data[1].reshape(3, 32, 32)).float() / 255  # R, G, B planes
    assert torch.equal(x, expected) and y == labels[1]
    x, y = test[3]
    assert torch.equal(x, torch.from_numpy(written["test_batch"][0][3].reshape(3, 32, 32)).float() / 255)
    assert test[(64, 48, 3)][0].shape == (3, 64, 48)
    flip = CIFAR10(folder, train=False, transform=RandomHorizontalFlip(1.0))
    assert torch.equal(flip[0][0], test[0][0].flip(-1))


def test_cifar10_missing_file_is_named(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.*cs.toronto.edu"):
        CIFAR10(tmp_path)
    CIFAR10(tmp_path, train=False)  # the test split is still complete
    (tmp_path / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match="batches.meta"):
        CIFAR10(tmp_path, train=False)


# --- ImageFolder fixtures ---------------------------------------------------------------------------


def test_image_folder_round_trip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    arrays = {}
    for cls in ("zebra", "apple"):  # sorted -> apple = 0, zebra = 1
        (tmp_path / cls).mkdir()
        for j in range(2):
            arr = rng.integers(0, 256, (20 + j, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{j}.png")
            arrays[(cls, j)] = arr
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "apple" / "x.jpg", quality=95)
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, image_size=16)
    assert ds.classes == ["apple", "zebra"] and len(ds) == 5
    assert [t for _, t in ds.samples] == [0, 0, 0, 1, 1]
    raw = ds.load(3)  # zebra/0.png, lossless
    assert torch.equal(raw, torch.from_numpy(arrays[("zebra", 0)]).permute(2, 0, 1).float() / 255)
    jpg = ds.load(2)
    assert (jpg - 200 / 255).abs().max() < 3 / 255
    x, y = ds[3]
    assert x.shape == (3, 16, 16) and y == 1
    assert ds[(24, 12, 0)][0].shape == (3, 24, 12)
    ds_aug = ImageFolder(tmp_path, image_size=16, transform=train_transform(16))
    assert ds_aug[(32, 32, 1)][0].shape == (3, 32, 32)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "cats").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageFolder(tmp_path)


def test_compose_passes_generator_and_plain_callables():
    img = torch.rand(3, 10, 10)
    t = Compose([RandomHorizontalFlip(0.5), lambda x: x * 2])
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(t(img, generator=g1), t(img, generator=g2))
    assert t(img).max() > 1.0


def test_plots_save_figures(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.data import plot_augmentations, plot_shapes_gallery

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    fig = plot_shapes_gallery(ShapesDataset(4, "same_colour"), n=4, size=32, name="t_gallery")
    assert len(fig.axes) == 8
    fig2 = plot_augmentations(torch.rand(3, 40, 40), train_transform(24), n=3, name="t_aug")
    assert len(fig2.axes) == 4 and fig2.axes[1].images[0].get_array().shape == (24, 24, 3)
    assert (tmp_path / "t_gallery.png").exists() and (tmp_path / "t_aug.png").exists()
    plot_shapes_gallery(ShapesDataset(2, "shape"), n=2, size=16)  # no name: nothing is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t_aug.png", "t_gallery.png"]
    plt.close("all")


# --- the public helpers other loaders share; photographs; the layer rule ------------------------


def test_parse_key_and_resize_image_are_public_and_shared():
    from mobilevit_edu.data.shapes import parse_key
    from mobilevit_edu.data.transforms import resize_image

    assert parse_key(3, (64, 48), 10) == ((64, 48), 3)
    assert parse_key((32, 40, 2), (64, 48), 10) == ((32, 40), 2)
    assert parse_key(-1, (8, 8), 10) == ((8, 8), 9)
    with pytest.raises(IndexError, match="out of range"):
        parse_key(10, (8, 8), 10)
    with pytest.raises(TypeError, match=r"\(h, w, i\)"):
        parse_key((1, 2), (8, 8), 10)
    img = torch.rand(3, 20, 30)
    assert resize_image(img, (20, 30)) is img  # already that size: untouched
    assert resize_image(img, (10, 12)).shape == (3, 10, 12)
    assert resize_image(torch.rand(1, 8, 8), (4, 4)).shape == (1, 4, 4)  # any channel count


def test_package_re_exports_the_submodules_names():
    import mobilevit_edu.data as data
    from mobilevit_edu.data import readers, shapes, transforms

    for module in (shapes, transforms, readers):
        for name in module.__all__:
            if name != "Size":
                assert getattr(data, name) is getattr(module, name), name
    assert data.load_rgb is readers.load_rgb


def test_photo_batch_is_a_deterministic_batch_of_real_crops():
    from mobilevit_edu.data.photos import photo_batch, sample_photo, sample_photo_path

    a, b = photo_batch(3, 64, seed=1), photo_batch(3, 64, seed=1)
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.05
    assert not torch.equal(a[0], a[1])  # different crops
    assert sample_photo(32).shape == (3, 32, 32) and sample_photo_path().suffix == ".jpg"


def test_the_data_layer_never_imports_matplotlib():
    import subprocess
    import sys

    code = ("import sys, mobilevit_edu.data, mobilevit_edu.data.sampler, mobilevit_edu.data.photos; "
            "mobilevit_edu.data.photos.sample_photo(16); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
