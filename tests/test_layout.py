"""The package's shape: imports point one way, nothing imports TensorFlow early, modules stay small."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fastism_dist"
# A package may import fastism_dist.errors and the packages before it in this order.
ORDER = ["core", "io", "store", "outputs", "distributed", "analysis", "export"]
TOP_LEVEL = {"cli", "demo"}  # may import anything
MAX_LINES = 500


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "data" not in p.relative_to(PACKAGE).parts)


def _stage(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0]


def _imports(tree):
    """(module name, is inside a function) for every import of fastism_dist."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
                found.extend((n, inner) for n in names if n.startswith("fastism_dist"))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names
                             if a.name.startswith("fastism_dist"))
            visit(child, inner)

    visit(tree, False)
    return found


def _target_stage(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    stage = _stage(path)
    for name, in_function in _imports(ast.parse(path.read_text())):
        target = _target_stage(name)
        assert not in_function or stage in TOP_LEVEL or target in (None, "models"), (
            f"{path.name}: function-level import of {name}")
        if stage in TOP_LEVEL or stage not in ORDER or target not in ORDER:
            continue
        assert ORDER.index(target) <= ORDER.index(stage), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("code", [
    "import fastism_dist",
    "import fastism_dist.core, fastism_dist.io, fastism_dist.store, fastism_dist.outputs",
    "from fastism_dist.cli import build_parser; build_parser()",
])
def test_no_tensorflow_at_import(code):
    check = f"{code}; import sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)
