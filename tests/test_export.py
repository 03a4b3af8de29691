"""Export to ONNX, ONNX Runtime parity, the runtime comparison and the Core ML conversion.

The two MobileViT-XXS exports (fixed 256 x 256 and dynamic H, W) are made once per module; with
one thread the file takes about a minute. Never asserts a timing."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from mobilevit_edu import create_model  # noqa: E402
from mobilevit_edu.data.photos import photo_batch  # noqa: E402
from mobilevit_edu.deploy.coreml import CoreMLResult, coreml_convert  # noqa: E402
from mobilevit_edu.deploy.export import EXPORT_HINT, export_onnx, onnx_op_counts, size_multiple  # noqa: E402
from mobilevit_edu.deploy.onnx_runtime import (  # noqa: E402
    OnnxModel, check_onnx, onnx_session, ort_category, ort_op_times,
)
from mobilevit_edu.deploy.runtimes import RuntimeLatency, compare_runtimes, time_unfold_fold  # noqa: E402
from mobilevit_edu.models.batchnorm import calibrate_batchnorm  # noqa: E402
from mobilevit_edu.plots.deployment import plot_runtime_latency, plot_time_split  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def xxs():
    """MobileViT-XXS with BatchNorm statistics from real image crops (no denormal activations)."""
    torch.manual_seed(0)
    return calibrate_batchnorm(create_model("mobilevit_xxs"), photo_batch(4, 128, seed=1), passes=2)


@pytest.fixture(scope="module")
def onnx_files(xxs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "fixed": export_onnx(xxs, folder / "xxs_256.onnx", image_size=256),
        "dynamic": export_onnx(xxs, folder / "xxs_dynamic.onnx", image_size=None),
    }


class Tiny(nn.Module):
    """A small conv net (converts and exports in a second or two)."""

    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                  nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DataDependent(nn.Module):
    """Python control flow on a tensor's *value*: no graph exporter can capture it."""

    in_channels = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) * 2 if x.sum() > 0 else x.mean((2, 3))


def test_size_multiple_is_patch_times_stride():
    assert size_multiple(create_model("mobilevit_xxs")) == 64  # 2 x 2 patches at stride 32
    assert size_multiple(create_model("mobilevit_xs", patch_sizes=(8, 4, 2))) == 64
    assert size_multiple(create_model("mobilevit_xs", patch_sizes=(4, 4, 4))) == 128
    assert size_multiple(create_model("mobilevit_xs", output_stride=16)) == 32
    assert size_multiple(create_model("mobilenetv2_100")) == 1


def test_exported_files_declare_their_dimensions(onnx_files):
    fixed, dynamic = onnx_session(onnx_files["fixed"]), onnx_session(onnx_files["dynamic"])
    assert isinstance(fixed, OnnxModel)
    assert fixed.input_name == "images" and fixed.output_name == "logits"
    assert fixed.input_shape == ["batch", 3, 256, 256] and fixed.fixed_size == (256, 256)
    assert dynamic.input_shape == ["batch", 3, "64*h64", "64*w64"] and dynamic.fixed_size is None
    outputs = dynamic.session.get_outputs()[0].shape
    assert outputs == ["batch", 1000]
    assert not list(onnx_files["fixed"].parent.glob("*.tmp"))  # written atomically


def test_onnxruntime_matches_pytorch_at_batch_1_and_3(xxs, onnx_files):
    inputs = [photo_batch(1, 256, seed=2), photo_batch(3, 256, seed=3)]
    for path in onnx_files.values():
        assert check_onnx(xxs, path, inputs) <= TOL


def test_dynamic_file_matches_pytorch_at_other_resolutions(xxs, onnx_files):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(2, 3, 320, 320, generator=g), torch.rand(1, 3, 192, 256, generator=g)]
    with torch.inference_mode():
        assert xxs(inputs[1]).shape == (1, 1000)
    assert check_onnx(xxs, onnx_files["dynamic"], inputs) <= TOL


