"""Classification evaluation (mobilevit_edu.evaluate.classify / .origins): top-1 / top-5 on a
tiny ImageFolder tree in ImageNet's real layout (synset folders, non-square images), checked
against counts computed here from the model's logits; the channel order of each weights' origin
reaching the network; the preprocessing equal to ``official_preprocess`` (cvnets v0.1 / Hugging
Face), to timm's resize-and-crop and to the book's ``eval_transform``; the size and layout read
off a checkpoint file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import calibrate_random_batchnorm
from mobilevit_edu import create_model
from mobilevit_edu.data.readers import ImageFolder, load_rgb
from mobilevit_edu.data.transforms import eval_transform
from mobilevit_edu.evaluate.classify import (
    ClassCountError, evaluate_imagenet, load_classifier, spread_indices, topk_hits,
)
from mobilevit_edu.evaluate.origins import ORIGINS, preprocessing_for
from mobilevit_edu.models.checkpoints import (
    CheckpointError, from_ours, official_preprocess, save_checkpoint,
)

SYNSETS = ("n01440764", "n01443537", "n01484850")  # the first three ImageNet-1k classes


def write_tree(root, classes, per_class, seed=0, colours=None):
    """``root/<synset>/ILSVRC2012_val_<n>.png``: non-square images, random or one colour per
    class; folders are created in reverse order (labels must come from sorting)."""
    rng = np.random.default_rng(seed)
    n = 0
    for label in reversed(range(len(classes))):
        folder = root / classes[label]
        folder.mkdir(parents=True)
        for _ in range(per_class):
            h, w = int(rng.integers(40, 80)), int(rng.integers(81, 120))
            if rng.random() < 0.5:
                h, w = w, h  # portrait and landscape
            if colours is None:  # a random colour per image, plus noise
                base = rng.integers(0, 256, 3)
                noise = rng.integers(-60, 61, (h, w, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            else:
                pixels = np.broadcast_to(np.array(colours[label], np.uint8), (h, w, 3)).copy()
            n += 1
            Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{n:08d}.png")
    return root


def files_and_labels(root, classes):
    files = sorted(root.rglob("*.png"))
    return files, [classes.index(f.parent.name) for f in files]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imagenet") / "val", SYNSETS, 4)


@pytest.fixture(scope="module")
def model3():
    torch.manual_seed(0)
    model = create_model("mobilevit_xxs", num_classes=3)
    calibrate_random_batchnorm(model, torch.rand(8, 3, 32, 32))
    return model.eval()


def test_image_folder_labels_are_the_sorted_synsets(tree):
    ds = ImageFolder(tree)
    assert ds.classes == list(SYNSETS)
    files, labels = files_and_labels(tree, SYNSETS)
    assert sorted((p, t) for p, t in ds.samples) == sorted(zip(files, labels))


def test_top1_matches_a_count_from_the_logits(tree, model3):
    pre = preprocessing_for("hf", image_size=32)  # BGR, shorter side 64, crop 32
    result = evaluate_imagenet(model3, tree, preprocessing=pre, batch_size=5, device="cpu",
                               progress=False)
    files, labels = files_and_labels(tree, SYNSETS)
    with torch.no_grad():  # independently: PIL -> official_preprocess, one batch
        logits = model3(torch.stack([official_preprocess(Image.open(f), 64, 32) for f in files]))
    hits = int((logits.argmax(1) == torch.tensor(labels)).sum())
    assert 0 < hits < len(files)  # the model's answers depend on the images
    assert result["images"] == 12 and result["classes"] == 3
    assert result["top1"] == hits / 12
    assert result["top5_k"] == 3 and result["top5"] == 1.0  # top-5 of 3 classes: all of them


def test_top5_matches_a_count_of_ranks(tmp_path):
    classes = tuple(f"n0{k:07d}" for k in range(7))
    root = write_tree(tmp_path / "val", classes, 2, seed=3)
    torch.manual_seed(1)
    model = create_model("mobilevit_xxs", num_classes=7)
    calibrate_random_batchnorm(model, torch.rand(8, 3, 32, 32))
    model.eval()
    pre = preprocessing_for("ours", image_size=32)
    result = evaluate_imagenet(model, root, preprocessing=pre, batch_size=4, device="cpu",
                               progress=False)
    files, labels = files_and_labels(root, classes)
    with torch.no_grad():
        x = torch.stack([eval_transform(32)(load_rgb(f)) for f in files])  # the book's RGB pipeline
        logits = model(x)
    rank = torch.tensor([int((row > row[t]).sum()) for row, t in zip(logits, labels)])
    assert result["top1"] == int((rank == 0).sum()) / 14
    assert result["top5"] == int((rank < 5).sum()) / 14
    assert result["top5"] < 1.0 or result["top1"] < result["top5"]


def test_topk_hits_on_random_logits():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        b, c = int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g))
        logits = torch.randn(b, c, generator=g)
        targets = torch.randint(0, c, (b,), generator=g)
        order = np.argsort(-logits.numpy(), axis=1, kind="stable")
        position = np.array([list(order[i]).index(int(targets[i])) for i in range(b)])
        assert topk_hits(logits, targets, 5) == (int((position == 0).sum()),
                                                 int((position < min(5, c)).sum()))


def test_spread_indices_cover_the_folder_evenly():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 500))
        limit = int(rng.integers(1, 600))
        idx = spread_indices(n, limit)
        assert idx == sorted(set(idx)) and len(idx) == min(n, limit)
        assert idx[0] == 0 and idx[-1] < n
        if limit < n:  # gaps differ by at most one step
            gaps = np.diff(idx + [n])
            assert gaps.max() - gaps.min() <= 1
    assert spread_indices(5, None) == [0, 1, 2, 3, 4]


class Channel0(nn.Module):
    """Logits that read channel 0 only: class 0 if it is bright, class 1 if it is dark."""

    num_classes = 3

    def forward(self, x):
        m = x[:, 0].mean((1, 2))  # [B, 3, H, W] -> [B]
        return torch.stack([m - 0.5, 0.5 - m, torch.full_like(m, -1.0)], 1)  # [B, 3]


@pytest.mark.parametrize("layout, channels, correct", [
    ("hf", None, 0), ("cvnets", None, 0), ("timm", "bgr", 0),  # BGR: red reads dark, blue bright
    ("ours", None, 8), ("timm", None, 8), ("hf", "rgb", 8),  # RGB: red -> 0, blue -> 1, green -> 1
])
def test_the_channel_order_reaches_the_model(tmp_path, layout, channels, correct):
    red, blue, green = (230, 20, 20), (20, 20, 230), (20, 230, 20)
    root = write_tree(tmp_path / "val", SYNSETS, 4, colours=(red, blue, green))
    pre = preprocessing_for(layout, channels=channels, image_size=32)
    assert pre.channels == (channels or ("bgr" if layout in ("hf", "cvnets") else "rgb"))
    result = evaluate_imagenet(Channel0(), root, preprocessing=pre, batch_size=5, device="cpu",
                               progress=False)
    assert result["top1"] == correct / 12


def _random_images(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = int(rng.integers(257, 420)), int(rng.integers(257, 420))
        yield Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_cvnets_and_hf_preprocessing_is_official_preprocess(tmp_path):
    for k, image in enumerate(_random_images(4)):
        expected = official_preprocess(image)  # BGR, 288, 256
        for layout in ("hf", "cvnets"):
            assert torch.equal(preprocessing_for(layout)(image), expected)
        assert torch.equal(preprocessing_for("hf", channels="rgb")(image), expected.flip(0))
        assert torch.equal(preprocessing_for("hf", image_size=64)(image),
                           official_preprocess(image, 96, 64))
        # from the file, as ImageFolder reads it (float RGB), and as a uint8 array
        image.save(tmp_path / f"{k}.png")
        assert torch.equal(preprocessing_for("hf")(load_rgb(tmp_path / f"{k}.png")), expected)
        assert torch.equal(preprocessing_for("hf")(np.asarray(image)), expected)


def test_timm_preprocessing_crops_as_torchvision():
    pre = ORIGINS["timm"]
    assert (pre.resize, pre.crop, pre.interpolation, pre.channels) == (284, 256, "bicubic", "rgb")
    rng = np.random.default_rng(0)
    for w in (284, 301, 303, 310):  # shorter side already 284: no resampling, only the crop
        pixels = rng.integers(0, 256, (284, w, 3), dtype=np.uint8)
        left = int(round((w - 256) / 2.0))  # torchvision: round half to even (303 -> 24, not 23)
        expected = torch.from_numpy(pixels[14:270, left:left + 256] / 255.0).float().permute(2, 0, 1)
        assert torch.allclose(pre(Image.fromarray(pixels)), expected, atol=1e-7)
        assert torch.allclose(preprocessing_for("timm", channels="bgr")(Image.fromarray(pixels)),
                              expected.flip(0), atol=1e-7)
    big = next(_random_images(1, seed=5))
    out = pre(big)
    assert out.shape == (3, 256, 256) and 0 <= out.min() and out.max() <= 1
    assert preprocessing_for("timm", image_size=64).resize == 71  # floor(64 / 0.9)


def test_ours_preprocessing_is_the_books_eval_transform(tmp_path):
    for k, image in enumerate(_random_images(3, seed=2)):
        image.save(tmp_path / f"{k}.png")
        x = load_rgb(tmp_path / f"{k}.png")
        assert torch.equal(preprocessing_for("ours")(x), eval_transform(256)(x))
    with pytest.raises(ValueError, match="layout"):
        preprocessing_for("onnx")


@pytest.fixture(scope="module")
def xs5():
    torch.manual_seed(2)
    source = create_model("mobilevit_xs", num_classes=5)
    calibrate_random_batchnorm(source, torch.rand(4, 3, 32, 32))
    return source.eval()


@pytest.mark.parametrize("layout", ["ours", "hf", "timm", "cvnets"])
def test_load_classifier_reads_size_and_layout_from_the_file(tmp_path, xs5, layout):
    source = xs5
    path = save_checkpoint(from_ours(source, layout), tmp_path / f"{layout}.pt")
    model, found = load_classifier(path)
    assert found == layout and model.config.name == "mobilevit_xs" and model.num_classes == 5
    assert not model.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_load_classifier_errors_name_the_fix(tmp_path, model3, tree):
    path = save_checkpoint(model3.state_dict(), tmp_path / "xxs.pt")
    with pytest.raises(CheckpointError, match="does not fit --model mobilevit_s"):
        load_classifier(path, "mobilevit_s")
    headless = {k: v for k, v in model3.state_dict().items() if not k.startswith("classifier")}
    with pytest.raises(CheckpointError, match="has no classifier"):
        load_classifier(save_checkpoint(headless, tmp_path / "headless.pt"))
    odd = dict(model3.state_dict())
    odd["layer5.0.expand_1x1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError, match="fits none of"):
        load_classifier(odd)
    model7 = create_model("mobilevit_xxs", num_classes=7).eval()
    with pytest.raises(ClassCountError, match="3 class folders but the model predicts 7"):
        evaluate_imagenet(model7, tree, preprocessing=preprocessing_for("ours", image_size=32),
                          progress=False)
