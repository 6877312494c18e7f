"""The diffusion sampler: a stateless generator that denoises a masked canvas step by step.

Each step predicts every masked position at once, samples a token for each, and
commits the most confident ones so that the last step leaves no mask. Every
intermediate state is yielded, so a caller can draw the denoising as it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.sampling.rules import (
    RULES,
    block_plan,
    commit_counts,
    sample_tokens,
    score_low_confidence,
    top_k_mask,
)

Denoiser = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class Step:
    """One state of the canvas.

    tokens: (B, L) response ids, mask id where still masked. newly_committed: (B, L)
    bool, what this step committed. confidences: (B, L) the probability of each
    committed token when it was committed (0 for masks). step_index: 0 is
    the all-mask start; `steps` is the last.
    """

    tokens: torch.Tensor
    newly_committed: torch.Tensor
    confidences: torch.Tensor
    step_index: int
    steps: int


def denoise(
    denoiser: Denoiser, prompt: torch.Tensor, key_padding: torch.Tensor | None,
    config: SampleConfig, mask_id: int, generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> Iterator[Step]:
    """Yield the canvas after every step of denoising `config.length` tokens after `prompt`.

    prompt: (B, P) left-padded prompt ids; key_padding: (B, P) True on real tokens
    (None if there is no padding). The model is called once per step; a step with
    nothing left to commit ends the loop early. With `block_length` < `length` the
    canvas is decoded block after block, left to right (LLaDA's semi-autoregressive
    mode); each block gets an equal share of the steps.
    """
    if config.rule not in RULES:
        raise ConfigError(f"unknown rule {config.rule!r}; choose one of {', '.join(RULES)}")
    score = RULES[config.rule]
    B, P = prompt.shape
    L = config.length
    canvas = torch.full((B, L), mask_id, dtype=prompt.dtype, device=prompt.device)
    confidences = torch.zeros(B, L, dtype=torch.float64, device=prompt.device)
    if key_padding is not None:
        key_padding = torch.cat([key_padding, torch.ones_like(canvas, dtype=torch.bool)], 1)
    nothing = torch.zeros_like(canvas, dtype=torch.bool)
    yield Step(canvas.clone(), nothing, confidences.clone(), 0, config.steps)
    plan = block_plan(L, config.block_length or L, config.steps)
    for s, (start, end, steps_left) in enumerate(plan):
        masked = canvas == mask_id  # (B, L)
        if not bool(masked.any()):
            break
        in_block = torch.zeros_like(masked)
        in_block[:, start:end] = True
        masked_here = masked & in_block  # later blocks wait their turn
        logits = denoiser(torch.cat([prompt, canvas], 1), key_padding)[:, P:]  # (B, L, V)
        logits[..., mask_id] = float("-inf")  # SUBS: never predict a mask
        tokens, probs = sample_tokens(logits, config.temperature, config.top_k, config.top_p,
                                      generator)  # (B, L), (B, L, V)
        scores = score(tokens, probs, generator)
        if config.defer_eos and eos_id is not None:
            # below every other candidate, but still above the positions not to commit
            scores = torch.where(tokens == eos_id, scores - 1e6, scores)
        scores = scores.masked_fill(~masked_here, float("-inf"))
        k = commit_counts(masked_here.sum(1), steps_left)  # (B,)
        commit = top_k_mask(scores, k) & masked_here
        canvas = torch.where(commit, tokens.to(canvas.dtype), canvas)
        token_prob = score_low_confidence(tokens, probs)  # shown in traces, whatever the rule
        confidences = torch.where(commit, token_prob, confidences)
        yield Step(canvas.clone(), commit, confidences.clone(), s + 1, config.steps)


def sample(
    denoiser: Denoiser, prompt: torch.Tensor, key_padding: torch.Tensor | None,
    config: SampleConfig, mask_id: int, generator: torch.Generator | None = None,
    on_step: Callable[[Step], None] | None = None, eos_id: int | None = None,
) -> torch.Tensor:
    """The final canvas (B, L); `on_step` sees every intermediate state."""
    return final_tokens(denoise(denoiser, prompt, key_padding, config, mask_id, generator,
                                eos_id), on_step)


def final_tokens(steps: Iterator[Step], on_step: Callable[[Step], None] | None = None,
                 ) -> torch.Tensor:
    """Run a step generator (diffusion or AR) to its end; `on_step` sees every state."""
    last = None
    for step in steps:
        if on_step is not None:
            on_step(step)
        last = step
    assert last is not None
    return last.tokens
