"""`dlm eval`: likelihood and generation quality of one checkpoint on held-out data,
written as JSON (every figure) and Markdown.

The held-out data is the validation split of the checkpoint's own training data
(or of `data`), tokenized with the checkpoint's tokenizer. Quality is measured on
the replies to the first `prompts` validation chats, for each number of denoising
steps in the sweep (AR: one left-to-right pass), under an AR judge when one is given,
and on the fixed suite of `dlm.suite` (greetings, mood, arithmetic, instructions,
diversity) at 16 steps. Judged perplexity and F1 carry their standard error over the
prompts (±), the noise any comparison of two rows must clear.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm.config import SampleConfig, TrainConfig, from_dict
from dlm.errors import ConfigError
from dlm.evaluation.judge import load_judge
from dlm.evaluation.likelihood import Likelihood, likelihood
from dlm.evaluation.metrics import self_bleu
from dlm.evaluation.quality import (
    Quality,
    generation_quality,
    run_suite,
    samples_of,
    steps_sweep,
)


@dataclass
class EvalReport:
    meta: dict[str, Any]
    likelihood: Likelihood | None
    """None for an objective that gives none (the reason in meta["no_likelihood"])."""
    sweep: list[Quality]
    diversity: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    suite: dict[str, dict] = field(default_factory=dict)
    """The fixed suite's results per category (`dlm.evaluation.quality.run_suite`)."""
    length_head: dict[str, float] = field(default_factory=dict)
    """The length head's accuracy on validation (`dlm.evaluation.likelihood.length_accuracy`)."""

    def to_json(self) -> dict[str, Any]:
        return {**self.meta, "likelihood": (None if self.likelihood is None
                                            else dataclasses.asdict(self.likelihood)),
                "sweep": [dataclasses.asdict(q) for q in self.sweep],
                "diversity": self.diversity, "examples": self.examples, "suite": self.suite,
                "length_head": self.length_head}

    def markdown(self) -> str:
        m, lk = self.meta, self.likelihood
        block = f" (blocks of {m['block_size']})" if "block_size" in m else ""
        lines = [f"# dlm eval: {m['checkpoint']}", "",
                 f"{m['objective']} model{block}, {m['parameters'] / 1e6:.2f}M parameters; "
                 f"held-out data: {m['data']} ({m['val_examples']} examples); "
                 f"judge: {m['judge']}.", "",
                 f"Estimator: {m.get('estimator', '?')}, {m.get('draws', '?')} draws; "
                 f"{m.get('dtype', '?')} on {m.get('device', '?')}; seed {m.get('seed', '?')}.",
                 "",
                 *likelihood_lines(lk, m.get("no_likelihood")), "",
                 "| steps | gen. PPL | entropy | distinct-1 | distinct-2 | repetition | "
                 "words | empty | unigram F1 (shuffled) | BLEU-2 | stutter | broken end "
                 "| ends with eos | MAUVE |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for q in self.sweep:
            nan = float("nan")
            ppl = (f"{q.gen_ppl:.1f} ± {q.gen_ppl_se or nan:.1f}" if q.gen_ppl is not None
                   else "—")
            f1 = (f"{q.f1:.3f} ± {q.f1_se or nan:.3f} ({q.f1_shuffled:.3f})"
                  if q.f1 is not None else "—")
            bleu = f"{q.bleu_2:.2f}" if q.bleu_2 is not None else "—"
            lines.append(f"| {q.steps} | {ppl} | {q.entropy:.3f} | {q.distinct_1:.3f} | "
                         f"{q.distinct_2:.3f} | {q.repetition:.3f} | {q.mean_words:.1f} | "
                         f"{q.empty:.1%} | {f1} | {bleu} | {q.stutter:.1%} | "
                         f"{q.broken_end:.1%} | {q.ends_with_eos:.0%} | "
                         f"{'—' if q.mauve is None else f'{q.mauve:.3f}'} |")
        if self.length_head:
            h = self.length_head
            lines += ["", f"Length head on {h['examples']} validation replies (mean "
                      f"{h['mean_true_length']:.1f} tokens): exact {h['exact']:.1%}, within ±2 "
                      f"tokens {h['within_2']:.1%}, mean absolute error {h['mae']:.2f} tokens."]
        if self.suite:
            lines += ["", "| suite category | replies | mean words | ends with eos | gen. PPL "
                      "| score |", "|---|---|---|---|---|---|"]
            for name, r in self.suite.items():
                if "quality" not in r:
                    lines.append(f"| {name} | {len(r['prompts'])} prompts | | | | self-BLEU "
                                 f"{r['self_bleu']:.1f}, distinct-2 {r['distinct_2']:.3f} |")
                    continue
                q = r["quality"]
                ppl = f"{q['gen_ppl']:.1f}" if q["gen_ppl"] is not None else "—"
                score = f"exact match {r['exact_match']:.0%}" if "exact_match" in r else ""
                lines.append(f"| {name} | {q['replies']} | {q['mean_words']:.1f} | "
                             f"{q['ends_with_eos']:.0%} | {ppl} | {score} |")
        if self.diversity:
            d = self.diversity
            lines += ["", f"Diversity: self-BLEU {d['self_bleu']:.1f} over {d['samples']} samples "
                      f"per prompt at temperature {d['temperature']} ({d['prompts']} prompts)."]
        return "\n".join(lines) + "\n"

    def plot(self, out_dir: Path) -> list[Path]:
        """sweep.png, and curves.png from the run's metrics.jsonl when it is beside the
        checkpoint."""
        from dlm.evaluation.plots import plot_curves, plot_sweep, read_metrics

        files = [plot_sweep({Path(self.meta["checkpoint"]).parent.name: self.to_json()},
                            out_dir / "sweep.png")]
        metrics = Path(self.meta["checkpoint"]).parent / "metrics.jsonl"
        if metrics.is_file():
            files.append(plot_curves({metrics.parent.name: read_metrics(metrics)},
                                     out_dir / "curves.png"))
        return files

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "eval.json", out_dir / "eval.md"
        js.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        md.write_text(self.markdown())
        return js, md


def likelihood_lines(lk: Likelihood | None, why: str | None) -> list[str]:
    if lk is None:
        return [f"Likelihood: none ({why})."]
    kind = "NELBO (bound)" if lk.is_bound else "NLL (exact)"
    return ["| likelihood | value |", "|---|---|",
            f"| {kind}, nats/token | {lk.nats_per_token:.4f} ± {lk.stderr:.4f} "
            f"(K = {lk.draws}) |",
            f"| perplexity{' bound' if lk.is_bound else ''} | {lk.perplexity:.2f} |",
            f"| bits per byte | {lk.bits_per_byte:.4f} |",
            f"| tokens / text bytes | {lk.tokens:,} / {lk.text_bytes:,} |"]


def held_out(lm, data: list[str] | None, val_examples: int):
    """The validation set (tensors) and its chat histories, tokenized for `lm`."""
    import tempfile

    from dlm.data.jsonl_examples import read_jsonl_examples
    from dlm.training.batches import prepare_data

    cfg = from_dict(TrainConfig, lm.meta.get("train", {}), f"{lm.source} train config")
    if data:
        cfg.data = data
    cfg.val_examples = val_examples
    with tempfile.TemporaryDirectory(prefix="dlm-eval-") as tmp:
        cfg.out_dir = tmp  # files are split and tokenized here, never into the run directory
        prepared = prepare_data(cfg, lm.objective, lm.tokenizer)
        chats = [ex.messages for ex in read_jsonl_examples(prepared.folder / "validation.jsonl")
                 if ex.messages is not None][:val_examples]
    histories = [m[:-1] for m in chats]
    references = [m[-1]["content"] for m in chats]
    return prepared.val, histories, references, cfg


def run_eval(ckpt: str | Path, data: list[str] | None = None, judge: str | Path | None = None,
             prompts: int = 100, draws: int = 8, val_examples: int = 1000,
             sweep: list[int] | None = None, diversity_samples: int = 8,
             device: str = "auto", config: SampleConfig | None = None) -> EvalReport:
    """Evaluate one checkpoint; see the module docstring. `config`: the decoding settings
    of the sweep (its steps replaced by each of the sweep's; default greedy, the model's
    canvas)."""
    from dlm.pipeline import DiffusionLM

    lm = DiffusionLM.load(ckpt, device)
    judge_lm = load_judge(judge, device)
    val, histories, references, cfg = held_out(lm, data, val_examples)
    no_likelihood = None
    try:
        lk = likelihood(lm, val, draws, cfg.batch_size, cfg.seed, cfg.diffusion.schedule,
                        cfg.diffusion.eps)
    except ConfigError as exc:  # an objective with no likelihood here (DiffusionGemma)
        lk, no_likelihood = None, str(exc)
    histories, references = histories[:prompts], references[:prompts]
    length = lm.default_length
    base = config or SampleConfig(length=length)
    left_to_right = lm.objective.one_call_per_token  # steps do not apply
    steps_list = [length] if left_to_right else (sweep or steps_sweep(length))
    rows, examples = [], []
    for steps in steps_list:
        quality, replies = generation_quality(lm, histories,
                                              dataclasses.replace(base, steps=steps), judge_lm,
                                              references=references)
        rows.append(quality)
        if steps == steps_list[-1]:
            examples = [{"prompt": h[-1]["content"], "reply": r, "reference": ref}
                        for h, r, ref in zip(histories[:10], replies[:10], references[:10],
                                             strict=False)]
    diversity = {}
    if histories and diversity_samples >= 2:
        config = SampleConfig(length=length, steps=min(length, 16), temperature=1.0, seed=0)
        scores = []
        for history in histories[:10]:
            scores.append(self_bleu(samples_of(lm, history, diversity_samples, config)))
        diversity = {"self_bleu": sum(scores) / len(scores), "samples": diversity_samples,
                     "prompts": len(scores), "temperature": 1.0}
    steps = length if left_to_right else min(length, 16)
    suite = run_suite(lm, SampleConfig(length=length, steps=steps), judge_lm)
    meta = {"checkpoint": str(lm.source), "objective": lm.objective.name,
            **({"block_size": lm.block_size} if lm.block_size else {}),
            "parameters": lm.model.num_parameters(), "data": cfg.data or "chatterbot-corpus",
            "val_examples": len(val), "judge": str(judge) if judge else "none",
            **({"no_likelihood": no_likelihood} if no_likelihood else {}),
            "estimator": ("none" if lk is None else "exact NLL"
                          if lm.objective.exact_likelihood
                          else "Monte Carlo NELBO (antithetic t)"),
            "draws": 1 if lm.objective.exact_likelihood else draws, "dtype": str(lm.dtype),
            "device": str(lm.device), "seed": cfg.seed,
            "prompts": len(histories), "date": time.strftime("%Y-%m-%d")}
    head = {}
    if lm.objective.length_head and getattr(lm.model, "length_head", None) is not None:
        from dlm.evaluation.likelihood import length_accuracy

        head = length_accuracy(lm, val, cfg.batch_size)
    return EvalReport(meta, lk, rows, diversity, examples, suite, head)
