"""Training and sampling speed before and after the objective redesign (issue 18), in one
run: the same measurement alternates between the two checkouts (old, new, old, new), so
drift on this shared CPU falls on both alike; the figures are medians and ratios.

    python benchmarks/redesign/before_after.py [--before COMMIT] [--rounds 2]

For each objective (MDLM and AR): a 60-step `tiny` run on the embedded chatterbot corpus
through `dlm.training.train` (the whole training path: the objective's noise, loss, validation),
its median training tokens/s over steps 11-60; then the median latency of replying to 16
prompts with that model (`DiffusionLM.generate`, 16 steps for MDLM).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = r"""
import json, statistics, sys, time
from dlm import DiffusionLM, SampleConfig
from dlm.config import TrainConfig
from dlm.training.train import train
objective, out = sys.argv[1], sys.argv[2]
cfg = TrainConfig(out_dir=out, preset="tiny", max_steps=60, batch_size=64, lr=3e-3,
                  lowercase=True, prompt_len=16, response_len=16, drop_long=True,
                  eval_every=0, save_every=0, cfg_dropout=0.0, objective=objective,
                  tensorboard=False, seed=0, device="cpu")
train(cfg)
rows = [json.loads(x) for x in open(f"{out}/metrics.jsonl")]
speed = statistics.median(r["tokens_per_s"] for r in rows if "tokens_per_s" in r
                          and r["step"] > 10)
lm = DiffusionLM.load(out, "cpu")
prompts = ["hello", "how are you", "what is your name", "tell me a joke"] * 4
lm.generate(prompts, SampleConfig(length=16, steps=16))  # warm-up
times = []
for _ in range(5):
    start = time.perf_counter()
    lm.generate(prompts, SampleConfig(length=16, steps=16))
    times.append(time.perf_counter() - start)
print(json.dumps({"tokens_per_s": speed, "latency_s": statistics.median(times)}))
"""


def measure(src: Path, objective: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="dlm-redesign-") as out:
        done = subprocess.run([sys.executable, "-c", PROBE, objective, out], check=True,
                              capture_output=True, text=True,
                              env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin",
                                   "OMP_NUM_THREADS": "2"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="75d1fc6", help="the commit before the redesign")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    old = Path(tempfile.mkdtemp(prefix="dlm-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                    args.before], check=True, capture_output=True)
    try:
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.rounds):
            for objective in ("diffusion", "ar"):
                for name, src in (("before", old / "src"), ("after", ROOT / "src")):
                    runs.setdefault((objective, name), []).append(measure(src, objective))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                       check=True)
    lines = [f"# Before and after the objective redesign\n\n`python "
             f"benchmarks/redesign/before_after.py --before {args.before} --rounds "
             f"{args.rounds}` (2-core CPU, no GPU). Each round measures before and after "
             "back to back; the ratio is after / before within a round (its median, and "
             "the range over the rounds), so the CPU's drift between rounds cancels.\n",
             "| objective | training tokens/s, before → after (medians) | after / before "
             "| 16 replies, s, before → after | after / before |", "|---|---|---|---|---|"]
    result = {}
    for objective in ("diffusion", "ar"):
        b, a = runs[(objective, "before")], runs[(objective, "after")]
        cells = []
        for key in ("tokens_per_s", "latency_s"):
            ratios = sorted(y[key] / x[key] for x, y in zip(b, a, strict=True))
            fmt = ",.0f" if key == "tokens_per_s" else ".3f"
            cells += [f"{statistics.median(r[key] for r in b):{fmt}} → "
                      f"{statistics.median(r[key] for r in a):{fmt}}",
                      f"{statistics.median(ratios):.3f} ({ratios[0]:.2f}–{ratios[-1]:.2f})"]
        result[objective] = {"before": b, "after": a}
        lines.append(f"| {objective} | " + " | ".join(cells) + " |")
    here = Path(__file__).parent
    (here / "README.md").write_text("\n".join(lines) + "\n")
    (here / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
