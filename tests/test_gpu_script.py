"""benchmarks/gpu/run.sh --smoke: the GPU script's every step at tiny shapes on this
device, so the script a lent GPU runs once is known to work before it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_script_runs_every_step_at_tiny_shapes(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed")
    run = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--smoke", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (js,) = tmp_path.glob("smoke-*.json")
    result = json.loads(js.read_text())
    markdown = js.with_suffix(".md").read_text()
    assert result["smoke"] and result["device"] in markdown
    decodings = {r["variant"] for r in result["generation"]["rows"]}
    assert "AR + KV cache" in decodings and any("prefix cache" in d for d in decodings)
    assert any("dual cache" in d for d in decodings)
    assert {r["batch"] for r in result["generation"]["rows"]} == {1, 2}
    assert all(r["tokens_per_s"] > 0 for r in result["generation"]["rows"])
    assert 0 < result["training"]["rows"][0]["mfu"] < 1
    assert [(r["parallel"], r["returncode"]) for r in result["parallel"]] == [("ddp", 0),
                                                                             ("fsdp", 0)]
    assert all(r["tokens_per_s"] for r in result["parallel"])
    gpu = result["gpu_tests"]
    assert gpu["returncode"] == 0 and gpu.get("skipped", 0) >= 3  # no CUDA here: skipped
