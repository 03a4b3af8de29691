"""``python -m mobilevit_edu.experiments``: list, run and report the book's experiments.

    list                      every experiment, its arms and how many runs the ledger holds
    run NAME [NAME ...]|all   run what the ledger lacks (each run is recorded as it finishes;
                              stop at any time and run again to continue)
    report NAME [...]|all     mean +- sd per arm, the 95 % interval of each claimed difference
                              and the verdict (agrees / contradicts / inconclusive)

``--profile ci`` runs a reduced version (fewer images, epochs and seeds) into a ledger under
``_build/``; the full ledger is ``results/experiments/cpu.jsonl`` (``--ledger`` to change it).
A user's mistake (unknown experiment, bad seeds, unreadable ledger) prints one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mobilevit_edu.experiments.catalog import EXPERIMENTS, get, scaled
from mobilevit_edu.experiments.ledger import Ledger
from mobilevit_edu.experiments.protocol import Experiment, claim_rows, pending, run_experiments

__all__ = ["CI_CHANGES", "CI_CHANGES_DENSE", "CI_SEEDS", "default_ledger", "select", "for_book", "main"]

PROG = "python -m mobilevit_edu.experiments"
ROOT = Path(__file__).resolve().parents[2]
CI_CHANGES = {"n_train": 256, "n_val": 100, "n_test": 100, "epochs": 2}
CI_CHANGES_DENSE = {"n_train": 64, "n_val": 20, "n_test": 20, "epochs": 2}  # detection, segmentation
CI_SEEDS = (0, 1)


class UsageError(Exception):
    """A mistake in the command line (one line, exit status 2)."""


def default_ledger(profile: str) -> Path:
    """Where a profile's runs go: the committed CPU set, or a scratch file for ``ci``."""
    if profile == "ci":
        return ROOT / "_build" / "experiments" / "ci.jsonl"
    return ROOT / "results" / "experiments" / "cpu.jsonl"


def select(names: Sequence[str], profile: str) -> list[Experiment]:
    """The experiments named (``all``: every one), scaled down under the ``ci`` profile."""
    if not names:
        raise UsageError("name an experiment or 'all'; see 'list'")
    chosen = list(EXPERIMENTS) if list(names) == ["all"] else list(names)
    try:
        exps = [get(n) for n in chosen]
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    # under ci a set that only chooses settings (no claims, e.g. the sweep) runs one seed
    if profile != "ci":
        return exps
    return [scaled(e, CI_CHANGES_DENSE if e.run.__module__.endswith(".dense") else CI_CHANGES,
                   CI_SEEDS if e.claims else CI_SEEDS[:1]) for e in exps]


def for_book(names: Sequence[str], profile: str,
             ledger: str | Path | None = None) -> tuple[list[Experiment], Ledger]:
    """The experiments a chapter shows, and their ledger, for ``profile``.

    Under ``ci`` the reduced set is *run* here (a few seconds a run, resumed from
    ``_build/``), so a test run exercises the whole protocol live. Under ``full`` the committed
    ledger must already hold every run of the current code: a missing run raises a
    ``RuntimeError`` naming the command that makes it (hours of CPU are never started from a
    notebook, and a result of older code is never shown)."""
    exps = select(names, profile)
    book_ledger = Ledger(ledger or default_ledger(profile))
    if profile == "ci":
        run_experiments(exps, book_ledger, progress=False, log=lambda line: None)
        return exps, book_ledger
    for exp in exps:
        missing = pending(exp, book_ledger)
        if missing:
            raise RuntimeError(
                f"{exp.name}: the ledger {book_ledger.path.name} lacks {len(missing)} of its "
                f"{len(exp.arms) * len(exp.seeds)} runs for the current code; run "
                f"`python -m mobilevit_edu.experiments run {exp.name}` (or `make experiments`)")
    return exps, book_ledger


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["list", "run", "report"])
    p.add_argument("names", nargs="*", help="experiment names, or 'all'")
    p.add_argument("--profile", choices=["full", "ci"], default="full")
    p.add_argument("--ledger", default=None, help="the JSON-lines ledger (default by profile)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: five, 0-4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--shard", default="0/1", help="I/N: run the I-th of every N runs (start N "
                   "processes, I = 0..N-1, to use N cores; they share the ledger)")
    return p


def _seeds(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2")
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seeds {text!r}: seeds are integers >= 0")
    return seeds


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/2 and 1/2") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: I must be 0 to N-1")
    return index, count


def _run(args: argparse.Namespace) -> int:
    ledger = Ledger(args.ledger or default_ledger(args.profile))
    seeds = _seeds(args.seeds)
    if args.command == "list":
        for exp in select(args.names or ["all"], args.profile):
            runs = len(exp.arms) * len(seeds or exp.seeds)
            todo = len(pending(exp, ledger, seeds))
            arms = ", ".join(a.name for a in exp.arms)
            print(f"{exp.name:16s} {exp.paper:18s} {runs - todo:3d}/{runs} runs  [{arms}]")
        return 0
    exps = select(args.names, args.profile)
    if args.command == "run":
        run_experiments(exps, ledger, seeds=seeds, progress=not args.quiet,
                        shard=_shard(args.shard))
        return 0
    for exp in exps:
        try:
            rows = claim_rows(exp, ledger, seeds)
        except ValueError as err:
            raise UsageError(f"{exp.name}: {err}; run it first") from None
        print(f"{exp.name}: {exp.title} ({exp.paper})")
        for row in rows:
            print("  " + row.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user's mistake)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (UsageError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
