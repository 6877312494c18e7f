"""Speed at a stated quality, batch 1: the diffusion model at its default decoding and at
a few steps for a 32-token reply, beside its AR twin with its KV cache, in one run.

    python benchmarks/chat-budget/speed.py --ckpt shipped --ar-ckpt runs/chat-small/ar-equal \
        --data runs/c3/ddval --judge runs/rq/judge-ar --prompts 64 \
        --out benchmarks/chat-budget/speed

Each setting replies to the same DailyDialog validation prompts one at a time (batch 1,
the latency a chat user sees); tokens/s counts the reply's tokens (up to its eos: what
the user gets), so a setting that writes shorter replies is not credited with the canvas
it left empty. A model that drafts and verifies itself (dual) takes no step count: its
forwards follow from its accepted drafts, so the few-step rows come from `--steps-ckpt`,
a model that takes one (named in the row; e.g. the MDLM pilot from the same teacher).
Quality beside it: judged perplexity (a separately trained AR judge), distinct-2, words,
and the unigram-F1 gap to shuffled references.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.evaluation.judge import load_judge
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out


def spread(items: list, n: int) -> list:
    return items[:: max(len(items) // n, 1)][:n]


def measure(name: str, lm: DiffusionLM, config, histories, references, judge) -> dict:
    lm.reply_ids(histories[:2], config)  # warm-up: allocator and kernels
    quality, replies = generation_quality(lm, histories, config, judge, batch_size=1,
                                          references=references)
    tokens = sum(len(lm.tokenizer.encode(r)) for r in replies if r)
    return {"setting": name, "objective": lm.objective.name,
            "decoding": {k: v for k, v in vars(config).items() if v is not None},
            "calls_per_reply": quality.steps, "reply_tokens": tokens,
            "seconds": round(quality.seconds, 2), "tokens_per_s": tokens / quality.seconds,
            "judged_ppl": quality.gen_ppl, "judged_ppl_se": quality.gen_ppl_se,
            "distinct_2": quality.distinct_2, "words": quality.mean_words,
            "empty": quality.empty, "gap": quality.relevance_gap,
            "gap_se": quality.relevance_gap_se, "example": replies[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="shipped")
    ap.add_argument("--ar-ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--judge", required=True)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--steps-ckpt", help="the model of the few-step rows when --ckpt "
                    "takes no step count (dual)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = DiffusionLM.load(None if args.ckpt == "shipped" else args.ckpt, "cpu")
    ar = DiffusionLM.load(args.ar_ckpt, "cpu")
    judge = load_judge(args.judge, "cpu")
    _, histories, references, _ = held_out(lm, [args.data], 100_000)
    histories, references = spread(histories, args.prompts), spread(references, args.prompts)
    settings = [("AR twin + KV cache, its default decoding", ar, ar.decoding()),
                ("diffusion, its default decoding", lm, lm.decoding())]
    few = lm
    if lm.objective.drafts_itself or lm.objective.one_call_per_token:
        if not args.steps_ckpt:
            ap.error(f"{args.ckpt} ({lm.objective.name}) takes no step count: give --steps-ckpt")
        few = DiffusionLM.load(args.steps_ckpt, "cpu")
    named = "diffusion" if few is lm else f"{args.steps_ckpt} ({few.objective.name})"
    settings += [(f"{named}, {args.length} tokens in {s} steps", few,
                  few.decoding(length=args.length, steps=s)) for s in args.steps]
    rows = []
    for name, model, config in settings:
        rows.append(measure(name, model, config, histories, references, judge))
        r = rows[-1]
        print(f"{name}: {r['tokens_per_s']:.1f} tokens/s, judged PPL {r['judged_ppl']:.1f}, "
              f"distinct-2 {r['distinct_2']:.3f}, {r['words']:.1f} words")
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["ratio_to_ar"] = r["tokens_per_s"] / base
    out = {"command": "python benchmarks/chat-budget/speed.py --ckpt {} --ar-ckpt {} --data {} "
                      "--judge {} --prompts {} --out {}{}".format(
                          args.ckpt, args.ar_ckpt, args.data, args.judge, args.prompts,
                          args.out, f" --steps-ckpt {args.steps_ckpt}" if args.steps_ckpt
                          else ""),
           "machine": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
           "commit": git_commit(), "batch": 1, "prompts": len(histories), "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Command: `{out['command']}`", "",
             f"Machine: {out['machine']}, {out['threads']} threads; commit {out['commit']}; "
             f"batch 1, {len(histories)} DailyDialog validation prompts.", "",
             "| setting | model calls per reply (at most) | tokens / s | × AR | judged PPL "
             "| distinct-2 | words | empty | F1 − shuffled |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['calls_per_reply']} | {r['tokens_per_s']:.1f} "
            f"| {r['ratio_to_ar']:.2f} | {r['judged_ppl']:.1f} ± {r['judged_ppl_se']:.1f} "
            f"| {r['distinct_2']:.3f} | {r['words']:.1f} | {100 * r['empty']:.1f}% "
            f"| {r['gap']:+.4f} ± {r['gap_se']:.4f} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
