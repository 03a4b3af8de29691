"""The library's layers, as rules a test can break (README, "Layout").

nn (the paper's parts) < models < data < measure < deploy < train < detection, segmentation
< evaluate < experiments < plots < book: a module imports only from its own layer and those
to its left. The paper's parts, the models and everything below plots never import
matplotlib; a detection or segmentation network never imports the training loop; no private
name crosses a module; no module grows past ~400 lines; every module opens with a docstring.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mobilevit_edu"
LAYERS = ["nn", "models", "data", "measure", "deploy", "train", "detection", "segmentation",
          "evaluate", "experiments", "plots", "book"]
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["segmentation"] = RANK["detection"]  # two task packages side by side
MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else None  # None: the top-level package files


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every absolute import of mobilevit_edu in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "mobilevit_edu":
                out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append(("." * node.level + (node.module or ""), [a.name for a in node.names],
                        node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names
                    if a.name.split(".")[0] == "mobilevit_edu"]
    return out


def _target_layer(module: str, names: list[str]) -> list[str]:
    parts = module.split(".")
    if len(parts) > 1:
        return [parts[1]]
    return [n for n in names if n in RANK]  # from mobilevit_edu import data


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_from_lower_layers(path):
    layer = _layer(path)
    if layer is None:
        return  # mobilevit_edu/__init__.py re-exports the names a reader uses
    bad = []
    for module, names, line in _imports(path):
        assert not module.startswith("."), f"{path}:{line}: relative import {module}; write it absolute"
        for target in _target_layer(module, names):
            if target == layer:
                continue
            if target not in RANK or RANK[target] >= RANK[layer]:
                bad.append(f"line {line}: {layer} imports {module} ({target})")
    assert not bad, f"{path.relative_to(PKG)} breaks the layering: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_private_name_crosses_a_module(path):
    bad = [f"line {line}: from {module} import {n}" for module, names, line in _imports(path)
           for n in names if n.startswith("_")]
    assert not bad, f"{path.relative_to(PKG)} imports private names: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_modules_are_small_and_say_what_they_are(path):
    text = path.read_text()
    lines = len(text.splitlines())
    assert lines <= 450, f"{path.relative_to(PKG)} has {lines} lines; split it by concern"
    if path.name != "__main__.py" and lines > 3:
        assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(PKG)} has no docstring"


@pytest.mark.parametrize("layer", ["nn", "models", "data", "measure", "deploy", "train",
                                   "detection", "segmentation", "evaluate", "experiments"])
def test_no_matplotlib_below_plots(layer):
    for path in sorted((PKG / layer).rglob("*.py")):
        assert "matplotlib" not in path.read_text() or path.name == "photos.py", (
            f"{path.relative_to(PKG)} mentions matplotlib; drawing lives in mobilevit_edu/plots/")


def _fresh_modules(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", [
    "import mobilevit_edu",
    "from mobilevit_edu.models.mobilevit import MobileViT",
    "from mobilevit_edu.nn.block import MobileViTBlock",
])
def test_importing_the_network_does_not_import_matplotlib(statement):
    loaded = _fresh_modules(statement)
    assert not any(m.split(".")[0] == "matplotlib" for m in loaded)
    assert "mobilevit_edu.train" not in loaded


@pytest.mark.parametrize("statement", [
    "from mobilevit_edu.detection.ssdlite import SSDLite",
    "from mobilevit_edu.segmentation.deeplabv3 import DeepLabV3",
])
def test_importing_a_head_does_not_import_training_or_drawing(statement):
    loaded = _fresh_modules(statement)
    assert not any(m.startswith("mobilevit_edu.train") for m in loaded), statement
    assert not any(m.split(".")[0] == "matplotlib" for m in loaded), statement
