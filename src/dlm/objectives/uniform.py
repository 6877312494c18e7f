"""Discrete diffusion with uniform noise in continuous time (D3PM's uniform kernel; the
continuous-time ELBO of UDLM, Schiff et al. 2024, and DUO, Sahoo et al. 2025).

Forward: each maskable token is kept with probability alpha_t and otherwise replaced by
a token drawn uniformly from the N-token vocabulary, q(z_t | x) = Cat(alpha_t x +
(1 - alpha_t) / N). That is the CTMC with rates beta_t / N between any two tokens,
beta_t = -alpha_t' / alpha_t. No token is marked as noisy, so the denoiser predicts
x_theta at every position, and the loss has terms at uncorrupted positions too.

Loss (the continuous-time NELBO, nats per maskable token): with x̄ = N alpha_t x +
(1 - alpha_t) and x̄_θ the same with x_theta, at a position holding z,

    beta_t / N * sum_{y != z} [ r̂_y - r_y - r_y log(r̂_y / r_y) ],
    r_y = x̄_y / x̄_z,   r̂_y = x̄_θ,y / x̄_θ,z

(the rate-matrix form of the ELBO, Campbell et al. 2022; it is UDLM's eq. for T -> inf,
and tests/test_uniform.py checks it against the exact discrete-time ELBO, a sum of
categorical KLs, as T grows). The model is time-free, as MDLM's: t is not an input.
Times are drawn in [eps, 1 - eps]: alpha_1 = 0 makes beta infinite there while the
bracket vanishes; the cut-off ends contribute O(eps).

Sampler: ancestral steps t -> s of the model's reverse kernel,
p(z_s | z_t) ∝ (alpha_{t|s} onehot(z_t) + (1 - alpha_{t|s}) / N) * (alpha_s x_theta +
(1 - alpha_s) / N), from uniform noise at t = 1; any position may change at any step.
The last step takes x_theta's most likely allowed token (temperature 0) or samples it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from dlm.diffusion import LossOutput, Schedule
from dlm.diffusion.corruption import Noise, draw_noise
from dlm.objectives.base import BoundObjective, Needs
from dlm.objectives.context import Context
from dlm.sampling import Step


def rates(schedule: Schedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_t and beta_t = -alpha_t' / alpha_t (from the schedule's masked-token weight
    -alpha' / (1 - alpha))."""
    alpha = schedule.alpha(t)
    return alpha, schedule.weight(t) * (1.0 - alpha) / alpha


def corrupt_uniform(ids: torch.Tensor, maskable: torch.Tensor, alpha: torch.Tensor,
                    draw: torch.Tensor, vocab: int) -> torch.Tensor:
    """Each maskable token replaced, with probability 1 - alpha (B,), by a uniform one.
    One uniform draw per position decides both: below the rate it is replaced, and its
    position within [0, rate) is itself uniform, so it picks the new token."""
    rate = (1.0 - alpha)[:, None]  # (B, 1)
    hit = (draw < rate) & maskable
    new = (draw / rate.clamp_min(1e-12) * vocab).long().clamp_max(vocab - 1)
    return torch.where(hit, new, ids)


def odds_shift(alpha: torch.Tensor, N: int) -> torch.Tensor:
    """c = log(N alpha / (1 - alpha)) (M, 1): log x̄_y - log(1 - alpha) =
    softplus(c + log x_y), tiny but exact as alpha -> 0, where every ratio tends to 1."""
    a = alpha.double()
    return (torch.log(N * a) - torch.log1p(-a)).float()[:, None]


def true_log_ratios(clean: torch.Tensor, noisy: torch.Tensor, c: torch.Tensor,
                    N: int) -> torch.Tensor:
    """log r_y = log q(y | x) - log q(z | x) (M, N) at positions holding z = noisy, for
    the clean tokens x (M,); 0 at y = z."""
    v = torch.zeros(clean.shape[0], N, device=clean.device).scatter_(
        1, clean[:, None], F.softplus(c).expand(-1, 1).contiguous())
    return v - v.gather(1, noisy[:, None])


