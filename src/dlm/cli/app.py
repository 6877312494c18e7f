"""The `dlm` command: a thin table of commands over the Python API."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dlm import __version__
from dlm.cli.fields import Flag, all_flags, apply_flags, with_defaults, with_flags
from dlm.config import (
    DiffusionConfig,
    SampleConfig,
    ServeConfig,
    TrainConfig,
    load_train_config,
)
from dlm.errors import ConfigError, DLMError
from dlm.util.wellformed import check_text, printable

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="dlm: text diffusion language models. Replies start as [MASK] tokens and are "
         "denoised in parallel steps. Start with `dlm demo`.",
)


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
    """The parameters of a command that are typer Arguments (the rest are options)."""
    import inspect
    import typing

    hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
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
# The sampling commands' options: every SampleConfig field (not given = None: the measured
# defaults of `dlm.defaults` apply) and two of the CLI's own
SAMPLING_FLAGS = [
    *all_flags(SampleConfig),
    Flag("trace", ("trace",), bool, "Show every denoising step."),
    Flag("trace_file", ("trace_file",), Path, "Write every step as JSON lines to this file."),
]
sampling_options = with_flags(SAMPLING_FLAGS, into="sampling")


def sample_config(lm, sampling: dict) -> SampleConfig:
    """The flags given, over the measured defaults of `dlm.defaults` (a flag not given
    is None)."""
    from dlm.defaults import chat_decoding

    fields = {k: v for k, v in sampling.items() if k not in ("trace", "trace_file")}
    fields["length"] = parse_length(fields.get("length"), lm)
    return chat_decoding(lm, **fields)


def load_model(ckpt: Path | None, device: str, verifier: Path | None = None,
               dtype: str = "float32"):
    """The checkpoint for a sampling command: a run's `best/` when it has one, said so;
    without one, the shipped chat model. With `verifier`, that AR checkpoint attached
    for speculative decoding (in the same dtype)."""
    from dlm.pipeline import DiffusionLM
    from dlm.shipped import shipped_checkpoint

    lm = DiffusionLM.load(ckpt or shipped_checkpoint(), device, dtype=dtype)
    if note := lm.source_note():
        typer.echo(note, err=True)  # stderr: stdout stays the replies
    if verifier is not None:
        lm.with_verifier(verifier)
    return lm


def parse_length(text: str | None, lm) -> int | str | None:
    """--length: a number of tokens or `auto`; unset (None) = the measured default of
    `dlm.defaults` (auto for a model with a length head, else the model's canvas)."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--length must be a number of tokens or 'auto', got {text!r}") \
            from None


Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Dtype = Annotated[str, typer.Option(
    help="Weights for inference: float32, or bfloat16 (faster on CPUs with bf16 matrix "
         "units and on GPUs; greedy replies may differ from float32's at near ties).")]
Verifier = Annotated[Path | None, typer.Option(
    help="AR checkpoint that verifies this model's drafts (--decode speculative): the "
         "reply is the AR model's, in fewer AR calls.")]
Judge = Annotated[Path | None, typer.Option(
    help="AR checkpoint that scores the replies (generative perplexity).")]


TRAIN_FLAGS = [*all_flags(TrainConfig), *all_flags(DiffusionConfig, nested="diffusion")]


@app.command()
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


@app.command()
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
            console.print(f"[bold]> {p}[/bold]")
        console.print(reply)
    recorder.write(console)


@app.command()
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
    ckpt: ChatCkpt = None,
    device: Device = "auto",
    sampling: dict | None = None,
):
    """Fill the blanks anywhere in a text; the given text is never changed."""
    from dlm.cli.console import TraceRecorder, console, print_trace
    from dlm.control.infill import check_template_result, read_template

    source = read_template(text, template)
    lm = load_model(ckpt, device)
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


