"""Measure how easy `dlm` is to pick up: the figures of issue 32's before/after table.

    python benchmarks/simplicity/measure.py [CHECKOUT] > figures.json

CHECKOUT defaults to this repository. The figures:
- the ten largest files under src/dlm and their line counts;
- functions longer than 80 lines (AST, decorators included);
- README lines;
- import circles: strongly connected groups of `dlm` modules, counting every import
  (module level, function level and `if TYPE_CHECKING:`), since each is a real dependency;
- places each default of the issue's table is written, found by the patterns below.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

# The places a setting's default (or a list of its names) is written, per row of the
# issue's table: config fields, policy code, option defaults, keyword defaults and the
# page's markup. Kernel signatures (`temperature: float = 0.0,` in a sampler's parameter
# list) take explicit values from a config and are not counted.
DEFAULT_PATTERNS = {
    "steps": [r"^\s+steps: int = \d+\s*$", r'fields\["steps"\] = ', r'"steps": length\b',
              r"^(?!\s*(?:print|lm\.generate)\().*SampleConfig\([^)\n]*\bsteps=\d",
              r'id="steps"[^>]*value='],
    "temperature": [r"^\s+temperature: float = 0\.0\s*$", r"\btemperature=0\.0\b",
                    r'id="temperature"[^>]*value='],
    "commit rule names": [r"COMMIT_RULES = \(", r"^RULES\b[^=\n]*= \{",
                          r'<option value="low_confidence"'],
    "eos": [r"""\beos\b[^=\n]*= ?["'](?:allow|defer)["']"""],
    "vocab_size": [r"\bvocab_size: int = \d+"],
}


def source_files(root: Path) -> list[Path]:
    return sorted((root / "src" / "dlm").rglob("*.py"))


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root / "src").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def long_functions(path: Path, limit: int = 80) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - start + 1
            if length > limit:
                found.append((node.name, length))
    return found


def imports_of(root: Path, path: Path, known: set[str]) -> set[str]:
    """Every dlm module `path` imports, wherever in the file the import stands."""
    me = module_name(root, path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def default_places(root: Path) -> dict[str, int]:
    texts = [p.read_text() for p in source_files(root)]
    texts += [p.read_text() for p in (root / "src" / "dlm").rglob("*.html")]
    texts += [p.read_text() for p in (root / "src" / "dlm").rglob("*.js")]
    return {
        setting: sum(len(re.findall(pattern, text, re.MULTILINE))
                     for pattern in patterns for text in texts)
        for setting, patterns in DEFAULT_PATTERNS.items()
    }


def measure(root: Path) -> dict:
    files = source_files(root)
    known = {module_name(root, p) for p in files}
    graph = {module_name(root, p): imports_of(root, p, known) for p in files}
    sizes = sorted(((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in files),
                   reverse=True)
    long = [(str(p.relative_to(root)), name, n) for p in files for name, n in long_functions(p)]
    groups = circles(graph)
    return {
        "largest_files": [{"file": f, "lines": n} for n, f in sizes[:10]],
        "modules": len(files),
        "top_level_modules": sum(1 for p in files if p.parent == root / "src" / "dlm"),
        "functions_over_80_lines": len(long),
        "long_functions": [{"file": f, "function": name, "lines": n} for f, name, n in long],
        "readme_lines": len((root / "README.md").read_text().splitlines()),
        "import_circles": len(groups),
        "modules_in_circles": sum(len(g) for g in groups),
        "circles": groups,
        "default_places": default_places(root),
    }


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    print(json.dumps(measure(root), indent=1))
