import math

import pytest
import torch

from dlm.diffusion import SCHEDULES, corrupt, diffusion_loss, get_schedule, sample_times
from dlm.diffusion.loss import nelbo_terms

MASK = 1


def test_antithetic_times_are_stratified_and_in_range():
    g = torch.Generator().manual_seed(0)
    t = sample_times(8, eps=1e-3, antithetic=True, generator=g)
    assert ((t >= 1e-3) & (t <= 1)).all()
    u = (t - 1e-3) / (1 - 1e-3)
    # one draw per stratum [i/n, (i+1)/n)
    assert sorted((u * 8).floor().long().tolist()) == list(range(8))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_weight_is_minus_alpha_prime_over_one_minus_alpha(name):
    s = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    alpha_prime = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    assert torch.allclose(s.weight(t), -alpha_prime / (1 - s.alpha(t)), rtol=1e-4)


def test_linear_schedule_masks_at_rate_t_and_weights_one_over_t():
    s = get_schedule("linear")
    t = torch.tensor([0.25, 0.5])
    assert torch.allclose(s.mask_rate(t), t) and torch.allclose(s.weight(t), 1 / t)


def test_masking_touches_only_maskable_tokens_at_the_scheduled_rate():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 50, (4, 2000))
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, 500:] = True  # the prompt is the first 500
    t = torch.tensor([0.1, 0.4, 0.7, 1.0])
    noisy, masked = corrupt(ids, maskable, t, get_schedule("linear"), MASK, g)
    assert torch.equal(noisy[:, :500], ids[:, :500]) and not masked[:, :500].any()
    assert torch.equal(noisy[masked], torch.full_like(noisy[masked], MASK))
    assert torch.equal(noisy[~masked], ids[~masked])
    rates = masked[:, 500:].float().mean(1)
    assert torch.allclose(rates, t, atol=0.04)


def test_loss_equals_a_hand_computation():
    # 2 sequences, 3 positions, vocab 4 (id 1 is the mask).
    logits = torch.tensor([
        [[0.0, 5.0, 1.0, 2.0], [1.0, 0.0, 0.0, 3.0], [2.0, 9.0, 0.5, 0.5]],
        [[0.3, 0.0, 0.2, 0.1], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 0.0]],
    ])
    targets = torch.tensor([[3, 0, 2], [0, 2, 2]])
    masked = torch.tensor([[True, False, True], [False, True, True]])
    weight = torch.tensor([2.0, 4.0])  # 1/t for t = 0.5, 0.25

    def nll(row, target):  # mask logit excluded (SUBS)
        kept = [v for i, v in enumerate(row.tolist()) if i != MASK]
        z = math.log(sum(math.exp(v) for v in kept))
        return z - row[target].item()

    want0 = 2.0 * (nll(logits[0, 0], 3) + nll(logits[0, 2], 2))
    want1 = 4.0 * (nll(logits[1, 1], 2) + nll(logits[1, 2], 2))
    got = nelbo_terms(logits[masked], targets, masked, weight, MASK)
    assert torch.allclose(got, torch.tensor([want0, want1]), atol=1e-5)


def test_perfect_denoiser_has_near_zero_loss_and_never_predicts_mask():
    ids = torch.randint(2, 20, (4, 16))
    maskable = torch.ones_like(ids, dtype=torch.bool)

    def oracle(noisy, key_padding, select):
        logits = torch.full((*ids.shape, 20), -30.0)
        logits.scatter_(-1, ids[..., None], 30.0)
        logits[..., MASK] = 100.0  # SUBS must ignore this
        return logits[select]

    out = diffusion_loss(oracle, ids, maskable, None, get_schedule("linear"), MASK,
                         generator=torch.Generator().manual_seed(0))
    assert out.loss.item() < 1e-6 and out.n_masked > 0 and out.n_tokens == ids.numel()


def test_uniform_denoiser_expected_loss_is_log_vocab():
    # E_t[(1/t) * t * log(V - 1)] = log(V - 1) per token: the normaliser is the maskable count.
    V = 50
    ids = torch.randint(2, V, (256, 32))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    losses = [diffusion_loss(lambda x, k, sel: torch.zeros(int(sel.sum()), V), ids, maskable, None,
                             get_schedule("linear"), MASK, generator=g).loss.item()
              for _ in range(8)]
    assert abs(sum(losses) / len(losses) - math.log(V - 1)) < 0.1