def test_fixed_file_rejects_another_size_naming_both(onnx_files):
    runner = onnx_session(onnx_files["fixed"])
    with pytest.raises(ValueError, match=r"exported for 256 x 256 images, got 320 x 320"):
        runner(torch.rand(1, 3, 320, 320))
    with pytest.raises(ValueError, match=r"3 input channels, got 1"):
        runner(torch.rand(1, 1, 256, 256))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        runner(torch.rand(3, 256, 256))
    with pytest.raises(TypeError, match="floating-point"):
        runner(torch.zeros(1, 3, 256, 256, dtype=torch.uint8))


def test_dynamic_file_rejects_sizes_that_would_need_the_resize(onnx_files):
    runner = onnx_session(onnx_files["dynamic"])
    with pytest.raises(ValueError, match=r"multiple of 64.*224 x 224"):
        runner(torch.rand(1, 3, 224, 224))


def test_fixed_224_export_keeps_the_resize(xxs, tmp_path):
    # 224 -> 7 x 7 at layer5, resized to 8 x 8 and back: two Resize nodes in the graph
    path = export_onnx(xxs, tmp_path / "xxs_224.onnx", image_size=224, exporter="torchscript")
    assert onnx_op_counts(path)["total"]["Resize"] == 2
    assert check_onnx(xxs, path, [photo_batch(2, 224, seed=4)]) <= TOL


def test_torchscript_exporter_refuses_a_dynamic_resolution(xxs, tmp_path):
    with pytest.raises(ValueError, match="TorchScript exporter cannot"):
        export_onnx(xxs, tmp_path / "x.onnx", image_size=None, exporter="torchscript")
    with pytest.raises(ValueError, match="exporter must be"):
        export_onnx(xxs, tmp_path / "x.onnx", exporter="tflite")


def test_failed_export_says_why_and_leaves_no_file(tmp_path):
    target = tmp_path / "bad.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="ONNX export of DataDependent"):
        export_onnx(DataDependent(), target, image_size=64)
    assert target.read_bytes() == b"old"  # the previous file is untouched
    assert not list(tmp_path.glob("*.tmp"))


def test_unfold_and_fold_are_pure_reshapes_in_the_graph(onnx_files):
    counts = onnx_op_counts(onnx_files["fixed"])
    for part in ("unfold", "fold"):  # one Transpose and two Reshapes per block, 3 blocks
        assert counts[part] == {"Reshape": 6, "Transpose": 3}
    assert counts["attention"]["Softmax"] == 2 + 4 + 3
    assert counts["total"]["Conv"] == counts["other"]["Conv"] > 0
    dynamic = onnx_op_counts(onnx_files["dynamic"])
    assert dynamic["unfold"]["Transpose"] == 3  # plus the shape arithmetic of a symbolic size
    assert set(dynamic["unfold"]) - {"Reshape", "Transpose"} <= {"Cast", "Div", "Ceil", "Mul",
                                                                  "Concat", "Shape", "Gather"}


def test_missing_onnxruntime_names_the_extra(onnx_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"mobilevit_edu\[export\]"):
        onnx_session(onnx_files["fixed"])
    assert "mobilevit_edu[export]" in EXPORT_HINT


def test_onnx_session_errors(tmp_path, onnx_files):
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        onnx_session(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="threads"):
        onnx_session(onnx_files["fixed"], threads=0)


def test_ort_op_times_splits_the_kernel_time(onnx_files):
    x = photo_batch(1, 256, seed=5)
    split = ort_op_times(onnx_files["fixed"], x, repeats=2, warmup=1)
    assert split["unfold / fold"] > 0 and split["conv"] > 0 and split["matmul"] > 0
    assert split["total"] == pytest.approx(sum(v for k, v in split.items() if k != "total"))
    by_op = ort_op_times(onnx_files["fixed"], x, repeats=2, warmup=1, by="op")
    assert "Conv" in by_op and "unfold / fold" in by_op
    assert ort_category("QuickGelu") == "activation" and ort_category("Nope") == "other"


def test_time_unfold_fold_restores_the_block_functions(xxs):
    from mobilevit_edu.nn import block, patches

    t = time_unfold_fold(xxs, photo_batch(1, 128, seed=6), repeats=2)
    assert 0 < t["unfold"] < t["forward"] and 0 < t["fold"] < t["forward"]
    assert block.unfold is patches.unfold and block.fold is patches.fold
    with pytest.raises(ValueError, match="never called unfold"):
        time_unfold_fold(Tiny().eval(), torch.rand(1, 3, 64, 64), repeats=1, warmup=0)


