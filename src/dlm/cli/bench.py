"""`dlm bench`: every BenchConfig field is a flag, shown with its default."""

from __future__ import annotations

from pathlib import Path

from dlm.cli.common import Device, friendly_errors
from dlm.cli.fields import all_flags, apply_flags, with_defaults, with_flags
from dlm.config import BenchConfig

BENCH_FLAGS = with_defaults(all_flags(BenchConfig), BenchConfig)


@friendly_errors
@with_flags(BENCH_FLAGS, into="settings")
def bench(device: Device = "auto", settings: dict | None = None):
    """Training tokens/s, MFU and peak memory per preset; generation speed of diffusion vs
    the AR baseline; JSON + Markdown to benchmarks/."""
    from dlm.bench import run_bench
    from dlm.cli.console import console
    from dlm.pipeline import pick_device

    config = BenchConfig()
    apply_flags(config, settings or {}, BENCH_FLAGS)
    report = run_bench(config, pick_device(device),
                       say=lambda text: console.print(f"[dim]{text}[/dim]"))
    js, md = report.write(Path(config.out_dir), config.name)
    console.print(report.markdown())
    console.print(f"written: {js}, {md}")
