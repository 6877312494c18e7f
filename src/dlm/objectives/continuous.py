"""Gaussian diffusion over token embeddings: Diffusion-LM (Li et al. 2022), with
DiffuSeq's partial noising for prompt -> reply (Gong et al. 2022).

Embeddings: the model's own (tied) embedding table, learned jointly, each row scaled to
norm sqrt(d_model) (x0 = Ê[w]) so that the data has the noise's scale whatever the
table's. Forward: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) e at reply positions; the
prompt's embeddings stay clean (partial noising), so the model reads them as context.
Diffusion-LM's sqrt schedule ab(t) = 1 - sqrt(s + (1 - 2s) t), s = 1e-4.

The model (time-conditioned, embeddings in) predicts a distribution over the vocabulary
at each noisy position; x0's prediction is its expected embedding, x̂0 = softmax(logits) Ê.
Training loss (Diffusion-LM's L_simple, in nats-like units per reply token): the x0
prediction's squared error per dimension, ||x̂0 - x0||^2 / d, plus the rounding loss,
the cross-entropy of the predicted distribution against the token: the rounding term
keeps the learned embeddings apart, which the squared error alone would collapse.

Likelihood (stated as what it is: an upper bound on -log p(reply), nats per token, the
continuous-time variational bound of VDM, Kingma et al. 2021):
    E_t [ -SNR'(t) / 2 * ||x0 - x̂0||^2 ] + KL(q(x_1 | x0) || N(0, I)) + E[-log p(w | x_0)]
with SNR = ab / (1 - ab), t ~ U(0, 1), and the decoder p(w | x_0) the posterior of the
token given x_0 under q (a softmax over the vocabulary of the Gaussian log-density).
Training optimises L_simple, not this bound, so the bound is loose; it is reported
because it is the only figure comparable with the other objectives' likelihoods.

Sampling: DDIM (eta = 0) in `steps` steps from Gaussian noise, with Diffusion-LM's
clamping trick: each step's x̂0 is replaced by the embedding of its most likely token
(sampled at temperature > 0) before stepping, and the last step's tokens are the reply.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from dlm.diffusion import LossOutput
from dlm.diffusion.corruption import Noise, draw_noise
from dlm.objectives.base import BoundObjective, Needs
from dlm.objectives.context import Context
from dlm.sampling import Step

S = 1e-4


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """Diffusion-LM's sqrt schedule, kept inside (0, 1) at both ends."""
    return 1.0 - torch.sqrt(S + (1.0 - 2 * S) * t)


def snr_slope(t: torch.Tensor) -> torch.Tensor:
    """-d SNR / dt (> 0), SNR = ab / (1 - ab)."""
    root = torch.sqrt(S + (1.0 - 2 * S) * t)
    d_ab = -(1.0 - 2 * S) / (2 * root)
    return -d_ab / (1.0 - alpha_bar(t)) ** 2


def unit_embeddings(model) -> torch.Tensor:
    """Ê (V, C): the embedding table's rows scaled to norm sqrt(C)."""
    table = model.embed.weight
    return F.normalize(table.float(), dim=-1) * math.sqrt(table.shape[1])


