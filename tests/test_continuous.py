"""Gaussian diffusion over embeddings (`dlm/objectives/continuous.py`): the schedule and
its SNR slope, the prior and reconstruction terms by hand, the variational bound of the
exact denoiser equal to the data's entropy, DDIM with clamping on a mock model, and a
tiny run with the prompt kept clean."""

from __future__ import annotations

import math

import pytest
import torch

from dlm.objectives import get_objective
from dlm.objectives.continuous import (
    alpha_bar,
    bound_terms,
    ddim_decode,
    noised_inputs,
    prior_kl,
    reconstruction,
    snr_slope,
)


def test_the_schedule_stays_inside_and_its_snr_slope_is_the_derivative():
    ends = alpha_bar(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert 0.98 < ends[0] < 1 and 0 < ends[1] < 1e-4
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64, requires_grad=True)
    ab = alpha_bar(t)
    (ab / (1 - ab)).sum().backward()
    assert torch.allclose(snr_slope(t.detach()), -t.grad, rtol=1e-6)


def test_the_prior_term_is_the_gaussian_kl():
    x0 = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ab = float(alpha_bar(torch.tensor(1.0, dtype=torch.float64)))
    q = torch.distributions.Normal(math.sqrt(ab) * x0, math.sqrt(1 - ab))
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(prior_kl(x0), expected.sum(-1), rtol=1e-6)


def test_reconstruction_by_hand():
    tokens = torch.zeros(2000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    apart = torch.tensor([[10.0, 0.0], [-10.0, 0.0]])  # far beyond x_0's noise: free
    assert reconstruction(apart, tokens, g).max() < 1e-6
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # indistinguishable: a coin, log 2
    assert torch.allclose(reconstruction(same, tokens, g), torch.full((2000,), math.log(2)))


def test_the_prompt_stays_clean_and_the_reply_is_noised_at_the_rate():
    table = torch.eye(4) * 2
    ids = torch.tensor([[0, 1, 2, 3]]).expand(20000, 4)
    maskable = torch.tensor([[False, False, True, True]]).expand(20000, 4)
    noise = torch.randn(20000, 4, 4, generator=torch.Generator().manual_seed(0))
    ab = torch.full((20000,), 0.36)
    x0, xt = noised_inputs(table, ids, maskable, ab, noise)
    assert torch.equal(xt[:, :2], x0[:, :2])
    assert xt[:, 2, 2].mean() == pytest.approx(0.6 * 2, abs=0.02)
    assert xt[:, 2].std(0).mean() == pytest.approx(0.8, abs=0.02)


def test_the_bound_of_the_exact_denoiser_is_the_entropy():
    """One position, 3 tokens with P0, fixed embeddings: with x̂0 = E[x0 | x_t] (the
    exact posterior mean) the continuous-time bound is -E log p(x0) = H(P0), up to the
    prior and reconstruction terms, which are ~0 here."""
    p0 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    table = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]],
                         dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x0_ids = torch.multinomial(p0, n, replacement=True, generator=g)
    t = (torch.arange(n, dtype=torch.float64) + torch.rand(1, generator=g,
                                                          dtype=torch.float64)) / n
    ab = alpha_bar(t)[:, None]
    x0 = table[x0_ids]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(n, 4, generator=g,
                                                        dtype=torch.float64)
    log_post = p0.log() - (xt[:, None, :] - ab[..., None].sqrt() * table).pow(2).sum(-1) \
        / (2 * (1 - ab))
    x0_hat = log_post.softmax(-1) @ table
    error = (x0_hat - x0).pow(2).sum(-1)
    terms = bound_terms(error, t, x0, table, x0_ids, g)
    entropy = float(-(p0 * p0.log()).sum())
    mean, se = float(terms.mean()), float(terms.std() / math.sqrt(n))
    assert abs(mean - entropy) < 3 * se + 0.01, (mean, se, entropy)


def test_ddim_with_clamping_ends_on_the_models_token():
    vocab, target = 6, 4
    embed = torch.nn.Embedding(vocab, 8)

    class Sure:  # a mock time-conditioned model, certain of one token everywhere
        def __init__(self):
            self.embed = embed
            self.seen_times = []

        def __call__(self, ids, key_padding=None, time=None, embeds=None):
            self.seen_times.append(float(time[0]))
            logits = torch.full((*embeds.shape[:2], vocab), -20.0)
            logits[..., target] = 20.0
            return logits

    model = Sure()
    prompt = torch.tensor([[1, 2]])
    steps = list(ddim_decode(model, prompt, None, 5, 4, banned=(0,),
                             generator=torch.Generator().manual_seed(0)))
    assert len(steps) == 4 and steps[-1].nfe == 4 and (steps[-1].tokens == target).all()
    assert model.seen_times == [1.0, 0.75, 0.5, 0.25]


def test_a_tiny_continuous_run_trains_samples_and_refuses_masks(tmp_path, pairs_tsv):
    from dlm.config import SampleConfig
    from dlm.errors import ConfigError
    from dlm.pipeline import DiffusionLM
    from dlm.training.train import train
    from tests.conftest import tiny_train_config

    result = train(tiny_train_config(tmp_path / "c", pairs_tsv, objective="continuous",
                                     max_steps=40, eval_every=20, batch_size=16, lr=5e-3,
                                     dedupe=False))
    first, last = result.history[0]["val_nelbo"], result.history[-1]["val_nelbo"]
    assert last < first and math.isfinite(last), result.history
    lm = DiffusionLM.load(result.checkpoint)
    assert type(lm.objective) is type(get_objective("continuous"))
    assert lm.model.config.time_conditioning
    assert isinstance(lm.generate("hello", SampleConfig(steps=8))[0], str)
    with pytest.raises(ConfigError, match="continuous"):
        lm.infill("hello [MASK] there")
