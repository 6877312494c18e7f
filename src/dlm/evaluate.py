"""Evaluation: the diffusion NELBO on held-out data (nats per token and its perplexity bound)."""

from __future__ import annotations

import torch

from dlm.data import EncodedSet, iter_batches
from dlm.diffusion import Schedule, diffusion_loss
from dlm.model import Transformer
from dlm.tokenizer import DLMTokenizer


@torch.no_grad()
def evaluate_nelbo(
    model: Transformer, data: EncodedSet, schedule: Schedule, tok: DLMTokenizer,
    batch_size: int = 64, draws: int = 4, eps: float = 1e-3, seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """Mean NELBO in nats per maskable token over `draws` Monte Carlo draws of t.

    The noise generator is reseeded each call, so successive evaluations of a
    run compare the model, not the luck of the draw. exp(result) bounds the
    perplexity of the responses (eos padding included).
    """
    generator = torch.Generator(device).manual_seed(seed + 12345)
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    for _ in range(draws):
        for batch in iter_batches(data, batch_size, tok.pad_id):
            batch = batch.to(device)
            out = diffusion_loss(model, batch.ids, batch.maskable, batch.key_padding, schedule,
                                 tok.mask_id, eps, True, generator)
            total += float(out.loss) * out.n_tokens
            tokens += out.n_tokens
    model.train(was_training)
    return total / max(tokens, 1)
