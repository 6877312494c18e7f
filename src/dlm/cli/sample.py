"""The sampling commands: `dlm generate`, `infill`, `edit` and `chat`. Their options are
every SampleConfig field (not given: the model's resolved default, `lm.decoding()`) and
two of the CLI's own (`--trace`, `--trace-file`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from dlm.cli.common import ChatCkpt, Device, Dtype, FillCkpt, Verifier, friendly_errors, load_model
from dlm.cli.fields import Flag, all_flags, shown, with_flags
from dlm.config import SampleConfig
from dlm.errors import ConfigError, DLMError

SAMPLING_FLAGS = [
    *all_flags(SampleConfig),
    Flag("trace", ("trace",), bool, "Show every denoising step."),
    Flag("trace_file", ("trace_file",), Path, "Write every step as JSON lines to this file."),
]
sampling_options = with_flags(SAMPLING_FLAGS, into="sampling")
EPILOG = ("The sampling flags' defaults shown are the shipped model's decoding "
          "(`lm.decoding()`); with --ckpt, that model's own apply.")
FILL_COMMANDS = ("infill", "edit")
"""The commands that fill masks anywhere: without --ckpt, the shipped fill model."""


@functools.cache
def shipped_decoding(fill: bool = False) -> dict[str, str]:
    """Each SampleConfig field's value in the shipped model's decoding (the fill model's
    with `fill`), as the help shows it (empty when this install has no such model)."""
    from dataclasses import asdict

    from dlm.pipeline import DiffusionLM

    try:
        lm = DiffusionLM.load(device="cpu", fill=fill)  # a shipped model
    except DLMError:
        return {}
    return {name: shown(value) for name, value in asdict(lm.decoding()).items()}


class ResolvedDefaults(TyperCommand):
    """A sampling command whose --help shows each sampling flag's resolved default: the
    flags default to None (not given), so that a checkpoint's own decoding applies; the
    help shows the shipped model's (the fill model's for infill and edit), read only when
    help is asked for."""

    def format_help(self, ctx, formatter) -> None:
        defaults = shipped_decoding(fill=self.name in FILL_COMMANDS)
        for param in self.params:
            if param.name in defaults and "[default:" not in (param.help or ""):
                # `\[`: the help is Rich markup, where a bare [ ] is a tag
                param.help = f"{param.help} \\[default: {defaults[param.name]}]"
        return super().format_help(ctx, formatter)


def sample_config(lm, sampling: dict) -> SampleConfig:
    """The flags given, over the model's resolved defaults (`lm.decoding()`; a flag not
    given is None)."""
    fields = {k: v for k, v in sampling.items() if k not in ("trace", "trace_file")}
    fields["length"] = parse_length(fields.get("length"))
    return lm.decoding(**fields)


def parse_length(text: str | None) -> int | str | None:
    """--length: a number of tokens or `auto`; unset (None) = the resolver's default (the
    model's canvas)."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--length must be a number of tokens or 'auto', got {text!r}") \
            from None


