"""`dlm data` (every DataConfig field is a flag, its sources the arguments) and `dlm
distill` (DistillConfig's): the commands that write a prepared data directory."""

from __future__ import annotations

from typing import Annotated

import typer

from dlm.cli.common import Device, friendly_errors
from dlm.cli.fields import aliased, all_flags, apply_flags, positional, with_defaults, with_flags
from dlm.config import DataConfig, DistillConfig
from dlm.util.field_docs import field_docs

# --out and --split: the spellings the documentation uses for out_dir and hub_split
DATA_FLAGS = with_defaults(positional(aliased(
    all_flags(DataConfig), out_dir=["--out"], hub_split=["--split"]), "sources"), DataConfig)
DISTILL_FLAGS = with_defaults(positional(aliased(
    all_flags(DistillConfig), out_dir=["--out"]), "data"), DistillConfig)


@friendly_errors
@with_flags(DATA_FLAGS, into="settings")
def data(
    mix: Annotated[str | None, typer.Option(
        help=field_docs(DataConfig)["mix"] + " As NAME=SHARE,..., e.g. "
        "dailydialog=0.7,dolly=0.3.")] = None,
    settings: dict | None = None,
):
    """Normalise, clean, deduplicate, mix and tokenize data for `dlm train --data OUT`."""
    from dlm.cli.console import console, print_data_report
    from dlm.data.prepare import parse_mix, prepare

    cfg = DataConfig()
    apply_flags(cfg, settings or {}, DATA_FLAGS)
    cfg.mix = parse_mix(mix) if mix else {}
    result = prepare(cfg, say=lambda text: console.print(f"[dim]{text}[/dim]"))
    print_data_report(result)


@friendly_errors
@with_flags(DISTILL_FLAGS, into="settings")
def distill(device: Device = "auto", settings: dict | None = None):
    """Replace every reply of a chat directory by a teacher model's own, to train a
    drafter that agrees with its verifier (`dlm train --data OUT`)."""
    from dlm.cli.console import console
    from dlm.training.distill import run_distill

    settings = settings or {}
    cfg = DistillConfig(settings["data"], settings["teacher"], settings["out_dir"])
    apply_flags(cfg, settings, DISTILL_FLAGS)
    result = run_distill(cfg, device, say=lambda text: console.print(f"[dim]{text}[/dim]"))
    console.print(f"written: {result.out_dir} ({result.seconds:.0f} s)")
