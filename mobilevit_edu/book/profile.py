"""The first cell of every chapter: :func:`setup`, the profiles and the book's plot style.

Every chapter (see chapter 00, "How to use this book") opens with::

    from mobilevit_edu.book import setup
    P = setup(seed=0)

which seeds everything, sets the plot style and reads the *profile*: ``full`` (the committed
outputs) or ``ci`` (the same code with smaller budgets, for ``make test``). The profile only
scales budgets (``P.budgets["steps"]``, ``P.pick(full=..., ci=...)``), never what is computed or
checked. It comes from ``$MOBILEVIT_EDU_PROFILE``, else ``full``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROFILE_ENV",
    "PROFILES",
    "DEFAULT_PROFILE",
    "PROFILE_BUDGET_FACTOR",
    "STANDARD_BUDGETS",
    "COLOR_CYCLE",
    "Profile",
    "profile_name",
    "get_profile",
    "setup",
]

PROFILE_ENV = "MOBILEVIT_EDU_PROFILE"
PROFILES = ("full", "ci")
DEFAULT_PROFILE = "full"
#: Multiplies a chapter's ``budget_ci`` to give its time budget under each profile.
PROFILE_BUDGET_FACTOR = {"ci": 1.0, "full": 10.0}
#: Standard budgets, one dict per profile. Chapters read them as ``P.budgets["steps"]``.
STANDARD_BUDGETS: dict[str, dict[str, int]] = {
    "full": {"images": 256, "steps": 300, "repeats": 20, "epochs": 10},
    "ci": {"images": 16, "steps": 20, "repeats": 3, "epochs": 1},
}
#: The "colour-blind safe" Okabe-Ito palette, used as the book's colour cycle.
COLOR_CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


@dataclass(frozen=True)
class Profile:
    """The active profile: ``full`` (the committed outputs) or ``ci`` (same code, smaller budgets)."""

    name: str
    seed: int
    budgets: dict[str, int]

    def pick(self, full: Any, ci: Any) -> Any:
        """``full`` under the full profile, ``ci`` under the ci profile."""
        return full if self.name == "full" else ci


def profile_name(name: str | None = None) -> str:
    """``name`` checked, else the profile in ``$MOBILEVIT_EDU_PROFILE``, else ``full``.

    Raises ``ValueError`` naming the bad profile and the ones that exist."""
    name = name if name is not None else os.environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from {PROFILE_ENV}?): expected one of {PROFILES}")
    return name


def get_profile(name: str | None = None, seed: int = 0) -> Profile:
    """The profile ``name``, else the one in ``$MOBILEVIT_EDU_PROFILE``, else ``full``."""
    name = profile_name(name)
    return Profile(name=name, seed=seed, budgets=dict(STANDARD_BUDGETS[name]))


def _plot_style() -> None:
    """The book's matplotlib style (imported here only, when :func:`setup` runs)."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt  # noqa: F401  (activates the notebook backend before styling)
    from cycler import cycler

    mpl.rcdefaults()  # idempotent: running the first cell twice gives the same style
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "figure.figsize": (6.4, 4.0),
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "font.size": 10.5,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=COLOR_CYCLE),
            "grid.alpha": 0.3,
            "lines.linewidth": 1.8,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def setup(seed: int = 0) -> Profile:
    """The first cell of every chapter: seed everything, set the plot style, read the profile.

    Seeds :mod:`random`, NumPy and PyTorch, asks PyTorch for deterministic algorithms (warning
    only where none exists), flushes denormals (CPU speed), and applies the book's matplotlib
    style. Prints one line and returns the :class:`Profile`.
    """
    import numpy as np
    import torch

    profile = get_profile(seed=seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_flush_denormal(True)
    _plot_style()
    print(
        f"profile={profile.name} seed={seed} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    return profile
