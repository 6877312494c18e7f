"""Left-to-right decoding for the autoregressive baseline, with a KV cache.

It yields the same `Step`s as the diffusion sampler (one committed token per step),
so traces, the chat REPL and the server show both models the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlm.config import SampleConfig
from dlm.model import Transformer
from dlm.sampling.rules import (
    penalise_repeats,
    repeated_ngram_bans,
    sample_tokens,
    score_low_confidence,
    seen_tokens,
)
from dlm.sampling.sampler import Step


def next_token_logits(logits: torch.Tensor, written: torch.Tensor, config: SampleConfig,
                      mask_id: int, eos_id: int) -> torch.Tensor:
    """The verifier's rules on the logits (B, V) of the next token after `written` (B, N)
    reply tokens (-1 where a row has written fewer): never the mask, eos banned when asked,
    the repetition penalty and the no-repeat-n-gram ban. AR decoding and speculative
    verification both apply exactly these, so they draw from the same distribution."""
    logits = logits.clone()
    logits[:, mask_id] = float("-inf")  # the mask token is never text
    if config.eos == "ban":  # the reply runs to exactly `length` tokens
        logits[:, eos_id] = float("-inf")
    if config.repetition_penalty != 1.0:
        logits = penalise_repeats(logits, seen_tokens(written, logits.shape[-1], (eos_id,)),
                                  config.repetition_penalty)
    if config.no_repeat_ngram:
        rows = [[t for t in row if t >= 0] for row in written.tolist()]
        bans = repeated_ngram_bans(rows, config.no_repeat_ngram, logits.shape[-1],
                                   logits.device)
        bans[:, eos_id] = False  # a reply may always end
        logits = logits.masked_fill(bans, float("-inf"))
    return logits


@torch.no_grad()
def ar_decode(
    model: Transformer, prompt: torch.Tensor, key_padding: torch.Tensor | None,
    config: SampleConfig, mask_id: int, eos_id: int,
    generator: torch.Generator | None = None,
) -> Iterator[Step]:
    """Yield the reply after each new token; stops when every row has produced eos.

    prompt: (B, P) left-padded; the prompt is read in one forward (prefill), then each
    token costs one forward of one position over the cache. Rows that have finished
    are padded with eos, as the diffusion canvas is.
    """
    B, P = prompt.shape
    L = config.length
    canvas = torch.full((B, L), mask_id, dtype=prompt.dtype, device=prompt.device)
    confidences = torch.zeros(B, L, dtype=torch.float64, device=prompt.device)
    real = (key_padding if key_padding is not None
            else torch.ones(B, P, dtype=torch.bool, device=prompt.device))
    nothing = torch.zeros_like(canvas, dtype=torch.bool)
    yield Step(canvas.clone(), nothing, confidences.clone(), 0, L, nothing, 0)
    cache = model.new_cache(B, P + L)
    # float32 logits, as speculative verification reads them (a bfloat16 model's values)
    logits = model(prompt, real, cache=cache)[:, -1].float()  # (B, V)
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    for i in range(L):
        logits = next_token_logits(logits, canvas[:, :i], config, mask_id, eos_id)
        tokens, probs = sample_tokens(logits, config.temperature, config.top_k, config.top_p,
                                      generator)  # (B,), (B, V)
        tokens = torch.where(done, torch.full_like(tokens, eos_id), tokens)
        canvas[:, i] = tokens.to(canvas.dtype)
        confidences[:, i] = score_low_confidence(tokens, probs)
        done |= tokens == eos_id
        if bool(done.all()):
            canvas[:, i + 1 :] = eos_id
        commit = torch.zeros_like(canvas, dtype=torch.bool)
        commit[:, i] = True
        yield Step(canvas.clone(), commit, confidences.clone(), i + 1, L, nothing, i + 1)
        if bool(done.all()) or i == L - 1:
            break
        real = torch.cat([real, torch.ones(B, 1, dtype=torch.bool, device=real.device)], 1)
        logits = model(tokens[:, None].to(prompt.dtype), real, cache=cache)[:, -1].float()
