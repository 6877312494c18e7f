"""Pure, vectorised pieces of the sampler: filtering, float64 sampling, scoring, counts.

Nothing here calls a model; the sampler joins these pieces to a denoiser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlm.config.names import COMMIT_RULES
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
    filtered = token_distribution(logits, temperature, top_k, top_p)
    flat = filtered.reshape(-1, filtered.shape[-1])
    tokens = torch.multinomial(flat, 1, generator=generator).view(filtered.shape[:-1])
    return tokens, probs


def token_distribution(logits: torch.Tensor, temperature: float = 0.0, top_k: int = 0,
                       top_p: float = 1.0) -> torch.Tensor:
    """(..., V) float64: the distribution `sample_tokens` draws from (one-hot on the
    argmax when greedy), which speculative decoding's acceptance rule compares."""
    logits = logits.double()
    if temperature == 0.0:
        choice = filter_logits(logits, top_k, top_p).argmax(-1, keepdim=True)
        return torch.zeros_like(logits).scatter_(-1, choice, 1.0)
    # shifted to a maximum of 0 first (the softmax is the same), so a tiny temperature
    # cannot overflow a logit to inf, which made the probabilities NaN
    tempered = (logits - logits.amax(-1, keepdim=True)) / temperature
    return filter_logits(tempered, top_k, top_p).softmax(-1)


def seen_tokens(tokens: torch.Tensor, vocab: int, exempt: tuple[int, ...] = ()) -> torch.Tensor:
    """(B, V) bool: which ids occur in each row of `tokens` (B, N) (ids outside [0, V)
    and the `exempt` ones, such as eos, never count)."""
    valid = (tokens >= 0) & (tokens < vocab)
    seen = torch.zeros(tokens.shape[0], vocab + 1, dtype=torch.bool, device=tokens.device)
    seen.scatter_(1, torch.where(valid, tokens, vocab).long(), True)
    seen = seen[:, :vocab]
    if exempt:
        seen[:, list(exempt)] = False
    return seen


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logit of every id already in the reply is divided by
    `penalty` when positive and multiplied by it when negative. logits (B, V) or
    (B, W, V); seen (B, V) bool."""
    if penalty == 1.0:
        return logits
    if logits.dim() == 3:
        seen = seen[:, None, :]
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


def repeated_ngram_bans(history: list[list[int]], n: int, vocab: int,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, V) bool: the ids that would complete an n-gram already in each row's
    `history` (left-to-right decoding's no-repeat-n-gram rule)."""
    banned = torch.zeros(len(history), vocab, dtype=torch.bool, device=device)
    if n < 1:
        return banned
    for b, row in enumerate(history):
        if len(row) < n - 1:
            continue
        prefix = tuple(row[len(row) - n + 1 :]) if n > 1 else ()
        for i in range(len(row) - n + 1):
            if tuple(row[i : i + n - 1]) == prefix:
                banned[b, row[i + n - 1]] = True
    return banned


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


@dataclass(frozen=True)
class CommitRule:
    """How a step picks which masked positions to commit: a score ranks them, and
    `count` says how many of the top-ranked are committed this step."""

    score: Score
    count: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor]
    """(scores (B, L), masked (B, L), first (B, L), steps left, threshold) -> (B,).

    first: the masked positions that are ranked first (all of them, unless eos is
    deferred: then those not predicting eos, while a row has any)."""


def fixed_count(scores, masked, first, steps_left, threshold):
    """The block's remaining masks spread evenly over its remaining steps."""
    return commit_counts(masked.sum(1), steps_left)


def threshold_count(scores, masked, first, steps_left, threshold):
    """Fast-dLLM: every first-ranked masked position whose score reaches `threshold`, and
    never fewer than the even share, so at least one per step and none left after the
    step budget."""
    sure = ((scores >= threshold) & first).sum(1)
    return torch.maximum(sure, fixed_count(scores, masked, first, steps_left, threshold))


# The names are config's one list (COMMIT_RULES); this pairs each with its implementation.
RULES: dict[str, CommitRule] = dict(zip(COMMIT_RULES, (
    CommitRule(score_low_confidence, fixed_count),  # low_confidence
    CommitRule(score_margin, fixed_count),  # margin
    CommitRule(score_entropy, fixed_count),  # entropy
    CommitRule(score_random, fixed_count),  # random
    CommitRule(score_low_confidence, threshold_count),  # threshold
), strict=True))


def get_rule(name: str) -> CommitRule:
    if name not in RULES:
        raise ConfigError(f"unknown commit rule {name!r}; choose one of {', '.join(RULES)}")
    return RULES[name]


def commit_counts(n_masked: torch.Tensor, steps_left: int) -> torch.Tensor:
    """How many masks each row commits now: its remaining masks spread evenly.

    ceil(remaining / steps_left) front-loads the remainder, as LLaDA does, and
    leaves no mask after the last step.
    """
    return (n_masked + steps_left - 1) // steps_left


def block_budgets(length: int, block_length: int, steps: int) -> list[tuple[int, int, int]]:
    """(start, end, steps) of each block, offsets into the decoded region.

    Blocks of `block_length` are decoded left to right; the steps are shared out
    evenly, the remainder going to the first blocks. A threshold rule may finish a
    block in fewer steps; then its budget is not carried over.
    """
    starts = list(range(0, length, block_length))
    if steps < len(starts):
        raise ConfigError(f"steps={steps} is fewer than the {len(starts)} blocks of "
                          f"{block_length} tokens; use at least one step per block")
    base, extra = divmod(steps, len(starts))
    return [(start, min(start + block_length, length), base + (b < extra))
            for b, start in enumerate(starts)]


def remask_count(committed: torch.Tensor, rate: float, steps_left: int, block_steps: int,
                 ) -> torch.Tensor:
    """How many committed tokens each row re-masks this step (ReMDM-style revision).

    The rate decays linearly from `rate` to zero on the block's last step, so the
    canvas is always full when the budget ends. committed: (B,) tokens the sampler
    has committed in the block before this step.
    """
    decayed = rate * (steps_left - 1) / block_steps
    return (committed.double() * decayed).round().long()


def bottom_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): the k[b] lowest scores of each row b (+inf rows never chosen)."""
    return top_k_mask(-scores, k)


def top_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): the k[b] highest scores of each row b (ties broken by position)."""
    ranks = scores.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # (B, L)
    return ranks < k[:, None]
