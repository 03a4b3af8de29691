"""The committed ledger of the book's experiments (results/experiments/cpu.jsonl) is complete for
the current code, chose the learning rates the catalog uses, and reproduces: one of its runs,
re-run here with the same settings, seed and thread count, gives the recorded numbers."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from mobilevit_edu.experiments.catalog import CHOSEN_LR, EXPERIMENTS, get, sweep_choice
from mobilevit_edu.experiments.ledger import Ledger, code_version, machine
from mobilevit_edu.experiments.protocol import arm_values, claim_rows, pending, runner_name

LEDGER = Ledger(Path(__file__).resolve().parents[1] / "results" / "experiments" / "cpu.jsonl")


def test_the_sweep_chose_the_catalogs_learning_rates():
    values = arm_values(get("lr_sweep"), LEDGER, "val_acc")
    assert sweep_choice(values) == CHOSEN_LR


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n != "lr_sweep"])
def test_every_experiment_has_its_seeds_and_a_verdict_per_claim(name):
    exp = get(name)
    missing = pending(exp, LEDGER)
    assert not missing, (f"{name}: {len(missing)} runs missing for the current code; "
                         f"run `python -m mobilevit_edu.experiments run {name}`")
    for row in claim_rows(exp, LEDGER):
        assert row.a.n >= 5 and row.b.n >= 5
        assert row.verdict in ("agrees", "contradicts", "inconclusive")
        assert row.interval.low <= row.interval.diff <= row.interval.high


def _cheapest_run():
    candidates = []
    for exp in EXPERIMENTS.values():
        code = code_version(exp.packages)
        runner = runner_name(exp)
        candidates += [(run.wall_s, exp, run) for run in LEDGER.runs()
                       if run.code == code and run.runner == runner and run.seed in exp.seeds]
    assert candidates, "the ledger holds no run of the current code"
    return min(candidates, key=lambda c: c[0])[1:]


def test_the_cheapest_committed_run_reproduces():
    exp, run = _cheapest_run()
    threads = torch.get_num_threads()
    try:
        metrics = exp.run(dict(run.config), run.seed)
    finally:
        torch.set_num_threads(threads)
    here = machine()
    same_machine = (here["cpu"] == run.machine.get("cpu")
                    and here["torch"] == run.machine.get("torch"))
    for name, recorded in run.metrics.items():
        if same_machine:  # one thread, same kernels: the same numbers to the last bit
            assert metrics[name] == recorded, (exp.name, run.arm, name)
        else:  # another CPU picks other kernels: within the seeds' spread, not bit for bit
            assert metrics[name] == pytest.approx(recorded, abs=0.03 * max(1.0, abs(recorded))), (
                f"{exp.name}/{run.arm}/{name} on {here['cpu']} ({platform.machine()}) against "
                f"{run.machine.get('cpu')}")
