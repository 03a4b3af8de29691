"""The experiment protocol (mobilevit_edu.experiments): Student-t quantiles against printed
tables, Welch's interval against a hand computation, verdicts by direction, the ledger (append,
refuse duplicates, resume), code versions that ignore prose but not code."""

from __future__ import annotations

import json
import math

import pytest

from mobilevit_edu.experiments import ledger as L
from mobilevit_edu.experiments.ledger import Ledger, Run, code_version
from mobilevit_edu.experiments.protocol import (
    Arm, Claim, Experiment, arm_values, claim_rows, pending, run_experiment, run_experiments,
)
from mobilevit_edu.experiments.stats import (
    Interval, paired_interval, summarize, t_cdf, t_quantile, verdict, welch_interval,
)


@pytest.mark.parametrize("df, q975", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764),
                                      (8, 2.3060), (10, 2.2281), (30, 2.0423),
                                      (math.inf, 1.9600)])
def test_t_quantiles_match_the_printed_table(df, q975):
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q975, abs=1e-4)
    assert t_cdf(q975, df) == pytest.approx(0.975, abs=1e-5)


def test_welch_interval_by_hand():
    a, b = [70.0, 72.0, 68.0, 71.0, 69.0], [60.0, 65.0, 62.0, 61.0, 63.0]
    sa, sb = summarize(a), summarize(b)
    assert sa.mean == 70.0 and sa.sd == pytest.approx(math.sqrt(2.5))
    va, vb = 2.5 / 5, 3.7 / 5  # sample variances / n
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    iv = welch_interval(a, b)
    assert iv.diff == pytest.approx(7.8) and iv.df == pytest.approx(df)
    assert (iv.low, iv.high) == pytest.approx((7.8 - half, 7.8 + half))
    with pytest.raises(ValueError, match=">= 2 seeds"):
        welch_interval([1.0], [2.0, 3.0])


@pytest.mark.parametrize("low, high, sign, expected", [
    (1.0, 3.0, +1, "agrees"), (-3.0, -1.0, +1, "contradicts"), (-1.0, 2.0, +1, "inconclusive"),
    (-3.0, -1.0, -1, "agrees"), (1.0, 3.0, -1, "contradicts"), (0.0, 2.0, +1, "inconclusive"),
])
def test_verdict_by_direction(low, high, sign, expected):
    assert verdict(Interval((low + high) / 2, low, high), sign) == expected


def _toy(calls: list, seeds=(0, 1, 2, 3, 4)) -> Experiment:
    def run(config, seed):
        calls.append((config["gain"], seed))
        return {"test_acc": 0.5 + config["gain"] + 0.01 * ((seed * 7) % 3)}

    arms = (Arm("big", {"gain": 0.2}), Arm("small", {"gain": 0.0}), Arm("same", {"gain": 0.2}))
    claims = (Claim("big beats small", "Fig. X", "big", "small"),
              Claim("big beats same", "Fig. Y", "big", "same"),
              Claim("small beats big", "Fig. Z", "small", "big"))
    return Experiment("toy", "a toy", "Fig. X", arms, run, seeds=seeds, claims=claims)


def test_run_experiment_records_each_run_and_resumes(tmp_path):
    calls: list = []
    ledger = Ledger(tmp_path / "runs.jsonl")
    exp = _toy(calls, seeds=(0, 1, 2))
    # "big" and "same" have equal settings: one run each seed serves both arms
    assert run_experiment(exp, ledger, progress=False, log=lambda s: None) == 6
    assert len(ledger.runs("toy")) == 6 and len(calls) == 6
    assert run_experiment(exp, ledger, progress=False, log=lambda s: None) == 0  # all recorded
    more = _toy(calls, seeds=(0, 1, 2, 3, 4))
    assert [s for _, s, _ in pending(more, ledger)] == [3, 3, 3, 4, 4, 4]
    assert run_experiment(more, ledger, progress=False, log=lambda s: None) == 4
    line = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])
    assert {"key", "config", "code", "metrics", "wall_s", "machine", "seed", "runner"} <= set(line)
    assert arm_values(more, ledger, "test_acc")["small"] == pytest.approx(
        [0.5 + 0.01 * ((s * 7) % 3) for s in range(5)])
    assert arm_values(more, ledger, "test_acc")["same"] == arm_values(more, ledger,
                                                                      "test_acc")["big"]
    verdicts = {r.claim.source: r.verdict for r in claim_rows(more, ledger)}
    assert verdicts == {"Fig. X": "agrees", "Fig. Y": "inconclusive", "Fig. Z": "contradicts"}


