"""Reply quality of trained chat runs on the same held-out prompts, one table.

    python benchmarks/reply-quality/report.py --judge runs/rq/judge-ar --prompts 256 \
        --out benchmarks/reply-quality/padding runs/rq/pad-eos runs/rq/pad-rainbow ...

For each run: its kept checkpoint (`best/`, else `last/`), the validation NELBO per
reply token at that step and at the last (comparable across padding modes and with
AR's exact NLL: see `dlm.diffusion.padding`), then replies to `--prompts` validation
prompts spread evenly over the split (every k-th), scored by the separately trained
AR judge (never one of the compared runs): judged perplexity, unigram entropy,
distinct-2, mean words, the share of empty replies, unigram F1 and BLEU-2 against the
human reply. Each run is decoded with every setting of `--decode` (a JSON list of
SampleConfig fields; default: greedy with eos allow, then defer; a run with a length
head sizes its canvas with it), AR runs with the settings that apply to AR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from dlm import DiffusionLM, SampleConfig
from dlm.evaluation.metrics import words
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out

SHOWN = 8  # prompts whose replies the report quotes


def validation_rows(run: Path) -> dict[str, dict]:
    """The run's evaluation rows: at its best step and at its last."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    evals = [r for r in rows if "val_nelbo" in r or "val_nll" in r]
    key = "val_nll" if "val_nll" in evals[-1] else "val_nelbo"
    return {"best": min(evals, key=lambda r: r[key]), "last": evals[-1]}


def spread(items: list, n: int) -> list:
    step = max(len(items) // n, 1)
    return items[::step][:n]


AR_FIELDS = {"temperature", "top_p", "top_k", "repetition_penalty", "no_repeat_ngram", "seed"}


def measure(run: Path, judge: DiffusionLM, prompts: int, decodes: list[dict],
            steps: int | None) -> list[dict]:
    lm = DiffusionLM.load(run, "cpu")
    _, histories, references, _ = held_out(lm, None, 100_000)
    histories, references = spread(histories, prompts), spread(references, prompts)
    val = validation_rows(run)
    out, seen = [], set()
    for decode in decodes:
        if lm.objective.one_call_per_token:  # diffusion-only settings do not apply
            decode = {k: v for k, v in decode.items() if k in AR_FIELDS}
        elif decode.get("no_repeat_ngram"):  # left-to-right only
            continue
        if json.dumps(decode, sort_keys=True) in seen:
            continue
        seen.add(json.dumps(decode, sort_keys=True))
        fields = {"length": lm.default_length, "steps": steps or lm.default_length, **decode}
        if lm.objective.length_head and lm.model.length_head is not None:
            fields["length"] = decode.get("length", "auto")
        config = SampleConfig(**fields)
        started = time.perf_counter()
        quality, replies = generation_quality(lm, histories, config, judge,
                                              references=references)
        out.append({
            "run": run.name, "checkpoint": str(lm.source), "objective": lm.objective.name,
            "decode": decode, "length": config.length, "steps": config.steps,
            "parameters": lm.model.num_parameters(),
            "best_step": val["best"]["step"], "last_step": val["last"]["step"],
            "val_reply_best": val["best"].get("val_nelbo_reply", val["best"].get("val_nll_reply")),
            "val_reply_last": val["last"].get("val_nelbo_reply", val["last"].get("val_nll_reply")),
            "epochs": epochs_at(run, val["last"]["step"]),
            "quality": dataclasses.asdict(quality), "seconds": time.perf_counter() - started,
            "human_words": sum(len(words(r)) for r in references) / len(references),
            "examples": [{"prompt": h[-1]["content"], "reply": r, "reference": ref}
                         for h, r, ref in spread(list(zip(histories, replies, references,
                                                          strict=True)), SHOWN)],
        })
    return out


def label(decode: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in decode.items()) or "greedy"


def epochs_at(run: Path, step: int) -> float | None:
    for line in (run / "metrics.jsonl").open():
        row = json.loads(line)
        if row.get("step") == step and "epoch" in row:
            return row["epoch"]
    return None


def markdown(rows: list[dict], command: str, device: str) -> str:
    human = rows[0]["human_words"]
    lines = [f"Command: `{command}`", "", f"Machine: {device}; torch {torch.__version__}.",
             f"Human replies: {human:.1f} words on average over the same prompts.", "",
             "| run | decoding | kept step / last | val nats per reply token (kept / last) | "
             "judged PPL | entropy | distinct-2 | words | empty | unigram F1 | BLEU-2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["quality"]
        lines.append(
            f"| {r['run']} | {label(r['decode'])} | {r['best_step']} / {r['last_step']} | "
            f"{r['val_reply_best']:.3f} / {r['val_reply_last']:.3f} | {q['gen_ppl']:.1f} | "
            f"{q['entropy']:.2f} | {q['distinct_2']:.3f} | {q['mean_words']:.1f} | "
            f"{q['empty']:.1%} | {q['f1']:.3f} | {q['bleu_2']:.2f} |")
    lines += ["", "Replies (the same prompts for every row):", ""]
    for i, ex in enumerate(rows[0]["examples"]):
        lines.append(f"- **{ex['prompt'][:120]}** (human: {ex['reference'][:100]})")
        for r in rows:
            lines.append(f"  - {r['run']} / {label(r['decode'])}: "
                         f"{r['examples'][i]['reply'][:140]!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--judge", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--decode", default='[{"eos": "allow"}, {"eos": "defer"}]',
                        help="JSON list of SampleConfig fields, one row per setting")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    judge = DiffusionLM.load(args.judge, "cpu")
    if not judge.objective.needs.causal or any(run.resolve() == args.judge.resolve()
                                               for run in args.runs):
        raise SystemExit("the judge must be an AR run that is not one of the compared runs")
    rows = []
    for run in args.runs:
        rows += measure(run, judge, args.prompts, json.loads(args.decode), args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/reply-quality/report.py " + " ".join(
        [*(str(r) for r in args.runs), "--judge", str(args.judge), "--prompts",
         str(args.prompts), "--decode", f"'{args.decode}'",
         *(["--steps", str(args.steps)] if args.steps else []), "--out", str(args.out)])
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    device = f"{cpu}, {torch.get_num_threads()} threads, no GPU"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    (args.out / "results.json").write_text(json.dumps(
        {"command": command, "device": device, "commit": commit, "torch": torch.__version__,
         "rows": rows}, indent=2) + "\n")
    (args.out / "README.md").write_text(markdown(rows, command, device))
    print((args.out / "README.md").read_text())


if __name__ == "__main__":
    main()
