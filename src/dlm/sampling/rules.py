"""Pure, vectorised pieces of the sampler: filtering, float64 sampling, scoring, counts.

Nothing here calls a model; the sampler joins these pieces to a denoiser.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlm.errors import ConfigError


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per position and the full (untempered) distribution it came from.

    Sampling happens in float64: Gumbel or exponential noise in float32 cannot
    reach the far tail, which silently acts as a temperature below 1.
    Returns tokens (..., ) and probs (..., V) in float64.
    """
    logits = logits.double()
    probs = logits.softmax(-1)
    if temperature == 0.0:
        return filter_logits(logits, top_k, top_p).argmax(-1), probs
    filtered = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    flat = filtered.reshape(-1, filtered.shape[-1])
    tokens = torch.multinomial(flat, 1, generator=generator).view(filtered.shape[:-1])
    return tokens, probs


# --- scores: higher means "commit me sooner" -----------------------------------------
Score = Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], torch.Tensor]


def score_low_confidence(tokens, probs, generator=None):
    """Probability of the sampled token (LLaDA's low-confidence remasking)."""
    return probs.gather(-1, tokens[..., None]).squeeze(-1)


def score_margin(tokens, probs, generator=None):
    """Top-1 minus top-2 probability: sure when the runner-up is far behind."""
    top2 = probs.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def score_entropy(tokens, probs, generator=None):
    """Negative entropy of the position's distribution."""
    return (probs * probs.clamp_min(1e-300).log()).sum(-1)


def score_random(tokens, probs, generator=None):
    """A uniform random order (the original MDLM / D3PM sampler)."""
    return torch.rand(tokens.shape, generator=generator, device=tokens.device, dtype=probs.dtype)


RULES: dict[str, Score] = {
    "low_confidence": score_low_confidence,
    "margin": score_margin,
    "entropy": score_entropy,
    "random": score_random,
}


def commit_counts(n_masked: torch.Tensor, steps_left: int) -> torch.Tensor:
    """How many masks each row commits now: its remaining masks spread evenly.

    ceil(remaining / steps_left) front-loads the remainder, as LLaDA does, and
    leaves no mask after the last step.
    """
    return (n_masked + steps_left - 1) // steps_left


def block_plan(length: int, block_length: int, steps: int) -> list[tuple[int, int, int]]:
    """For each step: (block start, block end, steps left in the block, this one included).

    Blocks of `block_length` are decoded left to right; the steps are shared out
    evenly, the remainder going to the first blocks.
    """
    starts = list(range(0, length, block_length))
    if steps < len(starts):
        raise ConfigError(f"steps={steps} is fewer than the {len(starts)} blocks of "
                          f"{block_length} tokens; use at least one step per block")
    base, extra = divmod(steps, len(starts))
    plan = []
    for b, start in enumerate(starts):
        n = base + (b < extra)
        end = min(start + block_length, length)
        plan.extend((start, end, n - i) for i in range(n))
    return plan


def top_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): the k[b] highest scores of each row b (ties broken by position)."""
    ranks = scores.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # (B, L)
    return ranks < k[:, None]
