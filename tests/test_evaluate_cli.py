"""``python -m mobilevit_edu.evaluate``: the commands end to end on tiny files in the real
formats (an ImageNet-style val tree of 1000 synset folders, checkpoints in the Hugging Face, timm
and our layouts), the result printed beside the paper's number, ``--json``, and a user's
mistakes answered with one line and exit status 2. ``detect`` and ``segment`` are checked for
what the command line adds (paths, defaults, the printed comparison) with stand-ins for the
detection and segmentation evaluators, which their own tests cover.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, calibrate_random_batchnorm
from mobilevit_edu import create_model
from mobilevit_edu.evaluate import evaluate_imagenet, main, preprocessing_for
from mobilevit_edu.models.checkpoints import from_ours, save_checkpoint

SYNSETS3 = ("n01440764", "n01443537", "n01484850")


def _image(rng, folder, n):
    h, w = int(rng.integers(20, 40)), int(rng.integers(41, 60))
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.integers(-50, 51, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{n:08d}.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 3-class tree (PATH/val/<synset>/...), a 1000-class tree of one image per synset
    folder, and xxs checkpoints for both (ours, Hugging Face and timm layouts)."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    n = 0
    for synset in SYNSETS3:
        (root / "small" / "val" / synset).mkdir(parents=True)
        for _ in range(4):
            n += 1
            _image(rng, root / "small" / "val" / synset, n)
    for k in range(1000):
        folder = root / "imagenet" / f"n{k:08d}"
        folder.mkdir(parents=True)
        _image(rng, folder, k + 1)
    torch.manual_seed(0)
    small = create_model("mobilevit_xxs", num_classes=3)
    calibrate_random_batchnorm(small, torch.rand(8, 3, 32, 32))
    big = create_model("mobilevit_xxs", num_classes=1000)
    calibrate_random_batchnorm(big, torch.rand(8, 3, 32, 32))
    return types.SimpleNamespace(
        root=root, small=root / "small", imagenet=root / "imagenet", small_model=small.eval(),
        ours3=save_checkpoint(small.state_dict(), root / "ours3.pt"),
        hf1000=save_checkpoint(from_ours(big, "hf"), root / "hf1000.safetensors"),
        timm1000=save_checkpoint(from_ours(big, "timm"), root / "timm1000.pt"))


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_end_to_end_beside_the_paper(files, capsys, tmp_path):
    code, out, err = _run(capsys, "classify", "--weights", files.hf1000, "--data", files.imagenet,
                          "--image-size", 32, "--batch-size", 250, "--workers", 0,
                          "--json", tmp_path / "r.json")
    assert code == 0, err
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert first.startswith("mobilevit_xxs: hf layout, 1000 classes; cvnets v0.1: BGR")
    assert last.startswith("top-1 ") and "top-5 " in last
    assert last.endswith("(paper: 69.0 %, MobileViT-XXS, Fig. 8/§4.1; cvnets README 69.0 %)  "
                         "[at 32 px, the paper's is 256: not comparable]")
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["metrics"]["images"] == 1000 and record["layout"] == "hf"
    assert record["preprocessing"]["channels"] == "bgr" and record["result"] == last
    assert f"top-1 {100 * record['metrics']['top1']:.2f} %" in last


def test_classify_numbers_are_evaluate_imagenets(files, capsys):
    code, out, err = _run(capsys, "classify", "--weights", files.ours3, "--data", files.small,
                          "--image-size", 48, "--workers", 0, "--channels", "bgr", "--no-progress")
    assert code == 0, err
    expected = evaluate_imagenet(files.small_model, files.small / "val",
                                 preprocessing=preprocessing_for("ours", channels="bgr", image_size=48),
                                 progress=False)
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"top-1 {100 * expected['top1']:.2f} %  top-5 100.00 %")
    assert "no paper number" in last  # 3 classes: not ImageNet-1k
    assert "ours: BGR, shorter side 80 (torch bilinear), centre crop 48" in out
    assert err == ""  # --no-progress


def test_classify_as_a_module_with_a_progress_bar(files):
    cmd = [sys.executable, "-m", "mobilevit_edu.evaluate", "classify", "--weights",
           str(files.timm1000), "--data", str(files.imagenet), "--image-size", "32", "--limit",
           "40", "--workers", "0", "--threads", "1", "--batch-size", "20"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert "(paper: 69.0 %, MobileViT-XXS, Fig. 8/§4.1; cvnets README 69.0 %; " \
           "timm results-imagenet.csv 68.936 %)" in last
    assert last.endswith("[40 images only (--limit); at 32 px, the paper's is 256: not comparable]")
    assert "timm: RGB, shorter side 35 (PIL bicubic)" in done.stdout
    assert "classify" in done.stderr and "2/2" in done.stderr  # tqdm's bar: 2 batches of 20


def _one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m mobilevit_edu.evaluate"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case, expected", [
    ("missing folder", "no such folder"),
    ("missing weights", "no such file"),
    ("corrupt weights", "not a readable"),
    ("unknown model", "unknown; use one of"),
    ("weights of another size", "does not fit --model mobilevit_s"),
    ("1000-class weights, 3 classes", "3 class folders but the model predicts 1000"),
    ("no class folders", "no class sub-folders"),
    ("zero limit", "--limit must be at least 1"),
])
def test_user_mistakes_exit_2_with_one_line(files, capsys, tmp_path, case, expected):
    weights, data, extra = files.ours3, files.small, []
    if case == "missing folder":
        data = tmp_path / "nowhere"
    elif case == "missing weights":
        weights = tmp_path / "nothing.pt"
    elif case == "corrupt weights":
        weights = tmp_path / "corrupt.pt"
        weights.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    elif case == "unknown model":
        extra = ["--model", "mobilevit_xl"]
    elif case == "weights of another size":
        extra = ["--model", "mobilevit_s"]
    elif case == "1000-class weights, 3 classes":
        weights = files.hf1000
    elif case == "no class folders":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "zero limit":
        extra = ["--limit", "0"]
    code, _, err = _run(capsys, "classify", "--weights", weights, "--data", data, "--workers", 0,
                        "--no-progress", *extra)
    assert expected in _one_line_error(code, err)


def test_help_gives_the_three_commands_with_the_papers_numbers(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for needle in ("classify", "detect", "segment", "78.4 %", "27.7", "79.1 %"):
        assert needle in text


class _Net(torch.nn.Module):
    """A stand-in network with a MobileViT backbone's config, as SSDLite and DeepLabV3 have."""

    def __init__(self, name, num_classes):
        super().__init__()
        self.backbone = types.SimpleNamespace(config=types.SimpleNamespace(name=name))
        self.num_classes = num_classes


