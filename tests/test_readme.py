"""What the README and the benchmark pages name must exist in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "benchmarks").rglob("*.md"))]


def test_every_config_a_page_names_is_committed():
    missing = []
    for page in PAGES:
        for path in re.findall(r"--config[ =]+([\w./-]+\.json)", page.read_text()):
            if path.startswith("benchmarks/") or path.startswith("recipes/"):
                if not (ROOT / path).is_file():
                    missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


def test_the_gitignore_keeps_benchmark_run_records():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "runs/" not in ignored  # that pattern also swallowed benchmarks/runs/
