"""Which model `dlm demo` shows: the `tiny` preset trained from scratch on the embedded
corpus (the demo until now) or the shipped model fine-tuned on it, by measurement.

    python benchmarks/chat-budget/demo.py --steps 100 200 400 --judge runs/rq/judge-ar \
        --out benchmarks/chat-budget/demo

Each variant is trained by the demo's own code (`dlm.cli.demo`: `demo_config`,
`fine_tune_config`) into a fresh directory on this CPU, timed, and then replies, with
its default decoding, to the demo's five prompts and to the held-out split of the
embedded chatterbot corpus (the same prompts for every variant), scored by a separately
trained AR judge: judged perplexity, distinct-2, words, empty share and the unigram-F1
gap to shuffled references. The shipped model as it is (no fine-tuning) is a row too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.cli.demo import DEMO_PROMPTS, demo_config, fine_tune_config
from dlm.evaluation.judge import load_judge
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out
from dlm.shipped import shipped_checkpoint
from dlm.training.train import train
from dlm.util.portable import portable


def measure(name: str, lm: DiffusionLM, seconds: float, histories, references, judge) -> dict:
    quality, _ = generation_quality(lm, histories, lm.decoding(), judge, references=references)
    replies = lm.generate(DEMO_PROMPTS, lm.decoding())
    return {"variant": name, "train_seconds": round(seconds, 1),
            "judged_ppl": quality.gen_ppl, "judged_ppl_se": quality.gen_ppl_se,
            "distinct_2": quality.distinct_2, "words": quality.mean_words,
            "empty": quality.empty, "gap": quality.relevance_gap,
            "gap_se": quality.relevance_gap_se, "f1": quality.f1,
            "replies": dict(zip(DEMO_PROMPTS, replies, strict=True))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--judge", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    judge = load_judge(args.judge, "cpu")
    base = shipped_checkpoint()
    rows, shared = [], None
    with tempfile.TemporaryDirectory(prefix="dlm-demo-") as tmp:
        variants = [(f"shipped + {n} steps on the corpus", fine_tune_config(
            Path(tmp) / f"ft{n}", base, n)) for n in args.steps]
        variants.append(("tiny from scratch (the demo until now)",
                         demo_config(Path(tmp) / "scratch")))
        for name, cfg in variants:
            start = time.perf_counter()
            train(cfg)
            seconds = time.perf_counter() - start
            lm = DiffusionLM.load(cfg.out_dir, "cpu")
            if shared is None:  # the corpus's held-out split, cased, for every variant
                _, histories, references, _ = held_out(lm, None, 1000)
                shared = histories, references
                rows.append(measure("shipped as it is", DiffusionLM.load(base, "cpu"), 0.0,
                                    *shared, judge))
            rows.append(measure(name, lm, seconds, *shared, judge))
            print(json.dumps(rows[-1])[:300], flush=True)
    out = {"command": f"python benchmarks/chat-budget/demo.py --steps "
                      f"{' '.join(map(str, args.steps))} --judge {args.judge} --out {args.out}",
           "machine": device_name(torch.device("cpu")), "commit": git_commit(),
           "base": portable(str(base)), "prompts": len(shared[0]), "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Command: `{out['command']}`", "", f"Machine: {out['machine']}; commit "
             f"{out['commit']}; {out['prompts']} held-out prompts of the embedded corpus.", "",
             "| variant | training s | judged PPL | distinct-2 | words | empty | F1 − shuffled |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_seconds']:.0f} | {r['judged_ppl']:.1f} ± "
                     f"{r['judged_ppl_se']:.1f} | {r['distinct_2']:.3f} | {r['words']:.1f} | "
                     f"{100 * r['empty']:.1f}% | {r['gap']:+.3f} ± {r['gap_se']:.3f} |")
    lines += ["", "The demo's prompts:", ""]
    for prompt in DEMO_PROMPTS:
        lines.append(f"- **{prompt}**")
        lines += [f"  - {r['variant']}: {r['replies'][prompt]!r}" for r in rows]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
