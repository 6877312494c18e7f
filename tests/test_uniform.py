"""Uniform-noise discrete diffusion (`dlm/objectives/uniform.py`): the corruption, the
continuous-time NELBO against hand-computed cases and against the exact discrete-time
ELBO as T grows, and the ancestral sampler on a mock model."""

from __future__ import annotations

import math

import pytest
import torch

from dlm.diffusion.schedule import Cosine, Linear
from dlm.objectives import get_objective
from dlm.objectives.uniform import (
    corrupt_uniform,
    rates,
    reverse_probs,
    uniform_decode,
    uniform_terms,
)


def test_corruption_keeps_the_prompt_and_replaces_uniformly_at_the_rate():
    ids = torch.zeros(2000, 8, dtype=torch.long)
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, 4:] = True
    draw = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0))
    clean = corrupt_uniform(ids, maskable, torch.ones(2000), draw, vocab=5)
    assert torch.equal(clean, ids)  # alpha 1: nothing changes
    noisy = corrupt_uniform(ids, maskable, torch.zeros(2000), draw, vocab=5)
    assert torch.equal(noisy[:, :4], ids[:, :4])  # the prompt is never noised
    counts = torch.bincount(noisy[:, 4:].flatten(), minlength=5) / noisy[:, 4:].numel()
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.02)  # uniform, 0 included
    half = corrupt_uniform(ids, maskable, torch.full((2000,), 0.5), draw, vocab=5)
    changed = (half[:, 4:] != 0).float().mean()  # replaced half the time, by 0 a fifth
    assert changed == pytest.approx(0.5 * 0.8, abs=0.02)


