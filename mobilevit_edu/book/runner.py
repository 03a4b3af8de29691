"""Executing the chapters: each in a fresh kernel of this interpreter, under a profile and a budget.

The book's own tooling (chapter 00 explains it; ``python -m mobilevit_edu.book run`` uses it).
Time budgets: each chapter declares ``budget_ci``, seconds of cell execution (kernel start-up
excluded) under the ``ci`` profile. The budget a run enforces is::

    budget = budget_ci * PROFILE_BUDGET_FACTOR[profile] * timeout_scale   (ci: 1x, full: 10x)

A chapter that finishes within its budget is ``ok``; one that finishes later is ``over budget``;
one still running at twice its budget is interrupted (``over budget (stopped)``). Both fail the run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from mobilevit_edu.book.manifest import KERNEL_NAME, Book, Chapter
from mobilevit_edu.book.profile import PROFILE_BUDGET_FACTOR, PROFILE_ENV, profile_name

__all__ = ["HARD_LIMIT_FACTOR", "RunResult", "run_chapters", "format_summary"]

#: A chapter still running at this multiple of its budget is interrupted.
HARD_LIMIT_FACTOR = 2.0


@dataclass
class RunResult:
    """The outcome of executing one chapter."""

    chapter: Chapter
    seconds: float
    budget: float
    status: str  # "ok", "error", "over budget", "over budget (stopped)", "missing"
    error: str = ""
    executed: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _current_env_kernel_manager_class() -> type:
    """An ``AsyncKernelManager`` whose ``python3`` kernel is ipykernel in *this* interpreter."""
    from ipykernel.kernelspec import RESOURCES, make_ipkernel_cmd
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == KERNEL_NAME:
                return KernelSpec(
                    argv=make_ipkernel_cmd(executable=sys.executable),
                    display_name="Python 3",
                    language="python",
                    resource_dir=RESOURCES,
                )
            return super().get_kernel_spec(kernel_name)

    class CurrentEnvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_ksm(self) -> KernelSpecManager:
            return CurrentEnvKernelSpecManager(data_dir=self.data_dir)

    return CurrentEnvKernelManager


def _execute(nb: Any, cwd: Path, env: dict[str, str], budget: float) -> tuple[float, str, str]:
    """Execute ``nb`` in place; return (seconds, status, error message)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    hard = budget * HARD_LIMIT_FACTOR
    state = {"deadline": float("inf")}
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=_current_env_kernel_manager_class(),
        resources={"metadata": {"path": str(cwd)}},
        timeout_func=lambda cell: max(1, int(state["deadline"] - time.monotonic() + 1)),
        record_timing=False,
        startup_timeout=120,
        shutdown_kernel="immediate",
    )
    t0 = time.monotonic()
    status, error = "ok", ""
    try:
        with client.setup_kernel(env=env):
            reply = client.wait_for_reply(client.kc.kernel_info())
            if reply and "language_info" in reply["content"]:
                nb.metadata["language_info"] = reply["content"]["language_info"]
            t0 = time.monotonic()  # budgets count cell execution, not kernel start-up
            state["deadline"] = t0 + hard
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
    except CellTimeoutError:
        status, error = "over budget (stopped)", f"stopped at {hard:.0f} s ({HARD_LIMIT_FACTOR:g}x budget)"
    except CellExecutionError as exc:
        status = "error"
        error = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", "") else str(exc).splitlines()[0]
    except Exception as exc:  # kernel died, failed to start, ...
        status, error = "error", f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - t0
    if status == "ok" and seconds > budget:
        status = "over budget"
    return seconds, status, error


def run_chapters(
    book: Book,
    selection: Sequence[str] = (),
    *,
    profile: str | None = None,
    write: bool = False,
    timeout_scale: float = 1.0,
    build_dir: Path | None = None,
    progress: bool = True,
    extra_env: dict[str, str] | None = None,
) -> list[RunResult]:
    """Execute chapters (all, in book order, or those in ``selection``) under a profile.

    Each chapter runs in a fresh ``python3`` kernel of this interpreter, with ``chapters/`` as
    its working directory, ``$MOBILEVIT_EDU_PROFILE`` set and ``extra_env`` added. Executed
    copies always go to ``_build/executed/NN_slug.ipynb``; with ``write`` the outputs of chapters
    without errors are also written back into ``chapters/``.
    """
    import nbformat
    from tqdm.auto import tqdm

    profile = profile_name(profile)
    chapters = [book.find(k) for k in selection] if selection else list(book.chapters)
    out_dir = (build_dir or book.root / "_build") / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {}), PROFILE_ENV: profile}
    results: list[RunResult] = []
    bar = tqdm(chapters, unit="chapter", disable=not progress, file=sys.stderr)
    for ch in bar:
        bar.set_description(ch.name)
        budget = ch.budget_ci * PROFILE_BUDGET_FACTOR[profile] * timeout_scale
        src = book.notebook(ch)
        if not src.is_file():
            results.append(RunResult(ch, 0.0, budget, "missing", f"{ch.path} does not exist"))
            continue
        nb = nbformat.read(src, as_version=4)
        seconds, status, error = _execute(nb, src.parent, env, budget)
        executed = out_dir / f"{ch.name}.ipynb"
        nbformat.write(nb, executed)
        if write and status in ("ok", "over budget"):
            nbformat.write(nb, src)
        results.append(RunResult(ch, seconds, budget, status, error, executed))
    bar.close()
    return results


def format_summary(results: Iterable[RunResult], profile: str) -> str:
    """The run's summary table (chapter, seconds, budget, status)."""
    lines = [f"profile: {profile}", f"{'chapter':<34} {'seconds':>8} {'budget':>8}  status"]
    for r in results:
        line = f"{r.chapter.name:<34} {r.seconds:8.1f} {r.budget:8.0f}  {r.status}"
        lines.append(line + (f"  -- {r.error}" if r.error else ""))
    return "\n".join(lines)
