"""`dlm eval`, `dlm sweep` (every SweepConfig field is a flag) and `dlm compare`: what a
checkpoint is worth, and two of them side by side."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dlm.cli.common import Ckpt, Device, Judge, friendly_errors
from dlm.cli.fields import aliased, all_flags, apply_flags, with_defaults, with_flags
from dlm.config import SweepConfig

# --out: the spelling the documentation uses for out_dir
SWEEP_FLAGS = with_defaults(aliased(all_flags(SweepConfig), out_dir=["--out"]), SweepConfig)


@friendly_errors
def eval_command(
    ckpt: Ckpt,
    data: Annotated[list[str] | None, typer.Option(
        help="Held-out data: a `dlm data` directory or files (default: the run's own).")]
    = None,
    judge: Judge = None,
    prompts: Annotated[int, typer.Option(help="Validation prompts to reply to.")] = 100,
    draws: Annotated[int, typer.Option(help="Monte Carlo passes of t for the NELBO.")] = 8,
    val_examples: Annotated[int, typer.Option(help="Validation examples scored.")] = 1000,
    steps: Annotated[list[int] | None, typer.Option(
        help="Denoising steps to sweep (repeat; default 1, 2, 4, ... reply length).")] = None,
    harness: Annotated[list[str] | None, typer.Option(
        help="Instead: these lm-evaluation-harness tasks (comma-separated or repeated), "
             "dlm's local ones (tag dlm_local) beside lm-eval's own.")] = None,
    harness_args: Annotated[str, typer.Option(
        help="--harness: model arguments K=V,... (mc_num, batch_size, chat, dtype, seed, "
             "any SampleConfig field).")] = "",
    limit: Annotated[int | None, typer.Option(
        help="--harness: at most this many documents per task.")] = None,
    zero_shot: Annotated[list[str] | None, typer.Option(
        help="Instead: zero-shot perplexity on these corpora (text files, or `pydoc`: the "
             "documentation CPython ships), repeated.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where eval.json and eval.md go (default: CKPT/eval).")] = None,
    device: Device = "auto",
):
    """Likelihood, generation quality and the steps sweep of one checkpoint; or
    lm-evaluation-harness tasks (--harness); or zero-shot perplexity (--zero-shot)."""
    from dlm.checkpoint import resolve
    from dlm.cli.console import console

    folder = out or resolve(ckpt) / "eval"
    if harness:
        from dlm.cli.eval_extras import harness_run

        harness_run(ckpt, harness, harness_args, limit, device, folder)
        return
    if zero_shot:
        from dlm.cli.eval_extras import zero_shot_run

        zero_shot_run(ckpt, zero_shot, draws, device, folder)
        return
    from dlm.evaluation.report import run_eval

    report = run_eval(ckpt, data, judge, prompts, draws, val_examples, steps, device=device)
    js, md = report.write(folder)
    plots = report.plot(js.parent)
    console.print(report.markdown())
    console.print(f"written: {', '.join(str(p) for p in [js, md, *plots])}")


@friendly_errors
@with_flags(SWEEP_FLAGS, into="settings")
def sweep(ckpt: Ckpt, device: Device = "auto", settings: dict | None = None):
    """Commit rules x steps (x remasking, x thresholds): reply quality and model calls.

    Each row is otherwise the checkpoint's own default decoding (`lm.decoding()`)."""
    from dlm.checkpoint import resolve
    from dlm.cli.console import console
    from dlm.evaluation.sweep import HEADER, run_sweep

    config = SweepConfig()
    apply_flags(config, settings or {}, SWEEP_FLAGS)
    console.print(HEADER, markup=False)
    report = run_sweep(ckpt, config, device, command="dlm sweep " + " ".join(sys.argv[2:]),
                       say=lambda line: console.print(line, markup=False))
    js, md = report.write(Path(config.out_dir) if config.out_dir else resolve(ckpt) / "sweep")
    console.print(f"written: {js}, {md}")


@friendly_errors
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run, checkpoint or eval.json (A).")],
    run_b: Annotated[Path, typer.Argument(help="Run, checkpoint or eval.json (B).")],
    out: Annotated[Path, typer.Option(help="Where compare.md and the plots go.")]
    = Path("compare"),
):
    """Two evaluated runs side by side, with B/A ratios, curves and the steps sweep."""
    from dlm.cli.console import console
    from dlm.evaluation.compare import compare_runs

    text, files = compare_runs(run_a, run_b, out)
    console.print(text)
    console.print(f"written: {', '.join(str(f) for f in files)}")