def _stand_in(monkeypatch, module, loader, evaluator, metrics, calls):
    fake = types.ModuleType(module)

    def load(weights, name=None, num_classes=None):
        calls["load"] = (str(weights), name)
        return _Net(name or "mobilevit_s", 81 if "detection" in module else 21), "cvnets"

    def evaluate(model, *args, **kwargs):
        calls["evaluate"] = ([str(a) for a in args], kwargs)
        return metrics

    setattr(fake, loader, load)
    setattr(fake, evaluator, evaluate)
    monkeypatch.setitem(sys.modules, module, fake)


def test_detect_passes_the_coco_paths_and_prints_table_1(files, capsys, monkeypatch):
    coco = files.root / "coco"
    (coco / "val2017").mkdir(parents=True, exist_ok=True)
    (coco / "annotations").mkdir(exist_ok=True)
    (coco / "annotations" / "instances_val2017.json").write_text("{}")
    calls = {}
    stats = {"mAP": 0.2771, "AP50": 0.47, "AP75": 0.28, "AP_small": 0.05, "AP_medium": 0.3,
             "AP_large": -1.0, "images": 5000}
    _stand_in(monkeypatch, "mobilevit_edu.detection.evaluate", "load_detector", "evaluate_coco",
              stats, calls)
    code, out, err = _run(capsys, "detect", "--weights", files.ours3, "--data", coco, "--no-progress",
                          "--channels", "rgb", "--workers", 0)
    assert code == 0, err
    args, kwargs = calls["evaluate"]
    assert args == [str(coco / "val2017"), str(coco / "annotations" / "instances_val2017.json")]
    assert kwargs["origin"] == "cvnets" and kwargs["image_size"] == 320
    assert kwargs["postprocess"] == "v0.1" and kwargs["progress"] is False
    assert kwargs["channels"] == "rgb" and kwargs["workers"] == 0 and kwargs["limit"] is None
    assert out.strip().splitlines()[-1] == (
        "mAP 27.71  AP50 47.00  AP75 28.00  AP_S/M/L 5.00 / 30.00 / n/a  "
        "(paper: 27.7, MobileViT-S, Table 1a; cvnets README 27.9)")
    code, _, err = _run(capsys, "detect", "--weights", files.ours3, "--data", coco,
                        "--annotations", coco / "missing.json")
    assert "annotation file not found" in _one_line_error(code, err)