def test_the_integrand_by_hand():
    # N = 2, alpha = 0.5, beta = 2, clean 0, noisy 1, x_theta = (1/2, 1/2):
    # x̄ = (1.5, 0.5), x̄_θ = (1, 1): r_0 = 3, r̂_0 = 1, bracket 1 - 3 - 3 log(1/3)
    term = uniform_terms(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([0]),
                         torch.tensor([0.5]), torch.tensor([2.0]))
    assert term.item() == pytest.approx(2 / 2 * (-2 + 3 * math.log(3)), rel=1e-5)
    sure = torch.tensor([[30.0, -30.0]])  # x_theta = the truth: r̂ = r, nothing to pay
    assert uniform_terms(sure, torch.tensor([1]), torch.tensor([0]), torch.tensor([0.5]),
                         torch.tensor([2.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_reverse_kernel_by_hand():
    # N = 2, alpha_t = 0.5 -> alpha_s = 1, z_t = 0, x_theta = (1/4, 3/4):
    # (0.5 onehot + 0.25) * x_theta = (0.75 * 0.25, 0.25 * 0.75): even
    probs = reverse_probs(torch.tensor([0.25, 0.75]).log(), torch.tensor(0), 0.5, 1.0)
    assert torch.allclose(probs, torch.tensor([0.5, 0.5]))


N, X = 3, 0
TABLE = torch.tensor([[1.0, 0.2, -0.5], [0.3, 0.9, 0.1], [0.5, -0.2, 0.7]], dtype=torch.float64)
"""A time-free mock model: the logits of x_theta for each noisy token z."""


def q_t(alpha: float) -> torch.Tensor:
    v = torch.full((N,), (1 - alpha) / N, dtype=torch.float64)
    v[X] += alpha
    return v


def posterior(z: int, a_t: float, a_s: float, x: torch.Tensor) -> torch.Tensor:
    """q(z_s | z_t = z, x) for a (soft) x: the discrete-time reverse kernel."""
    a_ts = a_t / a_s
    keep = torch.full((N,), (1 - a_ts) / N, dtype=torch.float64)
    keep[z] += a_ts
    p = keep * (a_s * x + (1 - a_s) / N)
    return p / p.sum()


def discrete_elbo(T: int, schedule) -> float:
    """The exact T-step negative ELBO: the sum over steps of E_z KL(q(z_s|z_t,x) ||
    p(z_s|z_t)); the last (s = 0) is the reconstruction term, and the prior term
    KL(q_1 || uniform) is 0 because alpha_1 = 0."""
    x = torch.zeros(N, dtype=torch.float64)
    x[X] = 1
    total = 0.0
    for k in range(1, T + 1):
        a_t, a_s = (float(schedule.alpha(torch.tensor(v, dtype=torch.float64)))
                    for v in (k / T, (k - 1) / T))
        for z in range(N):
            truth, model = posterior(z, a_t, a_s, x), posterior(z, a_t, a_s, TABLE[z].softmax(-1))
            kl = torch.where(truth > 0, truth * (truth.clamp_min(1e-300) / model).log(), 0.0)
            total += float(q_t(a_t)[z] * kl.sum())
    return total


def continuous_nelbo(schedule, n: int = 20000) -> float:
    """The integral over t of E_z of the loss's integrand (midpoint rule)."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    alpha, beta = rates(schedule, t)
    z = torch.arange(N).repeat(n)  # every noisy token at every time
    a, b = alpha.repeat_interleave(N), beta.repeat_interleave(N)
    terms = uniform_terms(TABLE[z].float(), z, torch.full_like(z, X), a, b).double()
    weights = (1 - a) / N + a * (z == X)  # q_t(z | x)
    return float((weights * terms).sum() / n)


@pytest.mark.parametrize("schedule", [Linear(), Cosine()], ids=["linear", "cosine"])
def test_the_continuous_nelbo_is_the_limit_of_the_discrete_elbo(schedule):
    limit = continuous_nelbo(schedule)
    gaps = [abs(discrete_elbo(T, schedule) - limit) for T in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] < 2e-4 * limit, (gaps, limit)


def test_the_sampler_starts_from_noise_changes_any_position_and_ends_on_the_model():
    vocab, target = 7, 3

    def sure_of(token):  # a mock denoiser, certain of one token everywhere
        def denoiser(ids, key_padding=None):
            logits = torch.full((*ids.shape, vocab), -20.0)
            logits[..., token] = 20.0
            return logits
        return denoiser

    prompt = torch.tensor([[1, 2], [2, 1]])
    steps = list(uniform_decode(sure_of(target), prompt, None, 6, 4, Linear(), vocab,
                                banned=(0,), generator=torch.Generator().manual_seed(0)))
    assert len(steps) == 5 and steps[0].step_index == 0 and steps[-1].nfe == 4
    assert (steps[-1].tokens == target).all()
    assert steps[0].tokens.shape == (2, 6) and not (steps[0].tokens == target).all()
    # unlike masked diffusion, nothing is ever final: a position set at one step may
    # change again at a later one
    steps = list(uniform_decode(sure_of(target), prompt, None, 16, 8, Linear(), vocab,
                                generator=torch.Generator().manual_seed(1)))
    changes = torch.stack([s.newly_committed for s in steps[1:]]).sum(0)  # (B, L)
    assert int(changes.max()) >= 2 and (steps[-1].tokens == target).all()


def test_a_tiny_uniform_run_trains_samples_and_refuses_masks(tmp_path, pairs_tsv):
    from dlm.errors import ConfigError
    from dlm.pipeline import DiffusionLM
    from dlm.training.train import train
    from tests.conftest import tiny_train_config

    result = train(tiny_train_config(tmp_path / "u", pairs_tsv, objective="uniform",
                                     max_steps=40, eval_every=20, batch_size=16, lr=5e-3,
                                     dedupe=False))
    first, last = result.history[0]["val_nelbo"], result.history[-1]["val_nelbo"]
    assert last < 0.8 * first and math.isfinite(last), result.history
    lm = DiffusionLM.load(result.checkpoint)
    assert lm.objective == get_objective("uniform")
    assert isinstance(lm.generate("hello")[0], str)
    with pytest.raises(ConfigError, match="no mask to fill"):
        lm.infill("hello [MASK] there")
