"""What every command shares: errors as one line, the text checks of its arguments, the
options many commands take (checkpoint, device, dtype) and loading a model."""

from __future__ import annotations

import functools
import typing
from pathlib import Path
from typing import Annotated

import typer

from dlm.errors import DLMError
from dlm.util.wellformed import check_text, printable


def friendly_errors(fn):
    """Turn a DLMError into one line on stderr and exit code 2, without a traceback.
    Every text argument is checked first (`check_arguments`)."""
    arguments = positional_names(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            check_arguments(kwargs, arguments)
            return fn(*args, **kwargs)
        except DLMError as exc:
            typer.secho(f"error: {printable(str(exc))}", fg="red", err=True)
            raise typer.Exit(2) from None
    return wrapper


def positional_names(fn) -> set[str]:
    """The parameters of a command that are typer Arguments (the rest are options), the
    ones made from a config's fields (`dlm.cli.fields.with_flags`) included."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return {name for name, hint in hints.items()
            if any(isinstance(m, typer.models.ArgumentInfo)
                   for m in getattr(hint, "__metadata__", ()))}


def check_arguments(kwargs: dict, arguments: set[str]) -> None:
    """Refuse a text option or argument that is not well-formed Unicode, naming it: argv
    bytes that are not UTF-8 reach Python as unpaired surrogates. Paths are exempt, as
    names of files the system can open, whatever their bytes. The flags that `with_flags`
    gathers into one dict are checked one by one."""
    for key, value in kwargs.items():
        given = value.items() if isinstance(value, dict) else [(key, value)]
        for name, item in given:
            if isinstance(item, Path) or (isinstance(item, list | tuple)
                                          and any(isinstance(v, Path) for v in item)):
                continue
            check_text(item, name.upper() if name in arguments
                       else "--" + name.replace("_", "-"))


Ckpt = Annotated[Path, typer.Option("--ckpt", help="Checkpoint or run directory.")]
ChatCkpt = Annotated[Path | None, typer.Option(
    "--ckpt", help="Checkpoint or run directory (default: the shipped chat model).")]
FillCkpt = Annotated[Path | None, typer.Option(
    "--ckpt", help="Checkpoint or run directory (default: the shipped fill model, masked "
                   "diffusion).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Dtype = Annotated[str, typer.Option(
    help="Weights for inference: float32, or bfloat16 (faster on CPUs with bf16 matrix "
         "units and on GPUs; greedy replies may differ from float32's at near ties).")]
Verifier = Annotated[Path | None, typer.Option(
    help="AR checkpoint that verifies this model's drafts (--decode speculative): the "
         "reply is the AR model's, in fewer AR calls.")]
Judge = Annotated[Path | None, typer.Option(
    help="AR checkpoint that scores the replies (generative perplexity).")]


def load_model(ckpt: Path | None, device: str, verifier: Path | None = None,
               dtype: str = "float32", fill: bool = False):
    """The checkpoint for a sampling command: a run's `best/` when it has one, said so;
    without one, the shipped chat model (with `fill`, the shipped fill model). With
    `verifier`, that AR checkpoint attached for speculative decoding (in the same dtype)."""
    from dlm.pipeline import DiffusionLM

    lm = DiffusionLM.load(ckpt, device, dtype=dtype, fill=fill)  # none: a shipped model
    if note := lm.source_note():
        typer.echo(note, err=True)  # stderr: stdout stays the replies
    if verifier is not None:
        lm.with_verifier(verifier)
    return lm
