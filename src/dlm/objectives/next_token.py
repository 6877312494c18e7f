"""The autoregressive baseline's objective: next-token cross-entropy on the same tokens.

The baseline is the same Transformer with `causal=True`, trained on the same batches.
Its loss covers exactly the positions the diffusion loss covers (the response and
its eos padding for chat, every token for packed text), so the two per-token
figures measure the same tokens: AR exactly, diffusion as a bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlm.data import EncodedSet, iter_batches
from dlm.diffusion import LossOutput
from dlm.model import Transformer


def predicted_positions(maskable: torch.Tensor) -> torch.Tensor:
    """(B, T) True at position i when token i + 1 is one to predict."""
    select = torch.zeros_like(maskable)
    select[:, :-1] = maskable[:, 1:]
    return select


def ar_loss(model: Transformer, ids: torch.Tensor, maskable: torch.Tensor,
            key_padding: torch.Tensor | None, normalizer: int | None = None) -> LossOutput:
    """Mean next-token negative log-likelihood (nats) over the maskable tokens after the first.

    A packed text sequence's first token has no context, so it is not scored.
    """
    select = predicted_positions(maskable)
    logits = model(ids, key_padding, select).float()  # (M, V)
    targets = ids[:, 1:][maskable[:, 1:]]  # (M,) the next tokens, same row-major order
    n = int(targets.numel())
    loss = F.cross_entropy(logits, targets, reduction="sum") / max(normalizer or n, 1)
    return LossOutput(loss, n, n)


@torch.no_grad()
def evaluate_ar_nll(model: Transformer, data: EncodedSet, pad_id: int, batch_size: int = 64,
                    device: torch.device | str = "cpu") -> float:
    """Exact mean NLL per token on `data` (its `exp` is the perplexity, not a bound)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for batch in iter_batches(data, batch_size, pad_id):
        batch = batch.to(device)
        out = ar_loss(model, batch.ids, batch.maskable, batch.key_padding)
        total += float(out.loss) * out.n_tokens
        tokens += out.n_tokens
    model.train(was_training)
    return total / max(tokens, 1)
