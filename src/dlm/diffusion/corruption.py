"""The forward process: draw times, then replace tokens with [MASK] at the schedule's rate."""

from __future__ import annotations

import torch

from dlm.diffusion.schedule import Schedule


def sample_times(
    n: int, eps: float = 1e-3, antithetic: bool = True,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """n times in [eps, 1].

    Antithetic draws take one uniform r and spread the batch evenly,
    u_i = (r + i / n) mod 1, so every batch covers all noise levels: the same
    expectation as independent draws with a lower-variance loss.
    """
    if antithetic:
        r = torch.rand(1, generator=generator, device=device)
        u = (r + torch.arange(n, device=device) / n) % 1.0
    else:
        u = torch.rand(n, generator=generator, device=device)
    return eps + (1.0 - eps) * u  # (n,)


def corrupt(
    ids: torch.Tensor, maskable: torch.Tensor, t: torch.Tensor, schedule: Schedule,
    mask_id: int, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each maskable token independently with probability 1 - alpha(t).

    ids, maskable: (B, T); t: (B,). Returns the noisy ids and the (B, T) bool of
    masked positions. Positions that are not maskable (the prompt) never change.
    """
    rate = schedule.mask_rate(t)[:, None]  # (B, 1)
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)  # (B, T)
    masked = (draw < rate) & maskable
    return torch.where(masked, torch.full_like(ids, mask_id), ids), masked


def drop_prompts(
    ids: torch.Tensor, maskable: torch.Tensor, key_padding: torch.Tensor | None, rate: float,
    mask_id: int, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace the whole prompt of a random `rate` share of rows with [MASK].

    The prompt is every real token that is not maskable; padding stays padding.
    Training on these rows teaches p(reply) without a prompt, which
    classifier-free guidance contrasts with p(reply | prompt) at sampling time.
    """
    if rate <= 0:
        return ids
    rows = torch.rand(ids.shape[0], generator=generator, device=ids.device) < rate  # (B,)
    prompt = ~maskable if key_padding is None else ~maskable & key_padding  # (B, T)
    return ids.masked_fill(prompt & rows[:, None], mask_id)
