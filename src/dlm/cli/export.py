"""`dlm export`: a checkpoint written in the field's layout of its kind (Llama for AR,
LLaDA or Dream for masked diffusion), so `transformers` and those models' own code read
it (`dlm.layouts.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlm.cli.common import friendly_errors


@friendly_errors
def export(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    out: Annotated[Path, typer.Argument(help="Folder to write (config.json, "
                                              "model.safetensors, tokenizer files).")],
    merge: Annotated[bool, typer.Option(help="Fold a LoRA checkpoint's adapters into the "
                                             "weights (required for one).")] = False,
):
    """Write a checkpoint as LlamaForCausalLM (AR), or in LLaDA's or Dream's layout
    (masked diffusion; Dream when adapted from AR), with its tokenizer and chat template."""
    from dlm.cli.console import console
    from dlm.layouts.export import export as write
    from dlm.pipeline import DiffusionLM

    folder, notes = write(DiffusionLM.load(ckpt, "cpu"), out, merge)
    for note in notes:
        console.print(f"left out: {note}", markup=False)
    console.print(f"written: {folder}", markup=False)
