"""What every benchmark shares: where it ran, robust timing, and the JSON + Markdown report.

Figures are medians over repeats with their spread, and each report records the
command, git commit, device, torch version and dtype, so a number is never
separated from where it came from.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.util.portable import portable


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return platform.processor() or "cpu"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def spread(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return {"median": statistics.median(samples), "p10": qs[0], "p90": qs[-1],
            "runs": len(samples)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int,
          budget_s: float = float("inf")) -> tuple[dict[str, float], Any]:
    """Run `fn` at least once and up to `repeats` times (fewer once `budget_s` is spent);
    returns the spread of wall times and the last result."""
    times: list[float] = []
    result = None
    while len(times) < max(repeats, 1) and (not times or sum(times) < budget_s):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return spread(times), result


def run_meta(device: torch.device, **extra: Any) -> dict[str, Any]:
    return {"command": " ".join(["dlm", *sys.argv[1:]]) if sys.argv else "dlm bench",
            "commit": git_commit(), "device": device_name(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), **extra}


# kind of result -> function that renders that kind's results as Markdown lines
Renderer = Callable[[list[dict[str, Any]]], list[str]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn
    return register


@dataclass
class BenchReport:
    results: list[dict[str, Any]]
    meta: dict[str, Any]

    def markdown(self) -> str:
        m = self.meta
        lines = [f"# dlm bench ({m['date']})", "",
                 f"`{m['command']}` at commit {m['commit']}, on {m['device']}, "
                 f"torch {m['torch']}."]
        for key, label in (("dtype", "dtype"), ("matmul_peak_flops", "peak (MFU denominator)")):
            if key in m:
                value = m[key]
                if isinstance(value, float):
                    value = f"{value / 1e9:,.0f} GFLOP/s ({m.get('peak_source', '')})"
                lines.append(f"{label}: {value}.")
        kinds = list(dict.fromkeys(r["what"] for r in self.results))
        for kind in kinds:
            lines += ["", *RENDERERS[kind]([r for r in self.results if r["what"] == kind])]
        for note in m.get("notes", []):
            lines += ["", note]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, name: str) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
        # a committed result names no folder of the machine that wrote it
        js.write_text(portable(json.dumps({**self.meta, "results": self.results},
                                          indent=2)) + "\n")
        md.write_text(portable(self.markdown()))
        return js, md
