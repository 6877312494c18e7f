"""Score entropy discrete diffusion (`dlm/objectives/sedd.py`): the score entropy by hand
on both graphs, the DWDSE of the exact score equal to the data's entropy (the bound is
tight where it should be), the Tweedie and Euler samplers on mock models whose scores
are exact, and a tiny time-conditioned run."""

from __future__ import annotations

import math

import pytest
import torch

from dlm.diffusion.schedule import Cosine, Linear
from dlm.objectives import bind_objective, get_objective
from dlm.objectives.sedd import Absorbing, Uniform, sedd_decode

P0 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
"""A one-position data distribution over 3 tokens; the absorbing graph adds [MASK] = 3."""
ENTROPY = float(-(P0 * P0.log()).sum())
MASK = 3


def test_absorbing_score_entropy_by_hand_and_against_mdlm():
    # N = 4 with the mask, t = 0.5 on the linear schedule: w = 1/t = 2.
    # logits 0 everywhere: l = -log 3, sum over the 3 tokens of e^l = 1, so the integrand
    # is 2 * (1 + log 3 - 1) = 2 log 3: the cross-entropy of a uniform guess, as MDLM's
    graph, t = Absorbing(MASK), torch.tensor([0.5])
    term = graph.terms(torch.zeros(1, 4), torch.tensor([MASK]), torch.tensor([0]),
                       torch.tensor([0.5]), Linear(), t)
    assert term.item() == pytest.approx(2 * math.log(3), rel=1e-6)
    # unnormalised scores pay more than the cross-entropy of their normalisation
    logits = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 2
    clean = torch.randint(3, (64,), generator=torch.Generator().manual_seed(1))
    sedd = graph.terms(logits, torch.full((64,), MASK), clean, torch.full((64,), 0.5),
                       Linear(), torch.full((64,), 0.5))
    ce = -logits[:, :3].log_softmax(-1).gather(1, clean[:, None])[:, 0]
    assert (sedd >= 2 * ce - 1e-5).all() and (sedd > 2 * ce + 1e-3).any()


def test_uniform_score_entropy_by_hand():
    # N = 2, t = 0.5 (alpha 0.5, beta = 2), clean 0, noisy 1, scores s = 1:
    # r_0 = (2 * 0.5 + 0.5) / 0.5 = 3, bracket 1 - 3 - 3 log(1/3), times beta / N = 1
    term = Uniform().terms(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([0]),
                           torch.tensor([0.5]), Linear(), torch.tensor([0.5]))
    assert term.item() == pytest.approx(-2 + 3 * math.log(3), rel=1e-5)


def exact_logits(graph: str, alpha: torch.Tensor) -> torch.Tensor:
    """(n, N) logits whose scores are the exact concrete scores of P0 at each alpha."""
    if graph == "absorbing":  # s_y = P0(y) alpha / (1 - alpha): l = log P0 + log(N - 1)
        logits = torch.cat([P0.log() + math.log(3), torch.zeros(1, dtype=torch.float64)])
        return logits.expand(len(alpha), 4)
    return (alpha[:, None] * P0 + (1 - alpha[:, None]) / 3).log()  # l_y = log p_t(y)


@pytest.mark.parametrize("schedule", [Linear(), Cosine()], ids=["linear", "cosine"])
@pytest.mark.parametrize("graph", ["absorbing", "uniform"])
def test_the_dwdse_of_the_exact_score_is_the_entropy(graph, schedule):
    """E over x0 ~ P0 and z ~ q_t(z | x0) of the integral over t: with the exact score the
    reverse process is the data's, so the bound is -E log p(x0) = H(P0)."""
    n = 20000
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    alpha = schedule.alpha(t)
    g = Absorbing(MASK) if graph == "absorbing" else Uniform()
    states = [MASK] if graph == "absorbing" else [0, 1, 2]
    total = 0.0
    for x0 in range(3):
        for z in states:
            q = (1 - alpha) if graph == "absorbing" else (alpha * (z == x0) + (1 - alpha) / 3)
            terms = g.terms(exact_logits(graph, alpha).float(), torch.full((n,), z),
                            torch.full((n,), x0), alpha, schedule, t).double()
            total += float(P0[x0] * (q * terms).sum() / n)
    assert total == pytest.approx(ENTROPY, rel=2e-3)


