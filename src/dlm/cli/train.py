"""`dlm train` (every TrainConfig and DiffusionConfig field is a flag) and `dlm demo`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dlm.cli.common import friendly_errors
from dlm.cli.fields import all_flags, apply_flags, with_flags
from dlm.config import DiffusionConfig, TrainConfig, load_train_config

TRAIN_FLAGS = [*all_flags(TrainConfig), *all_flags(DiffusionConfig, nested="diffusion")]


@friendly_errors
@with_flags(TRAIN_FLAGS)
def train(
    config: Annotated[Path | None, typer.Option(help="JSON file of TrainConfig fields.")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the run saved in this run or checkpoint directory.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="One forward/backward pass: shapes, parameters, loss; writes nothing."
    )] = False,
    flags: dict | None = None,
):
    """Train a diffusion chat model (flags override the --config file)."""
    from dlm.cli.console import RichReporter, console
    from dlm.training.train import dry_run as do_dry_run
    from dlm.training.train import train as do_train

    cfg = load_train_config(config) if config else TrainConfig()
    flags = flags or {}
    apply_flags(cfg, flags, TRAIN_FLAGS)
    cfg.diffusion.__post_init__()  # a flag's value is checked like the file's
    if dry_run:
        info = do_dry_run(cfg)
        for r in info.pop("reports"):
            console.print(f"data: {r.source}: {r.kept} examples, {r.skipped_rows} skipped")
        for key, value in info.items():
            console.print(f"{key}: {value}")
        return
    if resume is not None and flags:
        console.print("[yellow]--resume continues the saved run's config; other flags are "
                      "ignored[/yellow]")
    result = do_train(cfg, RichReporter(), resume=resume)
    console.print(f"saved: {result.checkpoint}")


@friendly_errors
def demo(
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where the demo model lives (default: the user cache directory).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps (default: the demo's).")]
    = None,
    retrain: Annotated[bool, typer.Option(help="Train again even if a demo model exists.")]
    = False,
    chat: Annotated[bool, typer.Option(help="Open the chat after the traces.")] = True,
):
    """Train the tiny model on the embedded corpus (once), show traces, then chat."""
    from dlm.cli.console import chat_repl, console
    from dlm.cli.demo import DEMO_PROMPTS, demo_model, demo_traces, kept_and_last, side_by_side

    lm = demo_model(cache_dir, max_steps, retrain)
    if note := kept_and_last(lm):
        console.print(note)
    config = lm.decoding()
    demo_traces(lm, DEMO_PROMPTS, config)
    console.print("\n[bold]the demo model beside the shipped model[/bold] (same prompts):")
    for prompt, ours, theirs in side_by_side(lm, DEMO_PROMPTS):
        shipped = theirs if theirs is not None else "(no shipped model in this install)"
        console.print(f"> {prompt}\n  demo:    {ours}\n  shipped: {shipped}")
    if chat and sys.stdin.isatty():
        chat_repl(lm, config)
    elif chat:
        console.print("[dim](no terminal on stdin: skipping the chat; run `dlm chat --ckpt "
                      f"{lm.source}`)[/dim]")
