"""Score entropy discrete diffusion, SEDD (Lou, Meng & Ermon 2024), on the absorbing and
on the uniform graph.

The model estimates, at each position holding z, the concrete score
s_y = p_t(the sequence with this position set to y) / p_t(the sequence) for every y:
free, unnormalised ratios, not a distribution over x0 (that is what separates it from
MDLM and UDLM). It is trained with the diffusion-weighted denoising score entropy,
which integrated over t bounds -log p(x0) (DWDSE; the prior term vanishes, alpha_1 = 0):

    L = ∫ sum_i sum_{y != z_i} Q_t(y -> z_i) [s_y - r_y log s_y + r_y (log r_y - 1)] dt,
    r_y = q_t(y | x0) / q_t(z | x0).

Noise: sigma(t) = -alpha'(t) / alpha(t) of dlm's schedule (alpha = 1 - t is SEDD's
log-linear sigma-bar). Graphs:
- absorbing: y -> [MASK] at rate sigma. Only masked positions have terms, r = alpha /
  (1 - alpha) at y = x0 and 0 elsewhere. With SEDD's scaling, log s = l +
  log(alpha / (1 - alpha)) with l = logits - log(N - 1) (so a fresh model's scores
  already sum to about the true total), the integrand is w(t) (sum_y e^l_y - l_x0 - 1),
  w = -alpha' / (1 - alpha): at least MDLM's w * cross-entropy, equal once the scores
  are normalised.
- uniform: y -> z at rate sigma / N. Every position has terms; log s_y = l_y - l_z.

The model is time-conditioned (adaLN, `ModelConfig.time_conditioning`): a free score must
know the noise level, which uniform noise does not show.

Samplers (`SampleConfig.predictor`), from t = 1 (all masks, or uniform noise) in `steps`
equal steps of t; a step t -> s with a = alpha_t / alpha_s:
- tweedie (tau-leaping with the Tweedie denoiser): p(x_s = y | x_t = z) proportional to
  [P_{t|s}^{-1} s]_y * P_{t|s}(y -> z), P the forward kernel over the step;
- euler: p(y) = (sigma-bar_t - sigma-bar_s) Q(y -> z) s_y for y != z, the rest stays.
Negative entries are cut to 0; probabilities are float64. The last step goes to t = 0 and
leaves no mask; at temperature 0 it takes the most likely token.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.diffusion import LossOutput, Schedule
from dlm.diffusion.corruption import Noise, draw_noise
from dlm.objectives.base import BoundObjective, Needs
from dlm.objectives.context import Context
from dlm.objectives.uniform import (
    corrupt_uniform,
    odds_shift,
    rates,
    ratio_divergence,
    true_log_ratios,
)
from dlm.sampling import Step


class Absorbing:
    """Tokens jump to [MASK] and stay there."""

    name = "absorbing"

    def __init__(self, mask_id: int):
        self.mask_id = mask_id

    def start(self, shape, vocab, generator, device) -> torch.Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def corrupt(self, ids, maskable, alpha, draw, vocab) -> torch.Tensor:
        hit = (draw < (1.0 - alpha)[:, None]) & maskable
        return torch.where(hit, torch.full_like(ids, self.mask_id), ids)

    def scored(self, noisy, maskable) -> torch.Tensor:
        return maskable & (noisy == self.mask_id)

    def scaled(self, logits: torch.Tensor) -> torch.Tensor:
        """l = logits - log(N - 1), [MASK] excluded (no token becomes a mask in reverse)."""
        out = logits.float() - math.log(logits.shape[-1] - 1)
        out[..., self.mask_id] = float("-inf")
        return out

    def terms(self, logits, noisy, clean, alpha, schedule, t) -> torch.Tensor:
        l = self.scaled(logits)  # noqa: E741
        total = torch.logsumexp(l, -1).exp()
        return schedule.weight(t).float() * (total - l.gather(1, clean[:, None])[:, 0] - 1)

    def reverse(self, logits, z, alpha_t, alpha_s, predictor) -> torch.Tensor:
        """(B, L, N) float64 probabilities of the next state."""
        l = self.scaled(logits).double()  # noqa: E741
        if predictor == "tweedie":  # s_y (1 - a) / a, with s = e^l alpha_t / (1 - alpha_t)
            move = l.exp() * ((alpha_s - alpha_t) / (1.0 - alpha_t))
        else:  # d sigma-bar * s_y
            move = l.exp() * (math.log(alpha_s / alpha_t) * alpha_t / (1.0 - alpha_t))
        stay = (1.0 - move.sum(-1)).clamp(min=0.0) if alpha_s < 1.0 else 0.0 * move[..., 0]
        probs = move.clone()
        probs[..., self.mask_id] = stay
        masked = z == self.mask_id
        return torch.where(masked[..., None], probs, F.one_hot(z, l.shape[-1]).double())


class Uniform:
    """Any token jumps to any other at the same rate."""

    name = "uniform"

    def start(self, shape, vocab, generator, device) -> torch.Tensor:
        return torch.randint(vocab, shape, generator=generator, device=device)

    def corrupt(self, ids, maskable, alpha, draw, vocab) -> torch.Tensor:
        return corrupt_uniform(ids, maskable, alpha, draw, vocab)

    def scored(self, noisy, maskable) -> torch.Tensor:
        return maskable

    def terms(self, logits, noisy, clean, alpha, schedule, t) -> torch.Tensor:
        N = logits.shape[1]
        l = logits.float()  # noqa: E741
        log_score = l - l.gather(1, noisy[:, None])
        beta = rates(schedule, t)[1]
        c = odds_shift(alpha, N)
        return ratio_divergence(log_score, true_log_ratios(clean, noisy, c, N), beta / N)

    def reverse(self, logits, z, alpha_t, alpha_s, predictor) -> torch.Tensor:
        N = logits.shape[-1]
        l = logits.double()  # noqa: E741
        score = (l - l.gather(-1, z[..., None])).exp()  # s_z = 1
        here = F.one_hot(z, N).double()
        a = alpha_t / alpha_s
        if predictor == "tweedie":
            staggered = score / a + (1.0 - 1.0 / a) * score.mean(-1, keepdim=True)
            probs = staggered * (a * here + (1.0 - a) / N)
        else:
            move = score * (math.log(1.0 / a) / N) * (1.0 - here)
            probs = move + here * (1.0 - move.sum(-1, keepdim=True))
        return probs.clamp(min=0.0)


def sedd_loss(model, graph, vocab: int, ids: torch.Tensor, maskable: torch.Tensor,
              key_padding: torch.Tensor | None, schedule: Schedule, eps: float = 1e-3,
              antithetic: bool = True, generator: torch.Generator | None = None,
              noise: Noise | None = None, normalizer: float | None = None) -> LossOutput:
    """One Monte Carlo draw (one t per row) of the DWDSE, in nats per maskable token."""
    if noise is None:
        noise = draw_noise(ids.shape[0], ids.shape[1], eps, antithetic, generator, ids.device)
    t = noise.times[:, 0].clamp(max=1.0 - eps)  # (B,): beta is infinite at alpha = 0
    alpha = schedule.alpha(t)
    noisy = graph.corrupt(ids, maskable, alpha, noise.mask_draw, vocab)
    scored = graph.scored(noisy, maskable)
    logits = model(noisy, key_padding, scored, time=t)  # (M, V)
    row = scored.nonzero()[:, 0]
    terms = graph.terms(logits, noisy[scored], ids[scored], alpha[row], schedule, t[row])
    n_tokens = int(maskable.sum())
    changed = int((noisy != ids).sum())
    return LossOutput(terms.sum() / max(normalizer or n_tokens, 1), n_tokens, changed)


@torch.no_grad()
def sedd_decode(model, graph, vocab: int, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                length: int, steps: int, schedule: Schedule, predictor: str = "tweedie",
                banned: tuple[int, ...] = (), temperature: float = 0.0,
                generator: torch.Generator | None = None, eps: float = 1e-3,
                ) -> Iterator[Step]:
    """Yield the (B, length) reply after every reverse step (module docstring)."""
    B, P = prompt.shape
    device = prompt.device
    reply = graph.start((B, length), vocab, generator, device)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones(B, length, dtype=torch.bool, device=device)], 1)
    nothing = torch.zeros(B, length, dtype=torch.bool, device=device)
    confidence = torch.zeros(B, length, dtype=torch.float64, device=device)
    yield Step(reply.clone(), nothing, confidence, 0, steps)
    # alpha_1 = 0 would make the first ratio infinite: start a hair inside, where
    # training's times stop (1 - eps)
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).clamp(max=1.0 - eps)
    alphas = schedule.alpha(times).clamp(0.0, 1.0).tolist()
    for k in range(steps):
        t = torch.full((B,), float(times[k]), device=device)
        logits = model(torch.cat([prompt, reply], 1), padding, time=t)[:, P:].float()
        probs = graph.reverse(logits, reply, alphas[k], alphas[k + 1], predictor)
        last = k == steps - 1
        if banned:  # never written; a banned token already there may stay until the end
            keep = probs.gather(-1, reply[..., None]) if not last else None
            probs[..., list(banned)] = 0.0
            if keep is not None:
                probs.scatter_(-1, reply[..., None], keep)
        probs = probs / probs.sum(-1, keepdim=True).clamp(min=1e-300)
        if last and temperature == 0:
            new = probs.argmax(-1)
        else:
            new = torch.multinomial(probs.view(-1, vocab), 1, generator=generator
                                    ).view(B, length)
        chosen = probs.gather(-1, new[..., None])[..., 0]
        changed = new != reply
        reply = new
        confidence = torch.where(changed, chosen, confidence)
        yield Step(reply.clone(), changed, confidence, k + 1, steps, nfe=k + 1)


@dataclass(frozen=True)
class ScoreEntropy(BoundObjective):
    """SEDD on one graph; registered once per graph."""

    needs = Needs(causal=False, time=True)
    refusal = ("this is a score-entropy (SEDD) checkpoint: dlm fills masks and takes "
               "forced words with masked diffusion only")
    graph_name: str = "absorbing"
    """absorbing (a mask state) or uniform (any token to any token)."""
    predictor: str = "tweedie"
    """Its sampler's step when a request names none (`SampleConfig.predictor`): tweedie
    (the analytic step, SEDD's best) or euler."""

    @property
    def name(self) -> str:
        return f"sedd-{self.graph_name}"

    @property
    def summary(self) -> str:
        return f"score entropy discrete diffusion (SEDD), {self.graph_name} graph"

    def graph(self, tok):
        return Absorbing(tok.mask_id) if self.graph_name == "absorbing" else Uniform()

    def loss(self, ctx: Context, batch, noise, normalizer):
        d = ctx.diffusion
        return sedd_loss(ctx.engine, self.graph(ctx.tokenizer), ctx.model.config.vocab_size,
                         batch.ids, batch.maskable, batch.key_padding, ctx.schedule, d.eps,
                         d.antithetic, noise=noise, normalizer=normalizer)

    def bound_loss(self, ctx: Context, batch, generator):
        return sedd_loss(ctx.model, self.graph(ctx.tokenizer), ctx.model.config.vocab_size,
                         batch.ids, batch.maskable, batch.key_padding, ctx.schedule,
                         ctx.diffusion.eps, True, generator)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = ctx.tokenizer
        graph = self.graph(tok)
        # the absorbing graph's mask is where a token stays: only the uniform graph bans it
        banned = (*tok.never_generated, *((tok.mask_id,) if graph.name == "uniform" else ()))
        return sedd_decode(ctx.model, graph, ctx.model.config.vocab_size, prompt, key_padding,
                           int(config.length), config.steps, ctx.schedule,
                           config.predictor or self.predictor, banned,
                           config.temperature, generator)