def test_experiments_share_equal_arms_and_shards_split_the_work(tmp_path):
    calls: list = []
    ledger = Ledger(tmp_path / "runs.jsonl")
    first = _toy(calls, seeds=(0, 1))
    second = Experiment("other", "another toy", "Fig. W", (Arm("big", {"gain": 0.2}),
                                                           Arm("tiny", {"gain": -0.1})),
                        first.run, seeds=(0, 1))
    assert len(pending(second, ledger)) == 4
    log = lambda s: None  # noqa: E731
    n0 = run_experiments([first, second], ledger, progress=False, log=log, shard=(0, 2))
    n1 = run_experiments([first, second], ledger, progress=False, log=log, shard=(1, 2))
    assert n0 + n1 == 6 and len(ledger.runs()) == 6  # 2 + 1 distinct settings x 2 seeds
    assert sorted(calls) == sorted(set(calls))  # no run twice
    assert pending(second, ledger) == []  # "big" came from the first experiment
    with pytest.raises(ValueError, match="shard"):
        run_experiments([first], ledger, shard=(2, 2))


def test_paired_claims_compare_two_metrics_of_the_same_runs(tmp_path):
    def run(config, seed):
        return {"last": 0.50 + 0.02 * seed, "ema": 0.51 + 0.02 * seed + 0.001 * (seed % 2)}

    exp = Experiment("ema", "t", "Table 7", (Arm("LS", {}),), run, seeds=(0, 1, 2, 3, 4),
                     claims=(Claim("EMA helps", "Table 7", "LS", "LS", metric="ema",
                                   metric_b="last"),))
    ledger = Ledger(tmp_path / "runs.jsonl")
    run_experiment(exp, ledger, progress=False, log=lambda s: None)
    (row,) = claim_rows(exp, ledger)
    diffs = [100 * (0.01 + 0.001 * (s % 2)) for s in range(5)]  # the per-seed differences
    iv = paired_interval([100 * run({}, s)["ema"] for s in range(5)],
                         [100 * run({}, s)["last"] for s in range(5)])
    half = t_quantile(0.975, 4) * summarize(diffs).sd / math.sqrt(5)
    assert iv.diff == pytest.approx(summarize(diffs).mean) and iv.df == 4
    assert (iv.low, iv.high) == pytest.approx((iv.diff - half, iv.diff + half))
    assert (row.interval.low, row.interval.high) == pytest.approx((iv.low, iv.high))
    assert row.verdict == "agrees"  # unpaired, the seeds' spread (2 points) would hide it
    assert welch_interval([100 * run({}, s)["ema"] for s in range(5)],
                          [100 * run({}, s)["last"] for s in range(5)]).low < 0
    with pytest.raises(ValueError, match="metric_b"):
        Experiment("e", "t", "p", (Arm("a", {}),), run, claims=(Claim("x", "y", "a", "a"),))


def test_ledger_refuses_duplicates_and_names_a_bad_line(tmp_path):
    ledger = Ledger(tmp_path / "runs.jsonl")
    run = Run("e", "a", 0, {"x": 1}, "abc", {"m": 1.0}, 2.0)
    ledger.record(run)
    with pytest.raises(ValueError, match="already in"):
        ledger.record(run)
    assert ledger.get(run.key) == run and ledger.get("nope") is None
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        ledger.runs()


def test_key_changes_with_config_seed_and_code():
    base = Run("e", "a", 0, {"x": 1}, "abc", {}, 0.0).key
    assert Run("e", "a", 1, {"x": 1}, "abc", {}, 0.0).key != base
    assert Run("e", "a", 0, {"x": 2}, "abc", {}, 0.0).key != base
    assert Run("e", "a", 0, {"x": 1}, "abd", {}, 0.0).key != base
    assert Run("e", "a", 0, {"x": 1}, "abc", {"m": 3.0}, 9.0).key == base  # results don't count


