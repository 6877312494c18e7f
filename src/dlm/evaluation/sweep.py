"""The sampling sweep: commit rules x steps (x remasking, x thresholds) on held-out prompts,
each row with the quality of its replies and what it cost.

    from dlm.config import SweepConfig
    from dlm.evaluation.sweep import run_sweep
    report = run_sweep("runs/chat", SweepConfig(rule=["threshold"], judge="runs/chat-ar"))

Every row starts from the checkpoint's own default decoding (`lm.decoding()`), so it
differs from what the model's users get only in the settings the row names.

Quality is `quality.generation_quality` (generative perplexity under the AR judge, beside
unigram entropy and distinct-2). Cost is model calls (NFE) per reply, counted per row:
a row stops costing once its canvas is full, even if others in its batch go on; and
wall time of generating all the replies, batch by batch (judging excluded).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.config import COMMIT_RULES, SampleConfig, SweepConfig
from dlm.evaluation.quality import Quality, generation_quality
from dlm.sampling import Step


class CallCounter:
    """Model calls per reply, from the steps the sampler yields (an `on_step` callback)."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []
        self.committed: list[torch.Tensor] = []
        self.last_nfe = 0
        self.batch_calls = 0  # forward passes actually run, over all batches

    def __call__(self, step: Step) -> None:
        if step.step_index == 0:  # a new batch
            self.rows.append(torch.zeros(step.tokens.shape[0]))
            self.committed.append(torch.zeros(step.tokens.shape[0]))
            self.last_nfe = 0
            return
        calls = step.nfe - self.last_nfe
        self.last_nfe = step.nfe
        self.batch_calls += calls
        busy = step.newly_committed.any(1).float().cpu()  # rows that still had masks
        self.rows[-1] += calls * busy
        self.committed[-1] += step.newly_committed.sum(1).float().cpu()

    def mean_calls(self) -> float:
        return float(torch.cat(self.rows).mean())

    def tokens_per_call(self) -> float:
        return float(torch.cat(self.committed).sum() / torch.cat(self.rows).sum())


@dataclass
class SweepRow:
    rule: str
    steps: int
    """The step budget (threshold: an upper bound)."""
    remask: float
    threshold: float | None
    block_length: int
    cfg_scale: float
    cache: str
    nfe: float
    """Mean model calls per reply."""
    tokens_per_call: float
    """Tokens committed per model call (a re-masked token counts again when recommitted)."""
    seconds: float
    """Wall time of generating all the replies (judging excluded)."""
    batch_calls: int
    """Forward passes run: a batch goes on until its slowest row is done."""
    batch_size: int
    quality: Quality


def sweep_grid(config: SweepConfig, base: SampleConfig) -> list[SampleConfig]:
    """Every fixed-count rule at every step count and remasking rate; the threshold rule at
    every threshold, with the reply length as its budget; all at every guidance scale and
    cache mode. Each is `base` (the model's default decoding at the sweep's length, eos,
    blocks, repetition penalty and seed) with the row's settings; a list `config` leaves
    empty is `base`'s one value (all the rules, for `rule`)."""
    out = []
    for cache in config.cache or [base.cache]:
        for scale in config.cfg_scale or [base.cfg_scale]:
            row = dataclasses.replace(base, cache=cache, cfg_scale=scale)
            for rule in config.rule or list(COMMIT_RULES):
                if rule == "threshold":
                    out += [dataclasses.replace(row, rule=rule, steps=int(base.length),
                                                threshold=t) for t in config.threshold]
                    continue
                out += [dataclasses.replace(row, rule=rule, steps=s, remask=r)
                        for r in config.remask or [base.remask] for s in config.steps]
    return out


