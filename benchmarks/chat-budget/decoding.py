"""Decodings of trained chat models on the same validation prompts, one table: what the
defaults (`src/dlm/defaults.py`) are chosen from.

    python benchmarks/chat-budget/decoding.py runs/c3/r4-kd50 --data runs/c3/ddval \
        --judge runs/rq/judge-ar --prompts 128 --decode '[{}, {"length": "auto"}]' \
        --out benchmarks/chat-budget/decoding-kd50

Every run replies with its default decoding updated by each `--decode` entry
(SampleConfig fields; `{}` is the default itself) to `--prompts` DailyDialog validation
prompts spread over the split, and the replies are scored by the separately trained AR
judge: judged perplexity, distinct-2, words, the shares of empty and stuttering replies,
and the unigram-F1 gap to shuffled references with its standard error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.evaluation.judge import load_judge
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--judge", required=True)
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--decode", default="[{}]", help="JSON list of SampleConfig fields")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    judge = load_judge(args.judge, "cpu")
    rows, shared = [], None
    for run in args.runs:
        lm = DiffusionLM.load(run, "cpu")
        if shared is None:
            _, histories, references, _ = held_out(lm, [args.data], 100_000)
            step = max(len(histories) // args.prompts, 1)
            shared = histories[::step][:args.prompts], references[::step][:args.prompts]
        for fields in json.loads(args.decode):
            config = lm.decoding(**fields)
            start = time.perf_counter()
            q, replies = generation_quality(lm, *shared[:1], config, judge,
                                            references=shared[1])
            rows.append({"run": run, "objective": lm.objective.name, "decode": fields,
                         "judged_ppl": q.gen_ppl, "judged_ppl_se": q.gen_ppl_se,
                         "distinct_2": q.distinct_2, "words": q.mean_words, "empty": q.empty,
                         "stutter": q.stutter, "broken_end": q.broken_end, "f1": q.f1,
                         "gap": q.relevance_gap, "gap_se": q.relevance_gap_se,
                         "seconds": round(time.perf_counter() - start, 1),
                         "replies": replies[:4]})
            r = rows[-1]
            print(f"{run} {fields}: PPL {r['judged_ppl']:.1f}, distinct-2 {r['distinct_2']:.3f}, "
                  f"{r['words']:.1f} words, gap {r['gap']:+.4f} ± {r['gap_se']:.4f}; "
                  f"{replies[:2]}", flush=True)
    out = {"command": f"python benchmarks/chat-budget/decoding.py {' '.join(args.runs)} --data "
                      f"{args.data} --judge {args.judge} --prompts {args.prompts} --decode "
                      f"'{args.decode}' --out {args.out}",
           "machine": device_name(torch.device("cpu")), "commit": git_commit(),
           "prompts": len(shared[0]), "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Command: `{out['command']}`", "", f"Machine: {out['machine']}; commit "
             f"{out['commit']}; {out['prompts']} DailyDialog validation prompts.", "",
             "| run | decoding (over its default) | judged PPL | distinct-2 | words | empty "
             "| stutter | F1 − shuffled | s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | `{json.dumps(r['decode'])}` | {r['judged_ppl']:.1f} ± "
                     f"{r['judged_ppl_se']:.1f} | {r['distinct_2']:.3f} | {r['words']:.1f} | "
                     f"{100 * r['empty']:.1f}% | {100 * r['stutter']:.1f}% | "
                     f"{r['gap']:+.4f} ± {r['gap_se']:.4f} | {r['seconds']:.0f} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
