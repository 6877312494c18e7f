"""Log-likelihoods of continuations given contexts, batched: the core of lm-eval's
`loglikelihood` and of zero-shot perplexity, for any objective that gives per-sequence
figures (`Objective.sequence_nll`: exact for AR, Monte Carlo draws of the ELBO for
masked diffusion).

Each pair is (context ids, continuation ids); the row is the two joined, cut from the
left to the model's positions, right-padded in a batch (the padding hidden from a
bidirectional model by its key-padding mask; a causal model never reaches it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Score:
    """log p(continuation | context) of one pair: exact, or the mean of `draws` Monte
    Carlo draws of a lower bound with its standard error."""

    logprob: float
    stderr: float
    draws: int
    tokens: int
    greedy: bool | None = None


def positions(lm) -> int:
    """The longest pair a row can hold: the model's positions, one more for a left-to-right
    model (its last token is only a target, never an input)."""
    return lm.model.config.max_seq_len + (1 if lm.objective.exact_likelihood else 0)


def fit(context: Sequence[int], continuation: Sequence[int], positions: int
        ) -> tuple[list[int], list[int]]:
    """The pair cut from the left to `positions` tokens: the continuation kept whole when
    it fits beside at least one context token (a shifted or causal model predicts a token
    from the one before it), else its last tokens."""
    context = list(context)
    continuation = list(continuation)[-(positions - 1):] if context else \
        list(continuation)[-positions:]
    room = positions - len(continuation)
    return (context[-room:] if room > 0 else []), continuation


@torch.no_grad()
def score_pairs(lm, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], draws: int = 32,
                batch_size: int = 16, seed: int = 0, greedy: bool = False,
                progress: Callable[[int], None] | None = None) -> list[Score]:
    """A `Score` per (context ids, continuation ids) pair, in the given order; pairs of
    similar length are batched together. `draws` applies to bound objectives (an exact
    objective takes one); `greedy` also asks whether greedy decoding writes each
    continuation (lm-eval's `is_greedy`); `progress(n)` is told of every n pairs done."""
    objective, ctx = lm.objective, lm.context
    rows = [fit(c, x, positions(lm)) for c, x in pairs]
    order = sorted(range(len(rows)), key=lambda i: -sum(map(len, rows[i])))
    generator = torch.Generator(lm.device).manual_seed(seed)
    pad = lm.tokenizer.pad_id
    out: list[Score | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(rows[i][0]) + len(rows[i][1]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        scored = torch.zeros(len(batch), width, dtype=torch.bool)
        real = torch.zeros(len(batch), width, dtype=torch.bool)
        for b, i in enumerate(batch):
            context, continuation = rows[i]
            n, m = len(context), len(continuation)
            ids[b, :n + m] = torch.tensor(context + continuation)
            scored[b, n:n + m] = True
            real[b, :n + m] = True
        ids, scored, real = ids.to(lm.device), scored.to(lm.device), real.to(lm.device)
        key_padding = None if bool(real.all()) else real
        nll = objective.sequence_nll(ctx, ids, scored, key_padding, draws, generator)
        took = nll.shape[1]
        mean = nll.mean(1)
        spread = (nll.std(1) / math.sqrt(took)) if took > 1 else torch.zeros_like(mean)
        wrote = (objective.greedy_reproduces(ctx, ids, scored, key_padding) if greedy
                 else None)
        for b, i in enumerate(batch):
            out[i] = Score(-float(mean[b]), float(spread[b]), took, len(rows[i][1]),
                           None if wrote is None else bool(wrote[b]))
        if progress is not None:
            progress(len(batch))
    return out  # type: ignore[return-value]