def exact_model(graph: str, length: int):
    """A mock time-conditioned model: at every reply position the exact score of P0."""
    def model(ids, key_padding=None, time=None):
        alpha = 1 - time.double()  # the linear schedule
        logits = exact_logits(graph, alpha)  # (B, N)
        return logits[:, None, :].expand(ids.shape[0], ids.shape[1], -1).float()
    return model


@pytest.mark.parametrize("predictor,steps", [("tweedie", 4), ("euler", 64)])
@pytest.mark.parametrize("graph", ["absorbing", "uniform"])
def test_the_samplers_draw_the_data_distribution_from_the_exact_score(graph, predictor,
                                                                       steps):
    g = Absorbing(MASK) if graph == "absorbing" else Uniform()
    vocab = 4 if graph == "absorbing" else 3
    prompt = torch.zeros(1, 1, dtype=torch.long)
    rows = 4000
    path = list(sedd_decode(exact_model(graph, 8), g, vocab, prompt.expand(rows, 1), None,
                            8, steps, Linear(), predictor, temperature=1.0,
                            generator=torch.Generator().manual_seed(0)))
    final = path[-1].tokens
    assert len(path) == steps + 1 and path[-1].nfe == steps
    assert (final < 3).all()  # no mask left, nothing out of the data's support
    freq = torch.bincount(final.flatten(), minlength=3).double() / final.numel()
    expected = rows * 8 * P0
    chi2 = float(((freq * rows * 8 - expected) ** 2 / expected).sum())
    # Tweedie steps of the exact score are exact; Euler's error shrinks with the steps
    assert chi2 < (13.8 if predictor == "tweedie" else 40.0), (freq, chi2)  # 2 dof
    if graph == "absorbing":  # a committed token never changes, masks only go
        for before, after in zip(path[:-1], path[1:], strict=True):
            kept = before.tokens != MASK
            assert torch.equal(after.tokens[kept], before.tokens[kept])
    else:  # any position may change at any step
        assert int(torch.stack([s.newly_committed for s in path[1:]]).sum(0).max()) >= 2


@pytest.mark.parametrize("name", ["sedd-absorbing", "sedd-uniform"])
def test_a_tiny_sedd_run_is_time_conditioned_trains_and_samples(tmp_path, pairs_tsv, name):
    from dlm.config import SampleConfig
    from dlm.errors import ConfigError
    from dlm.pipeline import DiffusionLM
    from dlm.training.train import train
    from tests.conftest import tiny_train_config

    result = train(tiny_train_config(tmp_path / name, pairs_tsv, objective=name,
                                     max_steps=40, eval_every=20, batch_size=16, lr=5e-3,
                                     dedupe=False))
    first, last = result.history[0]["val_nelbo"], result.history[-1]["val_nelbo"]
    assert last < 0.8 * first and math.isfinite(last), result.history
    lm = DiffusionLM.load(result.checkpoint)
    assert lm.objective == get_objective(name)  # SEDD has no training settings of its own
    assert lm.model.config.time_conditioning
    for predictor in ("tweedie", "euler"):
        assert isinstance(lm.generate("hello", SampleConfig(steps=8, predictor=predictor))[0], str)
    with pytest.raises(ConfigError, match="score-entropy"):
        lm.infill("hello [MASK] there")


def test_masked_diffusion_stays_time_free(tmp_path, pairs_tsv):
    from dlm.training.start import build_model
    from tests.conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path / "m", pairs_tsv)
    model = build_model(cfg, bind_objective(vars(cfg)), 64)
    assert not model.config.time_conditioning and model.time_embed is None
    assert not any("adaln" in name for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="time-free"):
        model(torch.zeros(1, 4, dtype=torch.long), time=torch.zeros(1))