@app.command()
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
    ckpt: ChatCkpt = None,
    device: Device = "auto",
    sampling: dict | None = None,
):
    """Re-mask a span of a text and regenerate only it; prints a before/after diff."""
    from dlm.cli.console import TraceRecorder, console, print_edit, print_trace

    lm = load_model(ckpt, device)
    config = sample_config(lm, sampling)
    recorder = TraceRecorder(lm.tokenizer, sampling.get("trace_file"), stop_at_eos=False)
    result = lm.edit(text, span, low_confidence, prompt, config, new_length, recorder.add)
    if sampling.get("trace"):
        recorder.crop(result.start)
        print_trace(prompt or "(plain text)", recorder.steps, lm.tokenizer, stop_at_eos=False)
    print_edit(result)
    recorder.write(console)


@app.command()
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


SERVE_FLAGS = with_defaults(all_flags(ServeConfig), ServeConfig())


@app.command()
@friendly_errors
@with_flags(SERVE_FLAGS, into="settings")
def serve(
    ckpt: ChatCkpt = None,
    verifier: Verifier = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    settings: dict | None = None,
):
    """Serve a checkpoint: OpenAI-style /v1 API, /v1/denoise stream, and the web page at /.
    Every ServeConfig field is a flag (not given: its default; the API key also from
    DLM_API_KEY)."""
    from dlm.server import serve as run_server
    from dlm.shipped import shipped_checkpoint

    config = ServeConfig()
    apply_flags(config, settings or {}, SERVE_FLAGS)
    config.__post_init__()  # a flag's value is checked like the default's
    run_server(ckpt or shipped_checkpoint(), config, device, verifier=verifier, dtype=dtype)


@app.command()
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
    from dlm.defaults import chat_decoding

    lm = demo_model(cache_dir, max_steps, retrain)
    if note := kept_and_last(lm):
        console.print(note)
    config = chat_decoding(lm)
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


@app.command("eval")
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
    out: Annotated[Path | None, typer.Option(
        help="Where eval.json and eval.md go (default: CKPT/eval).")] = None,
    device: Device = "auto",
):
    """Likelihood, generation quality and the steps sweep of one checkpoint."""
    from dlm.checkpoint import resolve
    from dlm.cli.console import console
    from dlm.evaluation.report import run_eval

    report = run_eval(ckpt, data, judge, prompts, draws, val_examples, steps, device=device)
    js, md = report.write(out or resolve(ckpt) / "eval")
    plots = report.plot(js.parent)
    console.print(report.markdown())
    console.print(f"written: {', '.join(str(p) for p in [js, md, *plots])}")


@app.command("sweep")
@friendly_errors
def sweep_command(
    ckpt: Ckpt,
    judge: Judge = None,
    rule: Annotated[list[str] | None, typer.Option(
        help="Commit rules to sweep (repeat; default: all).")] = None,
    steps: Annotated[list[int] | None, typer.Option(
        help="Step counts for the fixed-count rules (repeat; default 4 8 16 32).")] = None,
    remask: Annotated[list[float] | None, typer.Option(
        help="Remasking rates (repeat; default 0).")] = None,
    threshold: Annotated[list[float] | None, typer.Option(
        help="Thresholds for --rule threshold (repeat; default 0.9 0.7 0.5).")] = None,
    cfg_scale: Annotated[list[float] | None, typer.Option(
        help="Classifier-free guidance scales (repeat; default 0).")] = None,
    cache: Annotated[list[str] | None, typer.Option(
        help="Fast-dLLM cache modes (repeat: none, prefix, dual; default none).")] = None,
    length: Annotated[int, typer.Option(help="Reply tokens.")] = 32,
    eos: Annotated[str, typer.Option(help="allow, defer or ban.")] = "defer",
    block_length: Annotated[int, typer.Option(help="Semi-autoregressive blocks.")] = 0,
    prompts: Annotated[int, typer.Option(help="Held-out validation prompts.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Replies denoised together.")] = 64,
    data: Annotated[list[str] | None, typer.Option(
        help="Held-out data (default: the run's own).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where sweep.json and sweep.md go (default: CKPT/sweep).")] = None,
    device: Device = "auto",
):
    """Commit rules x steps (x remasking, x thresholds): reply quality and model calls."""
    from dlm.checkpoint import resolve
    from dlm.cli.console import console
    from dlm.evaluation.sweep import HEADER, run_sweep, sweep_grid
    from dlm.sampling import RULES

    configs = sweep_grid(length, rule or list(RULES), steps or [4, 8, 16, 32],
                         remask or [0.0], threshold or [0.9, 0.7, 0.5], eos, block_length,
                         tuple(cfg_scale or [0.0]), caches=tuple(cache or ["none"]))
    console.print(HEADER, markup=False)
    report = run_sweep(ckpt, judge, prompts, configs, data, device,
                       command="dlm sweep " + " ".join(sys.argv[2:]),
                       say=lambda line: console.print(line, markup=False),
                       batch_size=batch_size)
    js, md = report.write(out or resolve(ckpt) / "sweep")
    console.print(f"written: {js}, {md}")


