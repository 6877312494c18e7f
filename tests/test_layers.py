"""The architecture holds: import-linter's contracts in pyproject.toml (the layers from
the CLI down to the errors, and a library that never reaches the terminal, the server or
the benchmarks) are kept, and every part says in its docstring what it may import."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import dlm

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


@pytest.mark.parametrize("part", [m.name for m in pkgutil.iter_modules(dlm.__path__) if m.ispkg])
def test_every_part_says_what_it_is_and_may_import(part):
    doc = importlib.import_module(f"dlm.{part}").__doc__ or ""
    assert len(doc.split()) >= 12, f"dlm.{part} has no docstring saying what the part does"
    assert "import" in doc.lower(), f"dlm.{part}'s docstring does not say what it may import"


def test_the_top_level_holds_only_the_core():
    top = sorted(m.name for m in pkgutil.iter_modules(dlm.__path__) if not m.ispkg)
    assert len(top) <= 10, f"{len(top)} top-level modules: {top}; put a part in a subpackage"


def test_no_import_circle_among_dlms_modules():
    """Within a part too (the layers contract checks between parts): no two modules need
    each other, counting function-level and type-only imports, as measure.py counts them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "measure", ROOT / "benchmarks" / "simplicity" / "measure.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    files = measure.source_files(ROOT)
    known = {measure.module_name(ROOT, p) for p in files}
    graph = {measure.module_name(ROOT, p): measure.imports_of(ROOT, p, known) for p in files}
    assert measure.circles(graph) == []
    graph["dlm.errors"] = graph["dlm.errors"] | {"dlm.config"}  # the check can fail
    assert measure.circles(graph)