def ratio_divergence(log_model: torch.Tensor, log_true: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """scale * sum_y [r̂_y - r_y - r_y log(r̂_y / r_y)] (M,) from log r̂ and log r
    (M, N): the Bregman divergence both this ELBO and SEDD's score entropy are made of.
    Each bracket is r_y (e^d - 1 - d) with d = log(r̂_y / r_y), >= 0, with its own
    series near d = 0 so that nearly equal ratios do not cancel."""
    d = log_model - log_true
    excess = torch.where(d.abs() < 1e-3, d * d / 2 * (1 + d / 3), torch.expm1(d) - d)
    return scale.float() * (log_true.exp() * excess).sum(-1)


def uniform_terms(logits: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
                  alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The NELBO integrand at M positions (module docstring): logits (M, V) of x_theta,
    the noisy and clean tokens (M,), alpha_t and beta_t (M,). Returns (M,) nats.
    Computed in log-odds so that neither end of the schedule cancels."""
    N = logits.shape[1]
    c = odds_shift(alpha, N)
    u = F.softplus(c + logits.float().log_softmax(-1))  # (M, N): the model's, shifted
    log_model = u - u.gather(1, noisy[:, None])
    return ratio_divergence(log_model, true_log_ratios(clean, noisy, c, N), beta / N)


def uniform_loss(denoiser, ids: torch.Tensor, maskable: torch.Tensor,
                 key_padding: torch.Tensor | None, schedule: Schedule, vocab: int,
                 eps: float = 1e-3, antithetic: bool = True,
                 generator: torch.Generator | None = None, noise: Noise | None = None,
                 normalizer: float | None = None) -> LossOutput:
    """One Monte Carlo draw (one t per row) of the NELBO, in nats per maskable token."""
    if noise is None:
        noise = draw_noise(ids.shape[0], ids.shape[1], eps, antithetic, generator, ids.device)
    t = noise.times[:, 0].clamp(max=1.0 - eps)  # (B,)
    alpha, beta = rates(schedule, t)
    noisy = corrupt_uniform(ids, maskable, alpha, noise.mask_draw, vocab)
    logits = denoiser(noisy, key_padding, maskable)  # (M, V): every maskable position
    row = maskable.nonzero()[:, 0]
    terms = uniform_terms(logits, noisy[maskable], ids[maskable], alpha[row], beta[row])
    n_tokens = int(maskable.sum())
    changed = int((noisy != ids).sum())
    return LossOutput(terms.sum() / max(normalizer or n_tokens, 1), n_tokens, changed)


def reverse_probs(log_p: torch.Tensor, z: torch.Tensor, alpha_t: float, alpha_s: float,
                  ) -> torch.Tensor:
    """p(z_s | z_t) (..., N) from log x_theta (..., N) and z_t (...)."""
    N = log_p.shape[-1]
    a_ts = alpha_t / alpha_s
    keep = torch.full_like(log_p, (1.0 - a_ts) / N)
    keep.scatter_add_(-1, z[..., None], torch.full_like(log_p[..., :1], a_ts))
    probs = keep * (alpha_s * log_p.exp() + (1.0 - alpha_s) / N)
    return probs / probs.sum(-1, keepdim=True)


@torch.no_grad()
def uniform_decode(denoiser, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                   length: int, steps: int, schedule: Schedule, vocab: int,
                   banned: tuple[int, ...] = (), temperature: float = 0.0,
                   generator: torch.Generator | None = None) -> Iterator[Step]:
    """Yield the (B, length) reply after every ancestral step, from uniform noise."""
    B, P = prompt.shape
    device = prompt.device
    reply = torch.randint(vocab, (B, length), generator=generator, device=device)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones(B, length, dtype=torch.bool, device=device)], 1)
    nothing = torch.zeros(B, length, dtype=torch.bool, device=device)
    confidence = torch.zeros(B, length, dtype=torch.float64, device=device)
    yield Step(reply.clone(), nothing, confidence, 0, steps)
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    alphas = schedule.alpha(times).clamp(0.0, 1.0).tolist()
    for k in range(steps):
        logits = denoiser(torch.cat([prompt, reply], 1), padding)[:, P:].float()
        if banned:
            logits[..., list(banned)] = float("-inf")
        log_p = logits.log_softmax(-1)
        if k == steps - 1 and temperature == 0:
            new = log_p.argmax(-1)
            chosen = log_p.gather(-1, new[..., None])[..., 0].exp()
        else:
            probs = reverse_probs(log_p, reply, alphas[k], alphas[k + 1])
            if k == steps - 1 and banned:  # the reply itself holds no banned token
                probs[..., list(banned)] = 0.0
            new = torch.multinomial(probs.view(-1, vocab), 1, generator=generator
                                    ).view(B, length)
            chosen = probs.gather(-1, new[..., None])[..., 0]
        changed = new != reply
        reply = new
        confidence = chosen.double()
        yield Step(reply.clone(), changed, confidence, k + 1, steps, nfe=k + 1)


class UniformDiffusion(BoundObjective):
    name = "uniform"
    needs = Needs(causal=False)
    summary = "uniform-noise discrete diffusion in continuous time (UDLM / DUO)"
    refusal = ("this is a uniform-noise diffusion checkpoint: it has no mask to fill "
               "(infill, edit and forced words need masked diffusion)")

    def loss(self, ctx: Context, batch, noise, normalizer):
        d = ctx.diffusion
        return uniform_loss(ctx.engine, batch.ids, batch.maskable, batch.key_padding,
                            ctx.schedule, ctx.model.config.vocab_size, d.eps, d.antithetic,
                            noise=noise, normalizer=normalizer)

    def bound_loss(self, ctx: Context, batch, generator):
        return uniform_loss(ctx.model, batch.ids, batch.maskable, batch.key_padding,
                            ctx.schedule, ctx.model.config.vocab_size, ctx.diffusion.eps,
                            True, generator)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        banned = (*ctx.tokenizer.never_generated, ctx.tokenizer.mask_id)
        return uniform_decode(ctx.denoiser, prompt, key_padding, int(config.length),
                              config.steps, ctx.schedule, ctx.model.config.vocab_size, banned,
                              config.temperature, generator)