def noised_inputs(table: torch.Tensor, ids: torch.Tensor, maskable: torch.Tensor,
                  ab: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, x_t) (B, T, C): every position's embedding, and the reply's noised."""
    x0 = table[ids]
    a = ab[:, None, None]
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return x0, torch.where(maskable[..., None], noisy, x0)


def model_of(engine):
    """The Transformer behind an engine (DDP, FSDP and compiled wrappers hold it)."""
    inner = engine
    while not hasattr(inner, "embed"):
        inner = getattr(inner, "module", None) or inner._orig_mod
    return inner


def gaussian_noise(rows: int, length: int, width: int, eps: float, antithetic: bool,
                   generator: torch.Generator | None, device) -> Noise:
    """One time per row (stratified as the discrete objectives') and the Gaussian draws."""
    noise = draw_noise(rows, length, eps, antithetic, generator, device)
    noise.gauss = torch.randn(rows, length, width, generator=generator, device=device)
    return noise


def continuous_loss(engine, ids: torch.Tensor, maskable: torch.Tensor,
                    key_padding: torch.Tensor | None, eps: float = 1e-3,
                    antithetic: bool = True, generator: torch.Generator | None = None,
                    noise: Noise | None = None, normalizer: float | None = None,
                    bound: bool = False) -> LossOutput:
    """One draw (one t per row) of L_simple, or with `bound` of the variational bound
    (module docstring), in nats per reply token."""
    B, T = ids.shape
    model = model_of(engine)
    if noise is None:  # the bound integrates over the whole (0, 1]: no cut-off end
        noise = gaussian_noise(B, T, model.config.d_model, 0.0 if bound else eps,
                               antithetic, generator, ids.device)
    t = noise.times[:, 0]
    table = unit_embeddings(model)
    ab = alpha_bar(t)
    x0, xt = noised_inputs(table, ids, maskable, ab, noise.gauss)
    logits = engine(None, key_padding, maskable, time=t, embeds=xt).float()  # (M, V)
    target = x0[maskable]  # (M, C)
    x0_hat = logits.softmax(-1) @ table
    error = (x0_hat - target).pow(2).sum(-1)  # (M,)
    n_tokens = int(maskable.sum())
    if bound:
        row = maskable.nonzero()[:, 0]
        terms = bound_terms(error, t[row], target, table, ids[maskable], generator)
    else:
        terms = error / table.shape[1] + F.cross_entropy(logits, ids[maskable],
                                                         reduction="none")
    return LossOutput(terms.sum() / max(normalizer or n_tokens, 1), n_tokens, n_tokens)


def bound_terms(error: torch.Tensor, t: torch.Tensor, x0: torch.Tensor,
                table: torch.Tensor, tokens: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
    """One draw of the variational bound at M positions (M,): the diffusion term from
    the x0 prediction's squared error at times t, the prior and the reconstruction."""
    return 0.5 * snr_slope(t) * error + prior_kl(x0) + reconstruction(table, tokens,
                                                                       generator)


def prior_kl(x0: torch.Tensor) -> torch.Tensor:
    """KL(N(sqrt(ab_1) x0, (1 - ab_1) I) || N(0, I)) per position (M,)."""
    ab = float(alpha_bar(torch.tensor(1.0, dtype=torch.float64)))
    C = x0.shape[-1]
    return 0.5 * (ab * x0.pow(2).sum(-1) + C * (1 - ab) - C - C * math.log(1 - ab))


def reconstruction(table: torch.Tensor, tokens: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """-log p(w | x_0) (M,), x_0 drawn from q(x_0 | Ê[w]); the decoder is the exact
    posterior of the token under q, a softmax of the Gaussian log-densities."""
    ab = float(alpha_bar(torch.tensor(0.0, dtype=torch.float64)))
    mean = math.sqrt(ab) * table  # (V, C)
    z = mean[tokens] + math.sqrt(1 - ab) * torch.randn(
        len(tokens), table.shape[1], generator=generator, device=tokens.device)
    log_density = -torch.cdist(z, mean).pow(2) / (2 * (1 - ab))  # (M, V)
    return -log_density.log_softmax(-1).gather(1, tokens[:, None])[:, 0]


@torch.no_grad()
def ddim_decode(model, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                length: int, steps: int, banned: tuple[int, ...] = (),
                temperature: float = 0.0, generator: torch.Generator | None = None,
                ) -> Iterator[Step]:
    """Yield the reply's rounding (B, length) after every DDIM step (module docstring)."""
    B, P = prompt.shape
    device = prompt.device
    table = unit_embeddings(model)
    C = table.shape[1]
    x = torch.randn(B, length, C, generator=generator, device=device)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones(B, length, dtype=torch.bool, device=device)], 1)
    context = table[prompt]
    tokens = torch.full((B, length), -1, dtype=torch.long, device=device)
    confidence = torch.zeros(B, length, dtype=torch.float64, device=device)
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    for k in range(steps):
        t = torch.full((B,), float(times[k]), device=device)
        logits = model(None, padding, time=t,
                       embeds=torch.cat([context, x], 1))[:, P:].double()
        if banned:
            logits[..., list(banned)] = float("-inf")
        probs = logits.softmax(-1)
        if temperature > 0:
            scaled = (logits / temperature).softmax(-1)
            new = torch.multinomial(scaled.view(-1, scaled.shape[-1]), 1,
                                    generator=generator).view(B, length)
        else:
            new = probs.argmax(-1)
        x0 = table[new]  # the clamping trick: x̂0 snapped to a token's embedding
        ab_t, ab_s = (float(alpha_bar(times[i])) for i in (k, k + 1))
        e_hat = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * e_hat
        changed = new != tokens
        tokens = new
        confidence = probs.gather(-1, new[..., None])[..., 0]
        yield Step(tokens.clone(), changed, confidence, k + 1, steps, nfe=k + 1)


class ContinuousDiffusion(BoundObjective):
    name = "continuous"
    needs = Needs(causal=False, time=True, inputs="embeddings")
    summary = "Gaussian diffusion over learned token embeddings (Diffusion-LM / DiffuSeq)"
    refusal = ("this is a continuous (embedding) diffusion checkpoint: dlm fills masks "
               "and takes forced words with masked diffusion only")

    def noise(self, ctx: Context, batch):
        d = ctx.diffusion
        return gaussian_noise(batch.ids.shape[0], batch.ids.shape[1],
                              ctx.model.config.d_model, d.eps, d.antithetic, ctx.noise,
                              ctx.device)

    def loss(self, ctx: Context, batch, noise, normalizer):
        d = ctx.diffusion
        return continuous_loss(ctx.engine, batch.ids, batch.maskable, batch.key_padding,
                               d.eps, d.antithetic, noise=noise, normalizer=normalizer)

    def bound_loss(self, ctx: Context, batch, generator):
        return continuous_loss(ctx.model, batch.ids, batch.maskable, batch.key_padding,
                               ctx.diffusion.eps, True, generator, bound=True)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = ctx.tokenizer
        return ddim_decode(ctx.model, prompt, key_padding, int(config.length), config.steps,
                           (*tok.never_generated, tok.mask_id), config.temperature,
                           generator)
