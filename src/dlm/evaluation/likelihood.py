"""Likelihood on held-out data: the diffusion NELBO (a bound) or the AR NLL (exact),
in nats per token, perplexity and bits per byte."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from dlm.data import EncodedSet, make_batch
from dlm.diffusion.padding import reply_lengths


@dataclass
class Likelihood:
    """Held-out likelihood of a model: a bound for diffusion, exact for AR."""

    objective: str
    nats_per_token: float
    stderr: float
    """Standard error over the `draws` passes (diffusion); 0 for AR (exact)."""
    draws: int
    perplexity: float
    is_bound: bool
    """True for diffusion: exp(NELBO) is an upper bound on the perplexity."""
    bits_per_byte: float
    tokens: int
    """Scored tokens (responses with their eos padding)."""
    text_bytes: int
    """UTF-8 bytes of the responses' text (what bits per byte divides by)."""


def likelihood(lm, data: EncodedSet, draws: int = 8, batch_size: int = 64, seed: int = 0,
               schedule: str = "linear", eps: float = 1e-3) -> Likelihood:
    """NELBO with `draws` antithetic passes (diffusion) or exact NLL (AR) on `data`, with
    perplexity and bits per byte of the response text."""
    from dlm.diffusion import get_schedule
    from dlm.evaluation.metrics import bits_per_byte

    tok, objective = lm.tokenizer, lm.objective
    text_bytes = sum(len(tok.decode_response(row.tolist()).encode("utf-8"))
                     for row in data.responses)
    ctx = lm.context
    ctx = dataclasses.replace(ctx, schedule=get_schedule(schedule),
                              diffusion=dataclasses.replace(ctx.diffusion, eps=eps),
                              batch_size=batch_size,
                              seed=seed)
    held = objective.held_out(ctx, data, draws)
    nll, tokens = held.nats_per_token, objective.scored_tokens(data)
    return Likelihood(objective.name, nll, held.stderr, held.draws, math.exp(min(nll, 50)),
                      not held.exact, bits_per_byte(nll, tokens, text_bytes), tokens,
                      text_bytes)


@torch.no_grad()
def length_accuracy(lm, data: EncodedSet, batch_size: int = 64) -> dict[str, float]:
    """How well the length head predicts the held-out replies' token lengths (from the
    prompts alone, argmax): exact, within 2 tokens, and the mean absolute error."""
    tok, classes = lm.tokenizer, lm.model.config.length_classes
    truth = reply_lengths(data.responses, tok.end_ids).clamp(1, classes)  # (N,)
    guesses = []
    for i in range(0, len(data), batch_size):
        batch = make_batch(data.prompts[i : i + batch_size], data.responses[i : i + batch_size],
                           tok.pad_id)
        P = int((~batch.maskable[0]).sum())
        padding = None if batch.key_padding is None else batch.key_padding[:, :P]
        guesses.append(lm.predict_lengths(batch.ids[:, :P].to(lm.device),
                                          None if padding is None else padding.to(lm.device)))
    error = (torch.cat(guesses).cpu() - truth).abs().float()
    return {"exact": float((error == 0).float().mean()),
            "within_2": float((error <= 2).float().mean()),
            "mae": float(error.mean()), "examples": int(truth.numel()),
            "mean_true_length": float(truth.float().mean())}
