"""The default every door now takes, measured beside the one it replaced (issue 32).

    python benchmarks/simplicity/default_quality.py --judge runs/rq/judge-ar --prompts 256 \
        > benchmarks/simplicity/default-quality.json

The shipped model replies to `--prompts` validation prompts of its chat mix (every k-th,
as benchmarks/reply-quality/report.py takes them; `runs/chatmix` from docs/data.md's
`dlm data` command) under the new default (`lm.decoding()`: the whole canvas, eos allowed,
repetition penalty 1.2) and under the old one (the same with the canvas sized by the
length head, `length="auto"`); the separately trained AR judge (benchmarks/reply-quality/
configs/judge-ar.json) scores both. `broken_end` is the share of replies that end
mid-sentence (`dlm.evaluation.quality`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform

import torch

from dlm import DiffusionLM
from dlm.evaluation.judge import load_judge
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out


def spread(items: list, n: int) -> list:
    step = max(len(items) // n, 1)
    return items[::step][:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judge", required=True)
    parser.add_argument("--prompts", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = DiffusionLM.load(device="cpu")
    judge = load_judge(args.judge, "cpu")
    _, histories, references, _ = held_out(lm, None, 100_000)
    histories, references = spread(histories, args.prompts), spread(references, args.prompts)
    rows = []
    for name, config in [("new default: whole canvas", lm.decoding()),
                         ("old default: length head", lm.decoding(length="auto"))]:
        quality, replies = generation_quality(lm, histories, config, judge,
                                              references=references)
        rows.append({"decoding": name, "config": dataclasses.asdict(config),
                     "quality": dataclasses.asdict(quality),
                     "examples": [{"prompt": h[-1]["content"], "reply": r}
                                  for h, r in spread(list(zip(histories, replies,
                                                              strict=True)), 6)]})
    print(json.dumps({"command": "python benchmarks/simplicity/default_quality.py --judge "
                      f"{args.judge} --prompts {args.prompts}", "model": "shipped",
                      "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