def sweep(lm, histories, configs: list[SampleConfig], judge=None, batch_size: int = 64,
          say=None) -> list[SweepRow]:
    rows = []
    for config in configs:
        counter = CallCounter()
        quality, _ = generation_quality(lm, histories, config, judge, batch_size, counter)
        seconds = quality.seconds
        row = SweepRow(config.rule, config.steps, config.remask,
                       config.threshold if config.rule == "threshold" else None,
                       config.block_length, config.cfg_scale, config.cache,
                       counter.mean_calls(),
                       counter.tokens_per_call(), seconds, counter.batch_calls, batch_size, quality)
        rows.append(row)
        if say:
            say(row_line(row))
    return rows


def row_line(row: SweepRow) -> str:
    q = row.quality
    ppl = f"{q.gen_ppl:.1f}" if q.gen_ppl is not None else "-"
    rule = row.rule + (f" {row.threshold}" if row.threshold is not None else "")
    rule += f" remask {row.remask}" if row.remask else ""
    rule += f" cfg {row.cfg_scale}" if row.cfg_scale else ""
    rule += f" + {row.cache} cache" if row.cache != "none" else ""
    return (f"| {rule} | {row.steps} | {row.nfe:.1f} | {row.tokens_per_call:.2f} | "
            f"{row.seconds:.1f} | {row.batch_calls} | {ppl} | {q.entropy:.2f} | "
            f"{q.distinct_2:.3f} | "
            f"{q.repetition:.3f} | {q.mean_words:.1f} |")


HEADER = ("| rule | steps | NFE/reply | tokens/call | wall s | batch calls | gen. PPL | entropy "
          "| distinct-2 | repetition | words |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


@dataclass
class SweepReport:
    meta: dict[str, Any]
    rows: list[SweepRow]

    def markdown(self) -> str:
        m = self.meta
        lines = [f"# Sampling sweep: {m['checkpoint']}", "",
                 f"{m['prompts']} held-out validation prompts, {m['length']}-token replies, "
                 f"eos {m['eos']}, block length {m['block_length'] or 'whole reply'}, "
                 f"temperature {m['temperature']}, repetition penalty "
                 f"{m.get('repetition_penalty', 1.0)}, seed {m.get('seed')}, batches of "
                 f"{m['batch_size']}. "
                 f"Judge: {m['judge']}. Device: "
                 f"{m['device']}. Command: `{m['command']}`.", "", HEADER]
        lines += [row_line(r) for r in self.rows]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "sweep.json", out_dir / "sweep.md"
        js.write_text(json.dumps({"meta": self.meta,
                                  "rows": [dataclasses.asdict(r) for r in self.rows]},
                                 indent=2) + "\n")
        md.write_text(self.markdown())
        return js, md


def run_sweep(ckpt, config: SweepConfig | None = None, device: str = "auto",
              command: str = "", say=None) -> SweepReport:
    """Load the model (and AR judge), take `config.prompts` held-out histories, reply to
    them with every decoding of the grid (`sweep_grid`)."""
    from dlm.errors import ConfigError
    from dlm.evaluation.judge import load_judge
    from dlm.evaluation.report import held_out
    from dlm.pipeline import DiffusionLM

    config = config or SweepConfig()
    lm = DiffusionLM.load(ckpt, device)
    if lm.objective.one_call_per_token:
        raise ConfigError(f"{ckpt}: the sampling sweep is for diffusion checkpoints")
    base = lm.decoding(length=config.length, eos=config.eos,
                       block_length=config.block_length,
                       repetition_penalty=config.repetition_penalty, seed=config.seed)
    configs = sweep_grid(config, base)
    judge_lm = load_judge(config.judge, device)
    _, histories, _, _ = held_out(lm, config.data or None, config.prompts)
    histories = histories[: config.prompts]
    meta = {"checkpoint": str(lm.source), "judge": config.judge or "none",
            "prompts": len(histories), "length": base.length, "eos": base.eos,
            "block_length": base.block_length, "temperature": base.temperature,
            "repetition_penalty": base.repetition_penalty, "seed": base.seed,
            "batch_size": config.batch_size, "device": str(lm.device),
            "torch": torch.__version__, "command": command,
            "date": time.strftime("%Y-%m-%d")}
    return SweepReport(meta, sweep(lm, histories, configs, judge_lm, config.batch_size, say))
