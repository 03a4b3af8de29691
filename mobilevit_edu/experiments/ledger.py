"""The ledger of experiment runs: one JSON line per finished run, appended as it finishes.

A small-scale experiment of the book is many short training runs (arms x seeds). Each run is
recorded the moment it ends, so a long set of experiments can be stopped and resumed in another
sitting: ``run_experiment`` skips every run already in the ledger. A run is identified by its
*key*: a hash of the run function, the seed, the full configuration and the **code
version** -- a hash of the library source the run depends on (comments and docstrings left out,
so editing prose does not invalidate results, editing code does). A result is never served
stale: change the code or the configuration and the old runs no longer match. The experiment
and the arm are not part of the key: two experiments that share an arm (the same function,
settings and seed) share its runs.

Each line holds the key, the configuration, the code version, the metrics, the wall time, the
thread count and the machine (CPU, torch version), so a reader can re-run any one of them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Run", "Ledger", "code_version", "run_key", "machine"]

PACKAGE = Path(__file__).resolve().parents[1]  # mobilevit_edu/


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_version(packages: Iterable[str] = ("nn", "models", "data", "train")) -> str:
    """A 12-hex-digit hash of the code of ``mobilevit_edu.<package>`` for each package: the
    syntax tree of every module, without comments and docstrings, in path order."""
    digest = hashlib.sha256()
    for name in sorted(set(packages)):
        folder = PACKAGE / name
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{name}.py"]
        if not files or not files[0].exists():
            raise ValueError(f"mobilevit_edu has no package or module {name!r}")
        for path in files:
            tree = _strip_docstrings(ast.parse(path.read_text(), str(path)))
            digest.update(str(path.relative_to(PACKAGE)).encode())
            digest.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return digest.hexdigest()[:12]


def run_key(runner: str, seed: int, config: Mapping[str, Any], code: str) -> str:
    """The identity of one run: a hash of everything that determines its result (the run
    function ``runner``, its settings, the seed and the code version)."""
    blob = json.dumps({"run": runner, "seed": seed, "config": config, "code": code},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    """Where a run ran: processor, torch version, threads, and the accelerator if any."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": device}


@dataclass(frozen=True)
class Run:
    """One finished run of one arm of one experiment with one seed."""

    experiment: str
    arm: str
    seed: int
    config: dict[str, Any]
    code: str
    metrics: dict[str, float]
    wall_s: float
    machine: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    runner: str = ""  # the run function, module.name (part of the key)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", run_key(self.runner, self.seed, self.config,
                                                    self.code))


class Ledger:
    """The runs of one result set (e.g. ``results/experiments/cpu.jsonl``), append-only."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def runs(self, experiment: str | None = None) -> list[Run]:
        """Every recorded run (of ``experiment`` if given), in the order they finished."""
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                run = Run(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"{self.path}, line {n}: not a run of this ledger ({err}); "
                                 "remove the line or restore the file") from err
            if experiment is None or run.experiment == experiment:
                out.append(run)
        return out

    def get(self, key: str) -> Run | None:
        """The run with ``key``, or None."""
        return next((r for r in self.runs() if r.key == key), None)

    def record(self, run: Run) -> None:
        """Append ``run`` as one line, flushed to disk before returning (a crash loses at most
        the run in progress). A key already present is refused: runs are never overwritten."""
        if self.get(run.key) is not None:
            raise ValueError(f"run {run.key} ({run.experiment}/{run.arm}/seed {run.seed}) is "
                             f"already in {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(run), sort_keys=True, default=str)
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
