"""The shift operation (DiffuLLaMA, Dream): a diffusion model adapted from an AR checkpoint
keeps the AR head's meaning, the output at position i predicting token i + 1.

`Shifted` wraps such a model so every caller (loss, sampler, infill, edit) sees logits
aligned with the positions they are for: the logits for position j are the model's
output at j - 1. Position 0 has no predictor; it is never one to fill (a chat canvas
starts with bos, and packed text keeps its first token unmasked).
"""

from __future__ import annotations

import torch


def shift_select(select: torch.Tensor) -> torch.Tensor:
    """(B, T) positions to predict -> (B, T) positions whose outputs predict them."""
    if bool(select[:, 0].any()):
        raise ValueError("a shifted model cannot predict position 0 (nothing precedes it)")
    out = torch.zeros_like(select)
    out[:, :-1] = select[:, 1:]
    return out


def annealed_mask(length: int, rate: float, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, T) bool, True where a query may see a key: the causal mask OR a Bernoulli(rate)
    mask (DiffuLLaMA's attention annealing, rate rising from 0 to 1 while the AR model
    learns to use the positions after it)."""
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    extra = torch.rand((length, length), generator=generator, device=device) < rate
    return causal | extra


class Shifted:
    """A shifted model seen as an ordinary denoiser: logits aligned with their positions."""

    def __init__(self, model):
        self.model = model

    def __call__(self, ids: torch.Tensor, key_padding: torch.Tensor | None = None,
                 select: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if select is not None:  # row-major order is kept, so x[select] lines up
            return self.model(ids, key_padding, shift_select(select), **kwargs)  # (M, V)
        logits = self.model(ids, key_padding, **kwargs)  # (B, T, V)
        return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)  # (B, T, V)


def as_denoiser(model):
    """The model itself, or `Shifted(model)` when its config says it is shifted."""
    return Shifted(model) if getattr(getattr(model, "config", None), "shift", False) else model
