"""Per-sequence likelihoods (`Objective.sequence_nll`, `greedy_reproduces`): what
lm-eval's `loglikelihood` and zero-shot perplexity are built on. The Monte Carlo ELBO of
masked diffusion is checked against the objective's own held-out NELBO on the same text;
AR's exact figure against its own held-out NLL."""

from __future__ import annotations

import math

import torch

from dlm import DiffusionLM
from dlm.data import EncodedSet
from dlm.model import Transformer
from tests.conftest import tiny_config


def model_of(tok, causal: bool, seed: int = 0) -> DiffusionLM:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(tok.vocab_size, causal=causal)).eval()
    with torch.no_grad():  # larger weights than the init, so predictions are not flat
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    return DiffusionLM(model, tok, objective="ar" if causal else "diffusion")


def random_text(tok, rows: int, prompt: int, reply: int, seed: int = 1) -> EncodedSet:
    g = torch.Generator().manual_seed(seed)
    return EncodedSet(torch.randint(10, tok.vocab_size, (rows, prompt), generator=g),
                      torch.randint(10, tok.vocab_size, (rows, reply), generator=g))


def as_rows(data: EncodedSet) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.cat([data.prompts, data.responses], 1)
    scored = torch.zeros_like(ids, dtype=torch.bool)
    scored[:, data.prompts.shape[1]:] = True
    return ids, scored


def test_the_monte_carlo_elbo_averages_to_the_held_out_nelbo(tok):
    lm = model_of(tok, causal=False)
    data = random_text(tok, rows=16, prompt=6, reply=10)
    held = lm.objective.held_out(lm.context, data, draws=64)
    ids, scored = as_rows(data)
    draws = lm.objective.sequence_nll(lm.context, ids, scored, None, 64,
                                      torch.Generator().manual_seed(3))  # (16, 64)
    tokens = int(scored.sum())
    per_draw = draws.sum(0) / tokens  # nats per token, one figure per draw
    mean = float(per_draw.mean())
    stderr = float(per_draw.std() / math.sqrt(per_draw.numel()))
    assert abs(mean - held.nats_per_token) < 3 * math.hypot(stderr, held.stderr)
    assert stderr > 0  # a bound estimated by draws, not a constant


def test_ar_sequence_nll_is_the_exact_held_out_nll(tok):
    lm = model_of(tok, causal=True)
    data = random_text(tok, rows=8, prompt=5, reply=7)
    held = lm.objective.held_out(lm.context, data, draws=1)
    ids, scored = as_rows(data)
    nll = lm.objective.sequence_nll(lm.context, ids, scored, None, 1, None)
    assert nll.shape == (8, 1)
    assert abs(float(nll.sum()) / int(scored.sum()) - held.nats_per_token) < 1e-4


def test_greedy_means_the_model_would_write_it(tok):
    for causal in (True, False):
        lm = model_of(tok, causal=causal)
        ids, scored = as_rows(random_text(tok, rows=4, prompt=6, reply=1))
        with torch.no_grad():  # one scored token: greedy is its argmax, either way
            noisy = ids.clone()
            if not causal:
                noisy[:, -1] = tok.mask_id
            best = lm.model(noisy)[:, -2 if causal else -1].argmax(-1)
        own = ids.clone()
        own[:, -1] = best
        other = ids.clone()
        other[:, -1] = (best + 1) % tok.vocab_size
        assert lm.objective.greedy_reproduces(lm.context, own, scored, None).all()
        assert not lm.objective.greedy_reproduces(lm.context, other, scored, None).any()


def test_a_long_continuation_keeps_a_context_token_before_it():
    from dlm.evaluation.scoring import fit

    context, continuation = fit([1, 2, 3], list(range(10, 30)), positions=8)
    assert context == [3] and continuation == list(range(23, 30))
    assert fit([], [5, 6, 7], positions=2) == ([], [6, 7])
    assert fit([1, 2], [5], positions=8) == ([1, 2], [5])
