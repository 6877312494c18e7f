"""The teacher's replies under a few decodings: which one its distilled replies use.

    python benchmarks/chat-budget/teacher_decoding.py runs/c3/teacher-d256l6 \
        --data runs/c3/ddval --judge runs/rq/judge-ar --prompts 256 \
        > benchmarks/chat-budget/teacher-decoding.txt

The same 256 DailyDialog validation prompts as the ablation, the same judge; its greedy
row (the default decoding) is in teacher.md.
"""

import argparse

from dlm import DiffusionLM
from dlm.evaluation.judge import load_judge
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out

DECODINGS = [dict(temperature=0.7, seed=0), dict(temperature=1.0, seed=0),
             dict(temperature=1.0, top_p=0.9, seed=0),
             dict(temperature=0.7, repetition_penalty=1.0, seed=0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("teacher")
    ap.add_argument("--data", required=True)
    ap.add_argument("--judge", required=True)
    ap.add_argument("--prompts", type=int, default=256)
    args = ap.parse_args()
    lm = DiffusionLM.load(args.teacher, "cpu")
    judge = load_judge(args.judge, "cpu")
    _, histories, references, _ = held_out(lm, [args.data], 100_000)
    step = max(len(histories) // args.prompts, 1)
    histories, references = histories[::step][:args.prompts], references[::step][:args.prompts]
    for fields in DECODINGS:
        q, replies = generation_quality(lm, histories, lm.decoding(**fields), judge,
                                        references=references)
        print(f"{fields}: judged PPL {q.gen_ppl:.1f} ± {q.gen_ppl_se:.1f}, distinct-2 "
              f"{q.distinct_2:.3f}, words {q.mean_words:.1f}, empty {q.empty:.3f}, stutter "
              f"{q.stutter:.3f}, F1 {q.f1:.3f}, F1 - shuffled {q.relevance_gap:+.4f} ± "
              f"{q.relevance_gap_se:.4f}; {replies[:3]}", flush=True)


if __name__ == "__main__":
    main()