def test_compare_runtimes_times_every_runtime_it_can(tmp_path, figures_in_tmp):
    torch.manual_seed(0)
    tiny = Tiny().eval()
    path = export_onnx(tiny, tmp_path / "tiny.onnx", image_size=None)
    assert onnx_session(path).input_shape == ["batch", 3, "height", "width"]
    lat = compare_runtimes({"tiny": tiny}, {"tiny": path}, image_size=64, repeats=3, warmup=1,
                           compile=False)
    assert isinstance(lat, RuntimeLatency)
    assert set(lat.timings["tiny"]) == {"eager", "eager_fast", "onnxruntime"}
    assert lat.compile_info["tiny"]["error"] == "not requested"
    assert lat.ms("tiny", "compiled") is None and lat.ms("tiny", "onnxruntime") > 0
    assert all(t.repeats == 3 and t.threads == 1 for t in lat.timings["tiny"].values())
    assert "ONNX Runtime" in lat.table({"tiny": 0.001})
    with pytest.raises(ValueError, match="unknown runtime"):
        compare_runtimes({"tiny": tiny}, {}, image_size=64, runtimes=("tvm",))
    fig = plot_runtime_latency(lat, {"tiny": 0.001}, name="test_runtime_latency")
    assert len(fig.axes[0].patches) == 3
    fig = plot_time_split({"a": {"conv": 2.0, "matmul": 1.0, "total": 3.0},
                           "b": {"conv": 1.0, "unfold / fold": 0.5}}, name="test_time_split")
    assert len(fig.axes[0].patches) == 4
    assert (figures_in_tmp / "test_time_split.png").exists()
    plot_time_split({"a": {"conv": 1.0}})  # no name: nothing is written
    assert sorted(p.name for p in figures_in_tmp.glob("*.png")) == ["test_runtime_latency.png",
                                                                     "test_time_split.png"]


def test_fixed_batch_export_takes_exactly_that_batch(tmp_path):
    torch.manual_seed(0)
    tiny = Tiny().eval()
    path = export_onnx(tiny, tmp_path / "tiny_b3.onnx", image_size=64, dynamic_batch=False,
                       batch=3)
    session = onnx_session(path)
    assert session.input_shape == [3, 3, 64, 64]
    assert check_onnx(tiny, session, [torch.rand(3, 3, 64, 64)]) <= TOL
    with pytest.raises(ValueError, match="exported for batch 3, got batch 2"):
        session(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="needs dynamic_batch=False"):
        export_onnx(tiny, tmp_path / "new" / "x.onnx", image_size=64, batch=3)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        export_onnx(tiny, tmp_path / "new" / "x.onnx", image_size=64, dynamic_batch=False,
                    batch=0)
    assert not (tmp_path / "new").exists()  # refused before anything is created
    # ONNX Runtime's pool threads busy-wait after a run unless told not to: off by default
    key = "session.intra_op.allow_spinning"
    for kwargs, want in (({}, "0"), ({"spin_wait": True}, "1")):
        options = onnx_session(path, threads=2, **kwargs).session.get_session_options()
        assert options.get_session_config_entry(key) == want


def test_coreml_convert_returns_a_model_or_one_line_reason():
    result = coreml_convert(Tiny().eval(), 64)
    assert isinstance(result, CoreMLResult)
    assert result.ok != bool(result.reason)
    assert "\n" not in result.reason
    if result.ok:
        assert sum(result.op_counts.values()) > 0 and result.op_counts["conv"] == 1
        assert ("macOS" in " ".join(result.notes)) == (not result.can_predict)
    bad = coreml_convert(DataDependent(), 64)
    assert not bad.ok and bad.reason and "\n" not in bad.reason


def test_deploy_modules_share_public_helpers_only():
    import ast
    from pathlib import Path

    from mobilevit_edu import deploy

    for path in Path(deploy.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilevit_edu"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {node.module}"
        assert len(path.read_text().splitlines()) < 400, path.name


def test_coreml_convert_without_coremltools(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    result = coreml_convert(Tiny().eval(), 64)
    assert not result.ok and "coremltools is not installed" in result.reason
    assert "\n" not in result.reason