@friendly_errors
@sampling_options
def generate(
    prompt: Annotated[list[str], typer.Option(help="Prompt; repeat for a batch.")],
    n: Annotated[int, typer.Option(help="Samples per prompt.")] = 1,
    force: Annotated[list[str] | None, typer.Option(
        help="POSITION:WORD: the word's tokens start at this reply token (repeat).")] = None,
    require: Annotated[list[str] | None, typer.Option(
        help="A word the reply must contain, where the model finds it likeliest (repeat).")]
    = None,
    ckpt: ChatCkpt = None,
    verifier: Verifier = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    sampling: dict | None = None,
):
    """Reply to prompts, optionally showing the denoising trace."""
    from dlm.cli.console import TraceRecorder, console, print_trace
    from dlm.control import Constraints

    lm = load_model(ckpt, device, verifier, dtype)
    config = sample_config(lm, sampling)
    recorder = TraceRecorder(lm.tokenizer, sampling.get("trace_file"))
    constraints = Constraints.parse(force, require)
    replies = lm.generate(prompt, config, n=n, on_step=recorder.add, constraints=constraints)
    for i, reply in enumerate(replies):
        p = prompt[i // n]
        if sampling.get("trace"):
            print_trace(p, recorder.steps, lm.tokenizer, row=i)
        else:
            console.print(f"> {p}", style="bold", markup=False)
        console.print(reply, markup=False)  # the reply as written, brackets included
    recorder.write(console)


@friendly_errors
@sampling_options
def infill(
    text: Annotated[str | None, typer.Argument(
        help="Text with blanks: [MASK] one token, [MASK*n] n tokens, [MASK*?] up to "
             "--max-span tokens.")] = None,
    template: Annotated[Path | None, typer.Option(
        help="Read the text from this file instead (e.g. a JSON object with masked values; "
             "a .json result is checked to parse).")] = None,
    prompt: Annotated[str | None, typer.Option(
        help="Treat the text as the reply to this prompt (which may hold blanks too).")]
    = None,
    max_span: Annotated[int, typer.Option(help="Most tokens a [MASK*?] span holds.")] = 8,
    ckpt: FillCkpt = None,
    device: Device = "auto",
    sampling: dict | None = None,
):
    """Fill the blanks anywhere in a text; the given text is never changed."""
    from dlm.cli.console import TraceRecorder, console, print_trace
    from dlm.control.infill import check_template_result, read_template

    source = read_template(text, template)
    lm = load_model(ckpt, device, fill=True)  # none: the shipped fill model
    config = sample_config(lm, sampling)
    recorder = TraceRecorder(lm.tokenizer, sampling.get("trace_file"), stop_at_eos=False)
    result = lm.infill(source, prompt, config, max_span, recorder.add)
    if sampling.get("trace"):
        recorder.crop(result.start)
        print_trace(prompt or "(plain text)", recorder.steps, lm.tokenizer, stop_at_eos=False)
    if result.prompt is not None and result.prompt != prompt:
        console.print(f"[bold]prompt:[/bold] {result.prompt}")
    console.print(result.text, markup=False)
    problem = check_template_result(result.text, template)
    if problem:
        console.print(f"[yellow]{problem}[/yellow]")
    recorder.write(console)


@friendly_errors
@sampling_options
def edit(
    text: Annotated[str, typer.Option(help="The text to edit.")],
    span: Annotated[str | None, typer.Option(
        help="What to regenerate: a regex (its first match) or a character range A:B.")]
    = None,
    low_confidence: Annotated[int, typer.Option(
        help="Instead: regenerate the K tokens the model finds least likely.")] = 0,
    new_length: Annotated[int | None, typer.Option(
        help="Tokens for the new span (default: as many as it had).")] = None,
    prompt: Annotated[str | None, typer.Option(
        help="Treat the text as the reply to this prompt.")] = None,
    ckpt: FillCkpt = None,
    device: Device = "auto",
    sampling: dict | None = None,
):
    """Re-mask a span of a text and regenerate only it; prints a before/after diff."""
    from dlm.cli.console import TraceRecorder, console, print_edit, print_trace

    lm = load_model(ckpt, device, fill=True)  # none: the shipped fill model
    config = sample_config(lm, sampling)
    recorder = TraceRecorder(lm.tokenizer, sampling.get("trace_file"), stop_at_eos=False)
    result = lm.edit(text, span, low_confidence, prompt, config, new_length, recorder.add)
    if sampling.get("trace"):
        recorder.crop(result.start)
        print_trace(prompt or "(plain text)", recorder.steps, lm.tokenizer, stop_at_eos=False)
    print_edit(result)
    recorder.write(console)


@friendly_errors
@sampling_options
def chat(
    delay: Annotated[float, typer.Option(help="Seconds to pause per step, to watch it.")] = 0.04,
    ckpt: ChatCkpt = None,
    verifier: Verifier = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    sampling: dict | None = None,
):
    """Multi-turn chat; each reply denoises in place. /quit /reset /steps N /temp X."""
    from dlm.cli.console import chat_repl

    lm = load_model(ckpt, device, verifier, dtype)
    chat_repl(lm, sample_config(lm, sampling), delay, sampling.get("trace", False),
              sampling.get("trace_file"))
