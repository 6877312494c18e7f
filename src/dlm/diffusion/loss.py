"""The MDLM continuous-time NELBO with the SUBS parameterisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlm.diffusion.corruption import Noise, corrupt, draw_noise
from dlm.diffusion.schedule import Schedule

# denoiser(noisy_ids (B, T), key_padding (B, T) or None, select (B, T) bool) -> (M, V) logits
# of the selected positions.
Denoiser = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]


def subs_log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log p(x0 | x_t) with the mask token ruled out (SUBS: the model never predicts [MASK])."""
    logits = logits.float()  # the cross-entropy stays in float32 under bf16 autocast
    mask_column = torch.tensor([mask_id], device=logits.device)
    return logits.index_fill(-1, mask_column, float("-inf")).log_softmax(dim=-1)


def nelbo_terms(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, weight: torch.Tensor,
    mask_id: int, token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence sum of weight(t) * (-log p(x0_l | x_t)) over masked positions.

    logits: (M, V) for the masked positions in row-major order (as `x[masked]`
    gives them); targets, masked: (B, T); weight: (B,). Unmasked positions are
    carried over under SUBS, so they cost nothing. token_weight: optional (B, T) weight of
    each position (eos_weight padding). Returns (B,).
    """
    logp = subs_log_probs(logits, mask_id)  # (M, V)
    nll = -logp.gather(-1, targets[masked][:, None]).squeeze(-1)  # (M,)
    row = masked.nonzero()[:, 0]  # (M,) which sequence each masked position is in
    per_seq = torch.zeros(masked.shape[0], device=logits.device, dtype=nll.dtype)
    if token_weight is not None:
        nll = nll * token_weight[masked]
    return per_seq.index_add(0, row, nll * weight[row])


@dataclass
class LossOutput:
    loss: torch.Tensor
    """NELBO in nats per maskable token (the training objective)."""
    n_tokens: int
    """Maskable tokens in the batch (the normaliser)."""
    n_masked: int
    """Tokens actually masked."""


def diffusion_loss(
    denoiser: Denoiser, ids: torch.Tensor, maskable: torch.Tensor,
    key_padding: torch.Tensor | None, schedule: Schedule, mask_id: int,
    eps: float = 1e-3, antithetic: bool = True, generator: torch.Generator | None = None,
    noise: Noise | None = None, normalizer: float | None = None,
    token_weight: torch.Tensor | None = None,
) -> LossOutput:
    """One Monte Carlo draw of the NELBO for a batch.

    The sum of weighted cross-entropies is divided by the number of tokens that
    could be masked, not by the number masked, so the figure is nats per token
    and exp(loss) bounds the perplexity. For chat, the maskable tokens are the
    response with its eos padding: that is how the model learns to stop.

    noise: these rows' share of draws made for a larger batch (default: drawn here).
    normalizer: that batch's maskable tokens, so the shares' losses add up to its loss.
    token_weight: (B, T) weight per position (eos_weight padding; the default normaliser
    is then the weights' sum).
    """
    if noise is None:
        noise = draw_noise(ids.shape[0], ids.shape[1], eps, antithetic, generator, ids.device)
    t = noise.times[:, 0]  # (B,)
    noisy, masked = corrupt(ids, maskable, t, schedule, mask_id, draw=noise.mask_draw)
    logits = denoiser(noisy, key_padding, masked)  # (M, V)
    per_seq = nelbo_terms(logits, ids, masked, schedule.weight(t), mask_id,
                          token_weight)  # (B,)
    n_tokens = int(maskable.sum())
    if token_weight is not None and normalizer is None:
        normalizer = float(token_weight[maskable].sum())
    return LossOutput(per_seq.sum() / max(normalizer or n_tokens, 1), n_tokens,
                      int(masked.sum()))
