"""Fit of trained runs on one fixed validation set (the pilots' yardstick).

    python benchmarks/chat-budget/fit.py runs/c3/mix-natural runs/c3/mix-ddheavy \
        --data runs/c3/dd --out benchmarks/chat-budget/mix.json

Every run is scored on the validation split of `--data` (DailyDialog's, where the held-out
prompts come from), re-tokenized for the run: nats per reply token (exact for AR, the
NELBO bound for diffusion) and bits per byte of the reply text, which also compares runs
whose tokenizers differ.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.evaluation.likelihood import likelihood
from dlm.evaluation.report import held_out


def fit(run: str, data: str, examples: int, draws: int) -> dict:
    lm = DiffusionLM.load(run, "cpu")
    val, *_ = held_out(lm, [data], examples)
    start = time.time()
    lk = likelihood(lm, val, draws)
    last = json.loads((Path(run) / "last" / "config.json").read_text())
    return {"run": run, "checkpoint": str(lm.source), "step": last.get("step"),
            "objective": lm.objective.name, "parameters": lm.model.num_parameters(),
            "nats_per_reply_token": round(lk.nats_per_token, 4),
            "stderr": round(lk.stderr, 4), "bound": lk.is_bound,
            "bits_per_byte": round(lk.bits_per_byte, 4), "tokens": lk.tokens,
            "seconds": round(time.time() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True, help="a `dlm data` directory: its validation split")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [fit(run, args.data, args.examples, args.draws) for run in args.runs]
    out = {"command": "python benchmarks/chat-budget/fit.py " + " ".join(args.runs)
           + f" --data {args.data} --examples {args.examples} --out {args.out}",
           "commit": git_commit(), "cpu": device_name(torch.device("cpu")),
           "torch": torch.__version__, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(f"{r['run']}: {r['nats_per_reply_token']:.4f} nats/token, "
              f"{r['bits_per_byte']:.4f} bits/byte ({r['parameters']:,} parameters)")


if __name__ == "__main__":
    main()
