"""The ablation table of the chat budget: every row on the same validation prompts, each
figure with its standard error.

    python benchmarks/chat-budget/ablation.py today=shipped chitchat=runs/c3/r2-chitchat \
        --data runs/c3/dd --judge runs/rq/judge-ar --prompts 256 \
        --out benchmarks/chat-budget/ablation

Rows already measured with the same checkpoint, decoding, data, judge and prompts are
read back from
`--cache` (default OUT.rows/; a row is measured once, so rows can be added as their runs finish).

Each row (NAME=RUN: a run directory, a checkpoint, or `shipped`) replies with its own
default decoding (`lm.decoding()`) to the same `--prompts` DailyDialog validation prompts,
spread evenly over the split of `--data`; the replies are scored by the separately trained
AR judge (never one of the compared models, never trained on distilled replies): judged
perplexity with its unigram entropy, distinct-2 over all replies, mean words, the shares
of empty and stuttering replies, unigram F1 against the human reply and the paired gap to
F1 against shuffled references, and MAUVE against the human replies on the judge's
features. Beside them, the likelihood per reply token (the reply's
tokens and its closing eos; the padding is a function of the reply, so a padded canvas's
NELBO bounds it too) on the first `--likelihood-examples` validation examples: exact for
AR, a bound for diffusion, comparable between rows with the same tokenizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.evaluation.judge import load_judge
from dlm.evaluation.likelihood import likelihood
from dlm.evaluation.metrics import distinct_n, words
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out
from dlm.util.portable import portable
from dlm.util.statistics import mean_and_stderr

SHOWN = 8


def spread(items: list, n: int) -> list:
    step = max(len(items) // n, 1)
    return items[::step][:n]


def share_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def distinct_2_se(replies: list[str], draws: int = 200) -> float:
    """Bootstrap over prompts (distinct-n is a corpus figure, not a mean)."""
    rng = random.Random(0)
    values = [distinct_n([replies[rng.randrange(len(replies))] for _ in replies], 2)
              for _ in range(draws)]
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def row(name: str, path: str, lm: DiffusionLM, data: str, judge, prompts: int,
        examples: int) -> dict:
    val, histories, references, _ = held_out(lm, [data], 100_000)
    histories, references = spread(histories, prompts), spread(references, prompts)
    first = dataclasses.replace(val, prompts=val.prompts[:examples],
                                responses=val.responses[:examples])
    lk = likelihood(lm, first, draws=4)
    per_reply = lm.objective.per_reply_token(lk.nats_per_token, first, lm.tokenizer)
    scale = per_reply / lk.nats_per_token if lk.nats_per_token else 1.0
    config = lm.decoding()
    start = time.time()
    quality, replies = generation_quality(lm, histories, config, judge, references=references)
    n = len(replies)
    counts = [len(words(r)) for r in replies]
    return {
        "row": name, "run": path, "checkpoint": portable(str(lm.source)),
        "objective": lm.objective.name,
        "parameters": lm.model.num_parameters(),
        "tokenizer": lm.tokenizer.fingerprint()[:12],
        "padding": (lm.meta.get("train", {}).get("diffusion") or {}).get("padding"),
        "decoding": {k: v for k, v in vars(config).items() if v is not None},
        "nats_per_reply_token": per_reply, "nats_se": lk.stderr * scale, "bound": lk.is_bound,
        "likelihood_examples": len(first),
        "judged_ppl": quality.gen_ppl, "judged_ppl_se": quality.gen_ppl_se,
        "entropy": quality.entropy,
        "distinct_2": quality.distinct_2, "distinct_2_se": distinct_2_se(replies),
        "words": quality.mean_words, "words_se": mean_and_stderr(counts)[1],
        "empty": quality.empty, "empty_se": share_se(quality.empty, n),
        "stutter": quality.stutter, "stutter_se": share_se(quality.stutter, n),
        "f1": quality.f1, "f1_se": quality.f1_se, "f1_shuffled": quality.f1_shuffled,
        "gap": quality.relevance_gap, "gap_se": quality.relevance_gap_se,
        "mauve": quality.mauve,
        "human_words": sum(len(words(r)) for r in references) / max(len(references), 1),
        "seconds": round(time.time() - start, 1),
        "examples": [{"prompt": h[-1]["content"], "reply": r, "human": ref}
                     for h, r, ref in zip(spread(histories, SHOWN), spread(replies, SHOWN),
                                          spread(references, SHOWN), strict=True)],
    }


def cell(value, se, fmt="{:.3f}") -> str:
    if value is None:
        return "—"
    return fmt.format(value) + ("" if se is None else f" ± {fmt.format(se)}")


def markdown(out: dict) -> str:
    lines = [f"Command: `{out['command']}`", "", f"Machine: {out['cpu']}; commit {out['commit']}; "
             f"judge {out['judge']}.",
             f"Prompts: {out['prompts']} DailyDialog validation prompts; human replies "
             f"{out['rows'][0]['human_words']:.1f} words on average.", "",
             "| row | parameters | nats / reply token | judged PPL | entropy | distinct-2 | "
             "words | empty | stutter | unigram F1 | F1 − shuffled | MAUVE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        kind = "bound" if r["bound"] else "exact"
        nats = cell(r["nats_per_reply_token"], r["nats_se"])
        judged = cell(r["judged_ppl"], r["judged_ppl_se"], "{:.1f}")
        lines.append(
            f"| {r['row']} | {r['parameters'] / 1e6:.2f}M | {nats} "
            f"({kind}, tok {r['tokenizer'][:6]}) | {judged} "
            f"| {r['entropy']:.2f} | {cell(r['distinct_2'], r['distinct_2_se'])} "
            f"| {cell(r['words'], r['words_se'], '{:.1f}')} "
            f"| {cell(100 * r['empty'], 100 * r['empty_se'], '{:.1f}')}% "
            f"| {cell(100 * r['stutter'], 100 * r['stutter_se'], '{:.1f}')}% "
            f"| {cell(r['f1'], r['f1_se'])} | {cell(r['gap'], r['gap_se'])} "
            f"| {cell(r['mauve'], None)} |")
    lines += ["", "Replies (the same prompts for every row):", ""]
    for i, example in enumerate(out["rows"][0]["examples"]):
        lines.append(f"- **{example['prompt'][:120]}** (human: {example['human'][:120]})")
        for r in out["rows"]:
            lines.append(f"  - {r['row']}: {r['examples'][i]['reply']!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+", help="NAME=RUN (a run directory, checkpoint or 'shipped')")
    ap.add_argument("--data", required=True)
    ap.add_argument("--judge", required=True)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--likelihood-examples", type=int, default=1000)
    ap.add_argument("--out", required=True, help="OUT.json and OUT.md are written")
    ap.add_argument("--cache", help="where measured rows are kept (default OUT.rows/)")
    args = ap.parse_args()
    torch.manual_seed(0)
    judge = load_judge(args.judge, "cpu")
    rows = []
    cache = Path(args.cache or args.out + ".rows")  # rows kept, to add rows run by run
    cache.mkdir(parents=True, exist_ok=True)
    for spec in args.rows:
        name, path = spec.split("=", 1)
        lm = DiffusionLM.load(None if path == "shipped" else path, "cpu")
        key = {"run": path, "checkpoint": portable(str(lm.source)), "data": args.data,
               "judge": args.judge, "prompts": args.prompts,
               "likelihood_examples": args.likelihood_examples,
               "decoding": {k: v for k, v in vars(lm.decoding()).items() if v is not None}}
        kept = cache / f"{name}.json"
        if kept.is_file() and json.loads(kept.read_text()).get("key") == key:
            r = json.loads(kept.read_text())
        else:
            r = row(name, path, lm, args.data, judge, args.prompts, args.likelihood_examples)
            kept.write_text(json.dumps({**r, "key": key}, indent=2) + "\n")
        rows.append(r)
        print(f"{name}: judged PPL {r['judged_ppl']:.1f}, distinct-2 {r['distinct_2']:.3f}, "
              f"gap {r['gap']:+.4f} ± {r['gap_se']:.4f}")
    out = {"command": "python benchmarks/chat-budget/ablation.py " + " ".join(args.rows)
           + f" --data {args.data} --judge {args.judge} --prompts {args.prompts} "
           f"--out {args.out}", "commit": git_commit(), "cpu": device_name(torch.device("cpu")),
           "torch": torch.__version__, "prompts": args.prompts, "judge": args.judge,
           "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(out))


if __name__ == "__main__":
    main()