@app.command()
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


@app.command()
@friendly_errors
def data(
    sources: Annotated[list[str], typer.Argument(
        help="[NAME=]LOCATION[@SPLIT]: a file (.tsv .jsonl .txt, DailyDialog .zip), a folder "
             "or .parquet/.json/.csv in a hub dataset's layout, or a hub id (owner/name).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    format: Annotated[str, typer.Option(
        help="Row layout: auto, messages, conversations, turns, dialog, pairs, instances, "
             "text.")] = "auto",
    prompt_field: Annotated[str | None, typer.Option(help="Field holding the prompt.")] = None,
    response_field: Annotated[str | None, typer.Option(help="Field holding the reply.")] = None,
    context_field: Annotated[str | None, typer.Option(
        help="Field appended to the prompt (Dolly's context).")] = None,
    split: Annotated[str | None, typer.Option(
        help="Hub split to read as training data (default: train, and validation if any).")]
    = None,
    context: Annotated[str, typer.Option(
        help="'history': a reply's prompt is the whole earlier dialogue; 'pair': the turn "
             "before only.")] = "history",
    mix: Annotated[str | None, typer.Option(
        help="Training shares per source, e.g. dailydialog=0.7,dolly=0.3.")] = None,
    lowercase: Annotated[bool, typer.Option(help="Lowercase all text.")] = False,
    min_chars: Annotated[int, typer.Option(help="Drop replies shorter than this.")] = 1,
    max_response_chars: Annotated[int, typer.Option(help="Drop replies longer than this.")]
    = 1000,
    max_prompt_chars: Annotated[int, typer.Option(help="Drop prompts longer than this.")]
    = 2000,
    val_fraction: Annotated[float, typer.Option(
        help="Held out from sources with no validation split.")] = 0.05,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary to train.")] = 8192,
    tokenizer: Annotated[str | None, typer.Option(
        help="Use this tokenizer.json or checkpoint's tokenizer instead of training one.")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the mix.")] = 0,
):
    """Normalise, clean, deduplicate, mix and tokenize data for `dlm train --data OUT`."""
    from dlm.cli.console import console, print_data_report
    from dlm.config import DataConfig
    from dlm.data.prepare import parse_mix, prepare

    cfg = DataConfig(
        sources=sources, out_dir=str(out), format=format, prompt_field=prompt_field,
        response_field=response_field, context_field=context_field, hub_split=split,
        context=context, lowercase=lowercase, min_chars=min_chars,
        max_response_chars=max_response_chars, max_prompt_chars=max_prompt_chars,
        val_fraction=val_fraction, mix=parse_mix(mix) if mix else {}, vocab_size=vocab_size,
        tokenizer=tokenizer, seed=seed)
    result = prepare(cfg, say=lambda text: console.print(f"[dim]{text}[/dim]"))
    print_data_report(result)


@app.command()
@friendly_errors
def distill(
    data: Annotated[Path, typer.Argument(help="A `dlm data` directory of chat examples.")],
    teacher: Annotated[Path, typer.Option(
        help="The checkpoint whose replies replace the data's (usually the AR verifier "
             "a drafter will serve).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    length: Annotated[int, typer.Option(help="Longest teacher reply in tokens.")] = 128,
    temperature: Annotated[float, typer.Option(help="0: the teacher's greedy replies.")] = 0.0,
    repetition_penalty: Annotated[float, typer.Option(
        help="The teacher's repetition penalty (use the decoding it will verify with).")]
    = 1.0,
    batch_size: Annotated[int, typer.Option(help="Replies per teacher call.")] = 64,
    max_examples: Annotated[int | None, typer.Option(
        help="Distill only the first N training examples.")] = None,
    max_validation: Annotated[int | None, typer.Option(
        help="Distill only the first N validation examples.")] = None,
    seed: Annotated[int, typer.Option(help="Seed when sampling (temperature > 0).")] = 0,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(
        help="The teacher's weights: float32 or bfloat16 (use the precision it will "
             "verify in).")] = "float32",
):
    """Replace every reply of a chat directory by a teacher model's own, to train a
    drafter that agrees with its verifier (`dlm train --data OUT`)."""
    from dlm.cli.console import console
    from dlm.pipeline import DiffusionLM
    from dlm.training.distill import distill as do_distill

    lm = DiffusionLM.load(teacher, device, dtype=dtype)
    config = SampleConfig(length=length, temperature=temperature,
                          repetition_penalty=repetition_penalty, seed=seed)
    result = do_distill(lm, data, out, config, batch_size, max_examples, max_validation,
                        say=lambda text: console.print(f"[dim]{text}[/dim]"))
    console.print(f"written: {result.out_dir} ({result.seconds:.0f} s)")


@app.command()
@friendly_errors
def bench(
    preset: Annotated[list[str] | None, typer.Option(
        help="Presets to time training for (repeat; 'none' for no training). "
             "Default: tiny and small.")] = None,
    generate: Annotated[str, typer.Option(
        help="Preset whose diffusion and AR models generate ('none': skip).")] = "small",
    ckpt: Annotated[Path | None, typer.Option(
        help="Generate with this trained diffusion checkpoint (with --ar-ckpt).")] = None,
    ar_ckpt: Annotated[Path | None, typer.Option(
        help="The AR baseline checkpoint to compare --ckpt with.")] = None,
    length: Annotated[list[int] | None, typer.Option(
        help="Reply lengths to generate (repeat). Default: 32, 128, 512.")] = None,
    batch: Annotated[list[int] | None, typer.Option(
        help="Generation batches (repeat). Default: 1 and 8 on CPU, 1 and 64 on GPU.")] = None,
    accuracy: Annotated[list[Path] | None, typer.Option(
        help="Also compare this checkpoint in float32 and bf16 autocast: held-out likelihood "
             "and greedy replies (repeat).")] = None,
    peer: Annotated[Path | None, typer.Option(
        help="Instead: a checkout of nathan-barry/tiny-diffusion, run side by side with "
             "dlm at its size (training tokens/s; with --peer-minutes or --peer-steps, "
             "also 240-token samples).")] = None,
    peer_minutes: Annotated[float, typer.Option(
        help="--peer: then train both this many minutes each and compare 240-token samples "
             "(0: throughput only).")] = 0.0,
    peer_steps: Annotated[int, typer.Option(
        help="--peer: or train both this many optimiser steps each (equal tokens seen; "
             "unaffected by other load) and compare 240-token samples.")] = 0,
    serve: Annotated[list[Path] | None, typer.Option(
        help="Instead: load-test `dlm serve` with this checkpoint (repeat): --serve-requests "
             "streaming chats at once, then one at a time.")] = None,
    serve_requests: Annotated[int, typer.Option(help="--serve: requests per pass.")] = 64,
    serve_max_batch: Annotated[int, typer.Option(
        help="--serve: the server's --max-batch.")] = 16,
    peer_text: Annotated[Path | None, typer.Option(
        help="--peer: the training text (default ../shared/data/tiny_shakespeare).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON and Markdown go.")]
    = Path("benchmarks"),
    name: Annotated[str, typer.Option(help="File name stem of the results.")] = "bench",
    repeats: Annotated[int, typer.Option(help="Timed runs per figure (at most).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Training (and loader) batch.")] = 8,
    seq_len: Annotated[int, typer.Option(help="Training sequence length.")] = 256,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for training and generation.")]
    = False,
    activation_checkpointing: Annotated[bool, typer.Option(
        help="Train with activation checkpointing.")] = False,
    loader: Annotated[Path | None, typer.Option(
        help="Instead: time the training loader on this `dlm data` directory's tokens, cut or "
             "repeated to each --loader-tokens size, and record its memory.")] = None,
    loader_tokens: Annotated[list[int] | None, typer.Option(
        help="Corpus sizes for --loader (repeat). Default: 1M and 50M tokens.")] = None,
    speculative: Annotated[list[int] | None, typer.Option(
        help="Also: speculative decoding with --ckpt drafting and --ar-ckpt verifying, at "
             "this draft length k (repeat; adaptive k is added), against AR at identical "
             "output.")] = None,
    draft_steps: Annotated[list[int] | None, typer.Option(
        help="--speculative: drafter calls per draft (repeat). Default: 1.")] = None,
    draft_window: Annotated[list[int] | None, typer.Option(
        help="--speculative: reply positions the drafter sees past its drafts (repeat; 0: "
             "the whole canvas). Default: 0.")] = None,
    speculative_prompts: Annotated[int | None, typer.Option(
        help="--speculative: held-out prompts every cell replies to (default: the largest "
             "--batch).")] = None,
    judge: Annotated[Path | None, typer.Option(
        help="With trained --ckpt and --ar-ckpt: an AR checkpoint (trained apart from both) "
             "that scores each sampler's replies, so speed stands beside quality.")] = None,
    draft_cache: Annotated[list[str] | None, typer.Option(
        help="--speculative: the drafter's cache (repeat): none, or prefix (the committed "
             "prefix's keys kept across rounds). Default: none.")] = None,
    speculative_dtype: Annotated[str, typer.Option(
        help="--speculative: the drafter's and verifier's weights (float32 or bfloat16); AR "
             "decoding is timed in the same precision (and in float32 too, each ratio then "
             "also given against the faster AR).")] = "float32",
    self_speculative: Annotated[bool, typer.Option(
        help="Also: a dual --ckpt (--objective dual) drafting and verifying itself, against "
             "AR decoding of its own AR half at identical output (--speculative-prompts and "
             "--speculative-dtype apply).")] = False,
    device: Device = "auto",
):
    """Training tokens/s, MFU and peak memory per preset; generation speed of diffusion vs
    the AR baseline; JSON + Markdown to benchmarks/."""
    from dlm.bench import run_bench
    from dlm.cli.console import console
    from dlm.pipeline import pick_device

    def say(text: str) -> None:
        console.print(f"[dim]{text}[/dim]")

    dev = pick_device(device)
    if loader is not None:
        import tempfile

        from dlm.bench.loader import run_loader_bench

        with tempfile.TemporaryDirectory(prefix="dlm-loader-", dir=out_dir.parent) as work:
            report = run_loader_bench(loader, loader_tokens or [1_000_000, 50_000_000],
                                      Path(work), batch_size)
    elif serve:
        from dlm.bench.serving import run_serve_bench

        report = run_serve_bench(serve, dev, serve_requests, max_batch=serve_max_batch,
                                 say=say)
    elif peer is not None:
        from dlm.bench.peer import run_peer_bench

        report = run_peer_bench(peer, dev, peer_text, repeats=repeats,
                                train_minutes=peer_minutes, train_steps=peer_steps, say=say)
    else:
        presets = [] if preset == ["none"] else preset or ["tiny", "small"]
        report = run_bench(
            dev, presets, None if generate == "none" else generate, length or [32, 128, 512],
            batch or ([1, 64] if dev.type == "cuda" else [1, 8]),
            str(ckpt) if ckpt else None, str(ar_ckpt) if ar_ckpt else None, batch_size,
            seq_len, bf16, activation_checkpointing, repeats,
            [str(p) for p in accuracy or []], say, speculative, draft_steps,
            str(judge) if judge else None, draft_window, speculative_prompts,
            speculative_dtype, draft_cache, self_speculative)
    js, md = report.write(out_dir, name)
    console.print(report.markdown())
    console.print(f"written: {js}, {md}")


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
