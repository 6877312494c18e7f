"""The sampling sweep: commit rules x steps (x remasking, x thresholds) on held-out prompts,
each row with the quality of its replies and what it cost.

    from dlm.evaluation.sweep import sweep_grid, run_sweep
    report = run_sweep("runs/chat", judge="runs/chat-ar", configs=sweep_grid(...))

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

from dlm.config import SampleConfig
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


def sweep_grid(length: int, rules: list[str], steps: list[int], remask: list[float],
               thresholds: list[float], eos: str = "defer", block_length: int = 0,
               cfg_scales: tuple[float, ...] = (0.0,), seed: int = 0,
               caches: tuple[str, ...] = ("none",)) -> list[SampleConfig]:
    """Every fixed-count rule at every step count and remasking rate; the threshold rule at
    every threshold, with `length` steps as its budget; all at every guidance scale and
    cache mode. Seeded, so the `random` rule (and any sampling) gives the same table every
    run."""
    out = []
    for cache, cfg in ((c, g) for c in caches for g in cfg_scales):
        base = dict(length=length, eos=eos, block_length=block_length, seed=seed, cache=cache)
        for rule in rules:
            if rule == "threshold":
                out += [SampleConfig(**base, cfg_scale=cfg, rule=rule, steps=length,
                                     threshold=t) for t in thresholds]
                continue
            out += [SampleConfig(**base, cfg_scale=cfg, rule=rule, steps=s, remask=r)
                    for r in remask for s in steps]
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
                 f"eos {m['eos']}, block length {m['block_length'] or 'whole reply'}, greedy "
                 f"(temperature {m['temperature']}), seed {m.get('seed')}, batches of "
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


def run_sweep(ckpt, judge=None, prompts: int = 128, configs: list[SampleConfig] | None = None,
              data: list[str] | None = None, device: str = "auto", command: str = "",
              say=None, batch_size: int = 64) -> SweepReport:
    """Load the model (and AR judge), take `prompts` held-out histories, run every config."""
    from dlm.errors import ConfigError
    from dlm.evaluation.quality import load_judge
    from dlm.evaluation.report import held_out
    from dlm.pipeline import DiffusionLM

    lm = DiffusionLM.load(ckpt, device)
    if lm.objective.one_call_per_token:
        raise ConfigError(f"{ckpt}: the sampling sweep is for diffusion checkpoints")
    judge_lm = load_judge(judge, device)
    _, histories, _, _ = held_out(lm, data, prompts)
    histories = histories[:prompts]
    configs = configs or sweep_grid(32, ["low_confidence"], [4, 8, 16, 32], [0.0], [0.9])
    first = configs[0]
    meta = {"checkpoint": str(lm.source), "judge": str(judge) if judge else "none",
            "prompts": len(histories), "length": first.length, "eos": first.eos,
            "block_length": first.block_length, "temperature": first.temperature,
            "seed": first.seed,
            "batch_size": batch_size, "device": str(lm.device), "torch": torch.__version__,
            "command": command,
            "date": time.strftime("%Y-%m-%d")}
    return SweepReport(meta, sweep(lm, histories, configs, judge_lm, batch_size, say))
