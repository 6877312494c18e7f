"""What one drafter call and one verifier call cost on this machine (the README's "why").

    python benchmarks/speculative/call_costs.py [DRAFTER] [VERIFIER]

Times the drafter's forward over canvases of T positions (head over 8 of them, as a
draft window) and the AR verifier's forward over n new positions after a 40-token
cached prompt, at batch 1 and 8: the mean of 50 calls after 3 warm-ups.
"""

import sys
import time

import torch

from dlm import DiffusionLM


def mean_ms(fn, n: int = 50) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main(drafter_path: str = "runs/spec/drafter", verifier_path: str = "runs/spec/verifier"):
    drafter = DiffusionLM.load(drafter_path, "cpu")
    verifier = DiffusionLM.load(verifier_path, "cpu")
    vocab = verifier.tokenizer.vocab_size - 8
    with torch.inference_mode():
        for B in (1, 8):
            for T in (16, 40, 70, 110, 192):
                ids = torch.randint(0, vocab, (B, T))
                window = torch.zeros(B, T, dtype=torch.bool)
                window[:, T // 2 : T // 2 + 8] = True
                print(f"drafter  batch {B} canvas {T:3d}: "
                      f"{mean_ms(lambda i=ids, w=window: drafter.denoiser(i, None, w)):.2f} ms")
            for n in (1, 2, 4, 8, 17):
                cache = verifier.model.new_cache(B, 300)
                verifier.model(torch.randint(0, vocab, (B, 40)), None, cache=cache)
                ids = torch.randint(0, vocab, (B, n))
                ms = mean_ms(lambda i=ids, c=cache: verifier.model(i, None, cache=c, start=40))
                print(f"verifier batch {B} new {n:3d}: {ms:.2f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:])