def test_segment_passes_the_voc_root_and_prints_table_2(files, capsys, monkeypatch):
    voc = files.root / "VOCdevkit"
    voc.mkdir(exist_ok=True)
    calls = {}
    _stand_in(monkeypatch, "mobilevit_edu.segmentation.evaluate", "load_segmenter",
              "evaluate_voc", {"miou": 0.7712, "pixel_acc": 0.93, "per_class_iou": [float("nan")],
                               "images": 1449}, calls)
    code, out, err = _run(capsys, "segment", "--weights", files.ours3, "--data", voc,
                          "--model", "mobilevit_xs", "--no-progress")
    assert code == 0, err
    assert calls["load"][1] == "mobilevit_xs"
    args, kwargs = calls["evaluate"]
    assert args == [str(voc)] and kwargs["split"] == "val" and kwargs["image_size"] == 512
    assert kwargs["upsample"] == "cvnets" and kwargs["origin"] == "cvnets"
    assert out.strip().splitlines()[-1] == (
        "mIoU 77.12 %  pixel accuracy 93.00 %  (paper: 77.1 %, MobileViT-XS, Table 2; "
        "cvnets README 77.1 %)")
    code, _, err = _run(capsys, "segment", "--weights", files.ours3, "--data", voc / "nope")
    assert "no such folder" in _one_line_error(code, err)


# --- detect and segment end to end: real loaders and evaluators on tiny real-format files --------


def test_detect_end_to_end_on_a_tiny_coco_tree(tmp_path, capsys):
    """A cvnets-layout SSDLite file and a COCO tree (non-square images, a crowd region) through
    the command: the layout is detected, the evaluator runs, the line names Table 1."""
    import json as _json

    from test_detection_official import write_coco

    from mobilevit_edu.detection import create_ssdlite, ssdlite_from_ours

    (tmp_path / "coco").mkdir()
    img_dir, ann = write_coco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations").mkdir()
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").write_text(ann.read_text())
    torch.manual_seed(0)
    weights = tmp_path / "ssd_mobilevit_xxs.pt"
    torch.save(ssdlite_from_ours(create_ssdlite("xxs", num_classes=3), "cvnets"), weights)
    out_json = tmp_path / "r.json"
    code, out, err = _run(capsys, "detect", "--weights", weights, "--data", tmp_path / "coco",
                          "--image-size", 160, "--no-progress", "--json", out_json)
    assert code == 0, err
    assert "mAP" in out and "no paper number" in out  # 2 categories, not COCO's 80
    result = _json.loads(out_json.read_text())["metrics"]
    assert result["images"] == 2 and -1 <= result["mAP"] <= 1


def test_segment_end_to_end_on_a_tiny_voc_tree(tmp_path, capsys):
    """A cvnets-layout DeepLabv3 file and a VOC tree (palette masks, 255 boundaries, non-square
    images) through the command."""
    import json as _json

    from test_segmentation_official import write_voc_tree

    from mobilevit_edu.segmentation import create_deeplabv3, to_cvnets_segmentation_state_dict

    _, masks = write_voc_tree(tmp_path / "voc")
    torch.manual_seed(0)
    weights = tmp_path / "deeplabv3_mobilevit_xxs.pt"
    torch.save(to_cvnets_segmentation_state_dict(create_deeplabv3("xxs")), weights)
    out_json = tmp_path / "r.json"
    code, out, err = _run(capsys, "segment", "--weights", weights, "--data", tmp_path / "voc",
                          "--image-size", 64, "--no-progress", "--json", out_json)
    assert code == 0, err
    assert "mIoU" in out and "Table 2" in out and "not comparable" in out  # 64 px, not 512
    result = _json.loads(out_json.read_text())["metrics"]
    assert result["images"] == 3 and 0 <= result["miou"] <= 1
