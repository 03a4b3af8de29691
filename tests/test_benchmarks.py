"""The arithmetic of ``benchmarks/latency.py`` (never its timings): what a speed-up goal asks of
the machine; and its command line, which answers a user's mistake with one line and exit 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "benchmarks" / "latency.py"
    spec = importlib.util.spec_from_file_location("bench_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goal_turns_a_speedup_into_a_share_of_the_matmul_rate(bench):
    timings = {name: SimpleNamespace(median_ms=ms) for name, ms in
               (("hf", 100.0), ("ours_a", 60.0), ("ours_b", 40.0))}
    # 1 GMAC at 50 GMAC/s: 20 ms; 2x of 100 ms: 50 ms; 1e7 exps share the other 30 ms
    g = bench.goal(2.0, timings, macs=1e9, exps=1e7, rate=50.0, sigmoid_ns=0.9)
    assert g["target_ms"] == pytest.approx(50.0)
    assert g["mac_floor_ms"] == pytest.approx(20.0)
    assert g["needs_fraction_of_matmul_rate"] == pytest.approx(0.4)
    assert g["exp_budget_ns"] == pytest.approx(3.0)
    assert g["exp_ms_at_sigmoid_rate"] == pytest.approx(9.0)
    assert (g["best"], g["best_speedup"], g["met"]) == ("ours_b", pytest.approx(2.5), True)
    assert g["best_fraction_of_matmul_rate"] == pytest.approx(0.5)
    # a floor above the target: more than the whole matmul rate, a negative budget, not met
    g = bench.goal(3.0, timings, macs=2e9, exps=1e7, rate=50.0, sigmoid_ns=0.9)
    assert g["needs_fraction_of_matmul_rate"] > 1 and g["exp_budget_ns"] < 0 and not g["met"]


@pytest.mark.parametrize("argv, says", [
    (["--sizes", "xxl"], "invalid choice: 'xxl'"),
    (["--threads", "0"], "must be >= 1, got 0"),
    (["--batches", "1", "two"], "expected an integer, got 'two'"),
    (["--warmup", "-1"], "must be >= 0, got -1"),
    (["--train-compile-sizes", "m"], "invalid choice: 'm'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_user_mistake_gets_one_line_and_exit_status_2(bench, capsys, argv, says):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_output_path_that_is_a_folder_is_refused(bench, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--no-onnx", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is a folder" in capsys.readouterr().err


def test_command_line_defaults_and_quick(bench):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("the benchmark needs transformers")
    args = bench.parse_args(["--no-onnx", "--sizes", "XS", "s"])
    assert args.sizes == ["xs", "s"] and args.batches == [1, 8] and args.threads == 1
    quick = bench.parse_args(["--no-onnx", "--quick"])
    assert (quick.sizes, quick.batches, quick.repeats, quick.train) == (["xxs"], [1], 5, False)
