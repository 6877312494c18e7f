"""The forward process: draw times, then replace tokens with [MASK] at the schedule's rate."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class Noise:
    """Every random draw of one batch's corruption, drawn up front.

    Training draws it for an optimiser step's whole (global) batch; a micro-batch or a
    process then takes its rows, and sees exactly the draws one process with the
    whole batch would: the times stay stratified over the global batch.
    """

    times: torch.Tensor
    """(B, blocks): one time per row (MDLM) or per block of a row (block diffusion)."""
    mask_draw: torch.Tensor
    """(B, T) uniforms: a token is masked where its draw is below the mask rate."""
    drop_draw: torch.Tensor | None = None
    """(B,) uniforms for classifier-free guidance's prompt dropout (None: no dropout)."""
    gauss: torch.Tensor | None = None
    """(B, T, C) standard normals: Gaussian diffusion's noise (None: a discrete one)."""

    def rows(self, lo: int, hi: int) -> Noise:
        def cut(x):
            return None if x is None else x[lo:hi]

        return Noise(self.times[lo:hi], self.mask_draw[lo:hi], cut(self.drop_draw),
                     cut(self.gauss))


def draw_noise(rows: int, length: int, eps: float = 1e-3, antithetic: bool = True,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               blocks: int = 1, drop: bool = False) -> Noise:
    drop_draw = torch.rand(rows, generator=generator, device=device) if drop else None
    t = sample_times(rows * blocks, eps, antithetic, generator, device).view(rows, blocks)
    draw = torch.rand((rows, length), generator=generator, device=device)
    return Noise(t, draw, drop_draw)


def corrupt(
    ids: torch.Tensor, maskable: torch.Tensor, t: torch.Tensor, schedule: Schedule,
    mask_id: int, generator: torch.Generator | None = None, draw: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each maskable token independently with probability 1 - alpha(t).

    ids, maskable: (B, T); t: (B,). Returns the noisy ids and the (B, T) bool of
    masked positions. Positions that are not maskable (the prompt) never change.
    draw: the (B, T) uniforms to use (default: drawn here).
    """
    rate = schedule.mask_rate(t)[:, None]  # (B, 1)
    if draw is None:
        draw = torch.rand(ids.shape, generator=generator, device=ids.device)  # (B, T)
    masked = (draw < rate) & maskable
    return torch.where(masked, torch.full_like(ids, mask_id), ids), masked


def drop_prompts(
    ids: torch.Tensor, maskable: torch.Tensor, key_padding: torch.Tensor | None, rate: float,
    mask_id: int, generator: torch.Generator | None = None, draw: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replace the whole prompt of a random `rate` share of rows with [MASK] (`draw`: the
    (B,) uniforms to use, default drawn here).

    The prompt is every real token that is not maskable; padding stays padding.
    Training on these rows teaches p(reply) without a prompt, which
    classifier-free guidance contrasts with p(reply | prompt) at sampling time.
    """
    if rate <= 0:
        return ids
    if draw is None:
        draw = torch.rand(ids.shape[0], generator=generator, device=ids.device)
    rows = draw < rate  # (B,)
    prompt = ~maskable if key_padding is None else ~maskable & key_padding  # (B, T)
    return ids.masked_fill(prompt & rows[:, None], mask_id)
