"""What a speculative round costs against an AR step, by verifier size, on this machine.

    python benchmarks/speculative/verifier_sizes.py > benchmarks/speculative/verifier_sizes.txt

Fresh weights (a forward's cost depends on the shapes, not the values): causal
verifiers from `tiny` to `small` with the chat tokenizer's 8,192 ids, and the tiny
bidirectional drafter (8,199 ids) over a 70-position canvas with its head over the k
drafts, in float32 and bfloat16. For each: the AR step (1 new position after a
60-token cached prompt), the verification of k drafts (k + 1 positions), the drafter
call, and the tokens a round must write for 2x AR at batch 1 and 1.3x at batch 8:
goal x (verify + draft) / AR step, with AR at its faster precision, against the most a
round can write (k + 1, every draft kept). The dual model (one backbone drafting and
verifying itself, no drafter call) is costed too: one forward over the pending token,
its k drafts and a block of k + 1 masks for each of the k + 1 numbers of drafts it may
keep (1 + k + (k + 1)^2 positions; `dlm.sampling.dual`). The loop's own work is left
out, so these are lower bounds. Medians of 30 calls, after half a
second of warm-up calls.
"""

import statistics
import time

import torch

from dlm.config import ModelConfig
from dlm.model import Transformer

SIZES = {  # name: (d_model, n_layers, n_heads, d_ff)
    "tiny": (128, 4, 4, 352),
    "d256x6": (256, 6, 4, 704),
    "d384x6": (384, 6, 6, 1024),
    "d384x8": (384, 8, 6, 1024),
    "small": (512, 8, 8, 1376),
}
GOALS = {1: 2.0, 8: 1.3}  # batch: the speed goal


def median_ms(fn, n: int = 30) -> float:
    warm = time.perf_counter()
    while time.perf_counter() - warm < 0.5:  # 3 warm-up calls left the first cells 2x slow
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def model(shape, causal: bool, vocab: int, dtype) -> Transformer:
    d, layers, heads, ff = shape
    cfg = ModelConfig(vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads, d_ff=ff,
                      max_seq_len=512, causal=causal)
    return Transformer(cfg).eval().to(dtype)


def ar_cost(verifier: Transformer, batch: int, new: int) -> float:
    cache = verifier.new_cache(batch, 400)
    verifier(torch.randint(0, 8000, (batch, 60)), None, cache=cache)
    ids = torch.randint(0, 8000, (batch, new))
    return median_ms(lambda: verifier(ids, None, cache=cache, start=60))


def draft_cost(drafter: Transformer, batch: int, k: int) -> float:
    ids = torch.randint(0, 8000, (batch, 70))
    window = torch.zeros(batch, 70, dtype=torch.bool)
    window[:, 40 : 40 + k] = True
    return median_ms(lambda: drafter(ids, None, window))


def main() -> None:
    torch.manual_seed(0)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        drafts = {}
        for name, dt in dtypes.items():
            drafter = model(SIZES["tiny"], False, 8199, dt)
            for B in GOALS:
                for k in (4, 16):
                    drafts[name, B, k] = draft_cost(drafter, B, k)
        for size, shape in SIZES.items():
            costs = {}
            for name, dt in dtypes.items():
                verifier = model(shape, True, 8192, dt)
                for B in GOALS:
                    for new in (1, 5, 17, 20, 72):
                        costs[name, B, new] = ar_cost(verifier, B, new)
            params = verifier.num_parameters() / 1e6
            for B, goal in GOALS.items():
                ar = min(costs["float32", B, 1], costs["bfloat16", B, 1])
                cells = []
                for name in dtypes:
                    for k in (4, 16):
                        round_ms = costs[name, B, k + 1] + drafts[name, B, k]
                        cells.append(f"{name} k={k:2d}: verify {costs[name, B, k + 1]:5.1f} + "
                                     f"draft {drafts[name, B, k]:4.1f} ms -> "
                                     f"{goal * round_ms / ar:4.1f} tokens/round (at most "
                                     f"{k + 1})")
                    for k in (3, 7):  # the dual model: a block per outcome, no drafter
                        forward = costs[name, B, 1 + k + (k + 1) ** 2]
                        cells.append(f"{name} dual k={k}: forward {forward:5.1f} ms -> "
                                     f"{goal * forward / ar:4.1f} tokens/forward (at most "
                                     f"{k + 1})")
                print(f"{size:7s} {params:5.1f}M batch {B}: AR step "
                      f"{costs['float32', B, 1]:5.1f} ms float32, "
                      f"{costs['bfloat16', B, 1]:5.1f} bfloat16; for {goal}x need")
                for cell in cells:
                    print(f"    {cell}")


if __name__ == "__main__":
    main()
