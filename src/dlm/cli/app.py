"""The `dlm` command: the table of its commands, each a thin function over the Python API
in its own module (`train`, `sample`, `serve`, `data`, `evaluate`, `bench`, `export`)."""

from __future__ import annotations

import json
import sys

import typer

from dlm import __version__
from dlm.cli import bench, data, evaluate, export, sample, serve, train
from dlm.cli.bench import BENCH_FLAGS
from dlm.cli.data import DATA_FLAGS, DISTILL_FLAGS
from dlm.cli.evaluate import SWEEP_FLAGS
from dlm.cli.sample import SAMPLING_FLAGS
from dlm.cli.serve import SERVE_FLAGS
from dlm.cli.train import TRAIN_FLAGS

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="dlm: text diffusion language models. Replies start as [MASK] tokens and are "
         "denoised in parallel steps. Start with `dlm demo`.",
)
sampling = dict(cls=sample.ResolvedDefaults, epilog=sample.EPILOG)

app.command()(train.train)
app.command(**sampling)(sample.generate)
app.command(**sampling)(sample.infill)
app.command(**sampling)(sample.edit)
app.command(**sampling)(sample.chat)
app.command()(serve.serve)
app.command()(train.demo)
app.command("eval")(evaluate.eval_command)
app.command()(evaluate.sweep)
app.command()(evaluate.compare)
app.command()(data.data)
app.command()(data.distill)
app.command()(bench.bench)
app.command()(export.export)

# every command's flags, by command (the tests check them against the configs)
FLAGS = {"train": TRAIN_FLAGS, "generate": SAMPLING_FLAGS, "infill": SAMPLING_FLAGS,
         "edit": SAMPLING_FLAGS, "chat": SAMPLING_FLAGS, "serve": SERVE_FLAGS,
         "sweep": SWEEP_FLAGS, "data": DATA_FLAGS, "distill": DISTILL_FLAGS,
         "bench": BENCH_FLAGS}


@app.command()
def version():
    """Print the dlm version."""
    typer.echo(json.dumps({"dlm": __version__}))


def main() -> None:
    # Nothing dlm prints may fail to encode: a file name or echoed input that is not UTF-8
    # is written with escapes instead of ending the command with a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    app()


if __name__ == "__main__":
    main()
