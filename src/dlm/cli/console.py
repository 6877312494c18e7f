"""Terminal presentation: the training progress bar, denoising traces, the chat REPL.

Only this module and the CLI write to the terminal; the library reports through
callbacks.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dlm.cli.render import label, render_rich, step_record, trace_line
from dlm.config import SampleConfig
from dlm.data.batch_samplers import ChatSampler
from dlm.errors import DLMError
from dlm.pipeline import DiffusionLM
from dlm.sampling import Step
from dlm.tokenizer import DLMTokenizer
from dlm.training.train import Reporter, TrainResult
from dlm.util.wellformed import problem

console = Console(highlight=False)


def print_trace(prompt: str | None, steps: list[Step], tok: DLMTokenizer, row: int = 0,
                every: int = 1, stop_at_eos: bool = True) -> None:
    """The seed prototype's trace: one line per step, `t=16  [MASK] [MASK] ...` down to t=0,
    under `> prompt` (no header when None)."""
    if prompt is not None:
        console.print(f"[bold]> {prompt}[/bold]", markup=True)
    for step in steps:
        if step.step_index % every == 0 or step is steps[-1]:
            line = Text(label(step) + " ", style="dim")
            line.append_text(render_rich(step, row, tok, stop_at_eos))
            console.print(line)


class TraceRecorder:
    """Keeps the steps of one sampling call (for --trace) and writes them as JSON lines
    (for --trace-file): one line per row and step, as `render.step_record` shapes it."""

    def __init__(self, tok: DLMTokenizer, path: Path | None = None, stop_at_eos: bool = True):
        self.tok, self.path, self.stop_at_eos = tok, path, stop_at_eos
        self.steps: list[Step] = []

    def add(self, step: Step) -> None:
        self.steps.append(step)

    def crop(self, start: int) -> None:
        """Keep only positions from `start` on (drop the prompt from the trace)."""
        self.steps = [step.crop(start) for step in self.steps]

    def write(self, out: Console | None = None, turn: int | None = None) -> None:
        """Write the steps kept so far; a chat `turn` is appended to the file, tagged."""
        if self.path is None:
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.steps[0].tokens.shape[0] if self.steps else 0
        with path.open("w" if not turn else "a", encoding="utf-8") as f:
            for row in range(rows):
                for step in self.steps:
                    record = step_record(step, row, self.tok, self.stop_at_eos)
                    if turn is not None:
                        record = {"turn": turn, **record}
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if out is not None:
            out.print(f"[dim]trace: {len(self.steps)} steps x {rows} rows -> {path}[/dim]")


def print_edit(result) -> None:
    """Before, after, and the token diff: removed struck through in red, added in green."""
    console.print(Text("before: ", style="bold").append(result.before))
    console.print(Text("after:  ", style="bold").append(result.after))
    line = Text("diff:   ", style="bold")
    styles = {"same": "", "removed": "strike red", "added": "bold green"}
    for text, kind in result.diff():
        line.append(text, style=styles[kind])
    console.print(line)
    console.print(f"[dim]diff (plain): {result.diff_text()}[/dim]", markup=True)


def plain_trace(steps: list[Step], tok: DLMTokenizer, row: int = 0) -> list[str]:
    return [trace_line(step, row, tok) for step in steps]


class RichReporter(Reporter):
    """Progress bar with loss, tokens/s and ETA; validation NELBO and sample traces."""

    def __init__(self, trace_every: int = 4):
        self.progress: Progress | None = None
        self.task = None
        self.trace_every = trace_every

    def on_data(self, reports, train, val):
        for r in reports:
            skipped = f", skipped {r.skipped_rows} bad rows" if r.skipped_rows else ""
            if r.duplicates:
                skipped += f", dropped {r.duplicates} duplicates"
            console.print(f"data: {r.source}: {r.kept} examples read{skipped}")
            for line in r.skipped[:3]:  # the first few say where to look
                console.print(f"  [yellow]skipped[/yellow] {line}")
            if len(r.skipped) > 3:
                console.print(f"  ... and {len(r.skipped) - 3} more")
        trunc = f"; {train.truncated} responses cut to the canvas" if train.truncated else ""
        if train.dropped or val.dropped:
            trunc += f"; {train.dropped + val.dropped} responses longer than the canvas left out"
        unit = "examples" if isinstance(train, ChatSampler) else f"windows of {train.seq_len}"
        console.print(f"split: {len(train)} train, {len(val)} validation {unit}{trunc}")

    def on_note(self, text):
        console.print(f"data: {text}")

    def on_start(self, info):
        cfg = info["config"]
        console.print(
            f"model: {info['parameters'] / 1e6:.2f}M parameters ({cfg.n_layers} layers, "
            f"width {cfg.d_model}, vocab {cfg.vocab_size}) on {info['device']}"
            f"{' with bf16 autocast' if info['bf16'] else ''}"
        )
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("epoch {task.fields[epoch]:.2f}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["max_steps"],
                                           completed=info["start_step"], loss=float("nan"), tps=0,
                                           epoch=0.0)

    def on_step(self, step, metrics):
        assert self.progress is not None
        self.progress.update(self.task, completed=step, loss=metrics["loss"],
                             tps=metrics["tokens_per_s"], epoch=metrics.get("epoch", 0.0))

    def on_eval(self, step, metrics, samples, tok):
        reply = (f"; {metrics[k]:.3f} per reply token" for k in ("val_nelbo_reply",
                                                                   "val_nll_reply")
                 if k in metrics)
        reply_text = next(reply, "")
        if "val_nelbo" in metrics:
            console.print(f"step {step}: validation NELBO {metrics['val_nelbo']:.3f} nats/token "
                          f"(perplexity <= {metrics['val_ppl_bound']:.1f}){reply_text}")
        elif "val_nll" in metrics:
            console.print(f"step {step}: validation NLL {metrics['val_nll']:.3f} nats/token "
                          f"(perplexity {metrics['val_ppl']:.1f}){reply_text}")
        for prompt, steps in samples:
            print_trace(prompt, steps, tok, every=self.trace_every)

    def on_save(self, step, path: Path):
        console.print(f"[dim]checkpoint at step {step}: {path}[/dim]")

    def on_end(self, result: TrainResult):
        if self.progress is not None:
            self.progress.stop()
        if result.interrupted:
            console.print(f"interrupted at step {result.steps}; continue with "
                          f"`dlm train --resume {result.out_dir}`")


def animate_reply(lm: DiffusionLM, history: list[dict[str, str]], config: SampleConfig,
                  delay: float = 0.04, recorder: TraceRecorder | None = None) -> str:
    """Denoise a reply in place: the line changes from masks to words as steps commit."""
    tok = lm.tokenizer
    with Live(Text(), console=console, refresh_per_second=30, transient=False) as live:
        def show(step: Step) -> None:
            line = Text("dlm> ", style="bold cyan")
            line.append_text(render_rich(step, 0, tok))
            live.update(line)
            if recorder is not None:
                recorder.add(step)
            if delay:
                time.sleep(delay)  # so a human can watch; the model itself is faster

        reply = lm.reply(history, config, on_step=show)
    if not console.is_terminal:
        console.print()  # Live ends its last frame with a newline only on a terminal
    return reply


def chat_repl(lm: DiffusionLM, config: SampleConfig, delay: float = 0.04,
              trace: bool = False, trace_file: Path | None = None) -> None:
    """Multi-turn chat. /quit, /reset, /steps N, /temp X. `trace`: print each reply's
    steps after it; `trace_file`: every turn's steps as JSON lines, tagged by turn."""
    turn = 0
    console.print("[dim]chat: /quit to leave, /reset to forget, /steps N, /temp X[/dim]")
    history: list[dict[str, str]] = []
    if isinstance(sys.stdin, io.TextIOWrapper):  # a line that is not UTF-8 is refused, not fatal
        sys.stdin.reconfigure(errors="surrogateescape")
    while True:
        try:
            line = console.input("[bold]you> [/bold]").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if (said := problem(line)) is not None:  # bytes that are not UTF-8 on stdin
            console.print(f"[red]{said}; the line is ignored[/red]")
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            try:
                if cmd == "/quit":
                    return
                if cmd == "/reset":
                    history = []
                    console.print("[dim]history cleared[/dim]")
                elif cmd == "/steps":
                    config = SampleConfig(**{**vars(config), "steps": int(arg)})
                    console.print(f"[dim]steps = {config.steps}[/dim]")
                elif cmd == "/temp":
                    config = SampleConfig(**{**vars(config), "temperature": float(arg)})
                    console.print(f"[dim]temperature = {config.temperature}[/dim]")
                else:
                    console.print("[yellow]commands: /quit /reset /steps N /temp X[/yellow]")
            except (ValueError, DLMError) as exc:
                console.print(f"[red]{cmd}: {exc}[/red]")
            continue
        history.append({"role": "user", "content": line})
        recorder = TraceRecorder(lm.tokenizer, trace_file)
        reply = animate_reply(lm, history, config, delay, recorder)
        history.append({"role": "assistant", "content": reply})
        if trace:
            print_trace(None, recorder.steps, lm.tokenizer)
        recorder.write(turn=turn)
        turn += 1


def print_data_report(result) -> None:
    """The steps of `dlm data` as one table: kept, dropped and why, per source and split."""
    from rich.table import Table

    table = Table(title=f"dlm data -> {result.out_dir}", show_lines=False)
    for col in ("step", "source", "split", "kept", "dropped (why)", "notes"):
        table.add_column(col, justify="right" if col == "kept" else "left")
    for s in result.steps:
        dropped = ", ".join(f"{why}: {n:,}" for why, n in s.dropped.items() if n)
        notes = ", ".join(f"{what}: {n:,}" for what, n in s.notes.items())
        table.add_row(s.step, s.source, s.split, f"{s.kept:,}", dropped, notes)
    # a log file gets the whole table, not one wrapped to 80 columns
    (console if console.is_terminal else Console(width=150)).print(table)
    for line in result.read_problems:
        console.print(f"  [yellow]skipped[/yellow] {line}")
    sizes = ", ".join(f"{split}: {result.examples[split]:,} examples, "
                      f"{result.tokens[split]:,} tokens" for split in result.tokens)
    console.print(f"{sizes}; {result.seconds:.1f} s")
