"""Shared pytest configuration for the library tests and for nbval over chapters/.

nbval compares, in cells marked ``# NBVAL_CHECK_OUTPUT``, every output the notebook stored. We
never compare stderr (warnings, progress bars) or rich HTML. pytest scopes a conftest's
collection hooks to its own directory, so instead of a ``pytest_collectstart`` here (which would
not see ``chapters/``) we register a small plugin object, which applies everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBVAL_SKIP_COMPARE = ("stderr", "text/html", "application/javascript")


class _NbvalTweaks:
    """Adds stderr and HTML to the outputs nbval skips when comparing notebook cells."""

    @pytest.hookimpl
    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        path = getattr(collector, "path", None)
        if path is not None and path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
            collector.skip_compare = tuple(collector.skip_compare) + NBVAL_SKIP_COMPARE


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("mobilevit-edu-nbval"):
        config.pluginmanager.register(_NbvalTweaks(), "mobilevit-edu-nbval")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def figures_in_tmp(tmp_path, monkeypatch):
    """Send ``save_figure`` output to a temporary folder (never the committed figures/) and close
    every figure afterwards. Plot tests use it with ``pytestmark = usefixtures(...)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path))
    yield tmp_path
    plt.close("all")


def calibrate_random_batchnorm(model, images) -> None:
    """Make a randomly initialised network's eval output depend on its input (for equivalence
    tests): randomise every BatchNorm's affine parameters, then set its running statistics with
    the library's one :func:`~mobilevit_edu.models.batchnorm.calibrate_batchnorm` on ``images``
    (a positional call, which Hugging Face's models read as ``pixel_values``).

    With default statistics (mean 0, var 1) a fresh network's activations shrink to almost nothing
    in eval mode and every input gives nearly the same output, which would make a comparison blind
    to a broken layer."""
    import torch
    from torch import nn

    from mobilevit_edu.models.batchnorm import calibrate_batchnorm

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    calibrate_batchnorm(model, images)