def test_code_version_ignores_prose_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "nn"
    pkg.mkdir()
    (pkg / "a.py").write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 1  # hi\n')
    monkeypatch.setattr(L, "PACKAGE", tmp_path)
    v1 = code_version(["nn"])
    (pkg / "a.py").write_text('"""Other doc."""\n\ndef f(x):\n    """Else."""\n    return x + 1\n')
    assert code_version(["nn"]) == v1
    (pkg / "a.py").write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    assert code_version(["nn"]) != v1
    with pytest.raises(ValueError, match="no package"):
        code_version(["nope"])


def test_experiment_checks_its_claims():
    with pytest.raises(ValueError, match="names an arm"):
        Experiment("e", "t", "p", (Arm("a", {}),), lambda c, s: {},
                   claims=(Claim("x", "y", "a", "missing"),))


def test_run_classification_is_a_function_of_config_and_seed():
    from mobilevit_edu.experiments.classification import run_classification

    config = {"model": "mobilenetv2_035", "n_train": 64, "n_val": 32, "n_test": 32, "epochs": 1,
              "batch_size": 32, "image_size": 32}
    a, b = run_classification(config, 0), run_classification(config, 0)
    assert a == b  # same seed, same numbers
    assert {"val_acc", "test_acc", "ema_val_acc", "ema_test_acc", "train_loss"} <= set(a)
    assert a["updates"] == 2 and all(0 <= a[k] <= 1 for k in ("val_acc", "test_acc"))
    assert run_classification(config, 1) != a
    with pytest.raises(ValueError, match="unknown settings"):
        run_classification({"modle": "x"}, 0)


def test_cli_runs_reports_and_resumes_under_the_ci_profile(tmp_path, capsys):
    from mobilevit_edu.experiments.cli import main

    ledger = str(tmp_path / "ci.jsonl")
    args = ["--profile", "ci", "--ledger", ledger, "--quiet"]
    assert main(["list", *args]) == 0
    assert "label_smoothing" in capsys.readouterr().out
    assert main(["run", "label_smoothing", *args]) == 0
    assert len(Ledger(ledger).runs()) == 4  # 2 arms x 2 seeds
    capsys.readouterr()
    assert main(["run", "label_smoothing", *args]) == 0  # nothing left to run
    assert "seed" not in capsys.readouterr().out
    assert main(["report", "label_smoothing", *args]) == 0
    out = capsys.readouterr().out
    assert "Table 7" in out and any(v in out for v in ("agrees", "contradicts", "inconclusive"))


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown experiment 'nope'"),
    (["run", "fusion", "--seeds", "a,b"], "--seeds 'a,b'"),
    (["report", "fusion"], "run it first"),
])
def test_cli_user_mistakes_exit_2(argv, message, tmp_path, capsys):
    from mobilevit_edu.experiments.cli import main

    assert main([*argv, "--ledger", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_for_book_runs_ci_live_and_refuses_a_stale_full_ledger(tmp_path):
    from mobilevit_edu.experiments.cli import for_book

    ledger = tmp_path / "book.jsonl"
    (exp,), book = for_book(["label_smoothing"], "ci", ledger)
    assert len(book.runs()) == 4 and not pending(exp, book)  # 2 arms x 2 seeds, run here
    with pytest.raises(RuntimeError, match="lacks 10 of its 10 runs.*run label_smoothing"):
        for_book(["label_smoothing"], "full", tmp_path / "empty.jsonl")


def test_ci_profile_gives_a_settings_sweep_one_seed():
    from mobilevit_edu.experiments.cli import select

    sweep, local = select(["lr_sweep", "models_local"], "ci")
    assert sweep.seeds == (0,) and local.seeds == (0, 1)
    assert all(a.config["n_train"] == 256 and a.config["epochs"] == 2 for a in sweep.arms)
    assert {a.config["lr"] for a in sweep.arms} > {0.001, 0.02}  # the arms keep what they vary


@pytest.mark.parametrize("shard", ["2/2", "x", "1/0"])
def test_cli_bad_shard_exits_2(shard, tmp_path, capsys):
    from mobilevit_edu.experiments.cli import main

    assert main(["run", "fusion", "--shard", shard, "--ledger", str(tmp_path / "x.jsonl")]) == 2
    assert "--shard" in capsys.readouterr().err
