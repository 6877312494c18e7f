"""dlm's decoding of DiffusionGemma against transformers' own generation, reply by reply.

    python benchmarks/diffusion_gemma/compare.py --prompts 50 \
        --out benchmarks/diffusion_gemma/compare.json

A tiny random `DiffusionGemmaForBlockDiffusion` built with transformers (`tests/hf_folders.py`:
two text layers, four experts, canvases of 8 tokens) answers the same made-up prompts
through `DiffusionLM` (dlm's `diffusion-gemma` objective) and through transformers'
`generate`, each reply with its own seed, 32 new tokens (4 canvases), at most 8 steps per
canvas, the checkpoint's entropy bound 0.1, stability 1, confidence threshold 0.005.
Replies are compared token for token up to their first eos.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.*

from dlm import DiffusionLM  # noqa: E402
from dlm.bench.report import device_name, git_commit  # noqa: E402
from tests.hf_folders import WORDS, write_diffusion_gemma  # noqa: E402
from tests.test_diffusion_gemma import theirs, upto_eos  # noqa: E402

# (dlm's temperature, transformers' t_max; t_min = t_max / 2)
SETTINGS = {"near-greedy on both (T 2e-4 -> 1e-4)": (2e-4, 2e-4),
            "the reference's sampling (T 0.8 -> 0.4)": (0.8, 0.8),
            "dlm greedy (argmax) vs transformers near-greedy": (0.0, 2e-4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--out", default="benchmarks/diffusion_gemma/compare.json")
    args = ap.parse_args()
    pairs = list(itertools.product(WORDS, WORDS))[::7][:args.prompts]
    prompts = [f"{a} {b}" for a, b in pairs]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlm-dg-") as tmp:
        folder, model = write_diffusion_gemma(Path(tmp) / "tiny")
        lm = DiffusionLM.load(folder, "cpu")
        ends = lm.tokenizer.end_ids
        for name, (ours_t, their_t) in SETTINGS.items():
            same, differ = 0, []
            for seed, text in enumerate(prompts):
                history = [{"role": "user", "content": text}]
                config = lm.decoding(temperature=ours_t, length=32, steps=8, seed=seed)
                a = upto_eos(lm.reply_ids([history], config)[0].tolist(), ends)
                b = upto_eos(theirs(model, lm, history, their_t, 8, 32, seed), ends)
                if a == b:
                    same += 1
                else:
                    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False))
                                  if x != y), min(len(a), len(b)))
                    differ.append({"prompt": text, "first_difference_at": first})
            rows.append({"setting": name, "identical": same, "replies": len(prompts),
                         "differences": differ[:10]})
            print(f"{name}: {same}/{len(prompts)} identical")
    out = {"command": f"python benchmarks/diffusion_gemma/compare.py --prompts {args.prompts} "
                      f"--out {args.out}", "commit": git_commit(),
           "cpu": device_name(torch.device("cpu")), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
