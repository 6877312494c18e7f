"""Masked (absorbing-state) diffusion, MDLM (Sahoo et al. 2024) with LLaDA's chat recipe:
a bidirectional denoiser, the SUBS loss weighted by the schedule (a Monte Carlo draw of
the NELBO), and the sampler of `dlm.sampling` (commit rules, remasking, guidance, caches).

The math lives in `dlm.diffusion` (corruption, loss, padding, shift) and `dlm.sampling`;
this file is what the rest of dlm asks of it. Extras it alone has: a length head, prompt
dropout for guidance, an AR start (shifted logits, attention annealed from causal), and
filling masks anywhere (infill, edit, constraints).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.diffusion import diffusion_loss
from dlm.diffusion.corruption import draw_noise, drop_prompts
from dlm.diffusion.padding import padding_weights, reply_lengths
from dlm.diffusion.shift import Shifted, annealed_mask
from dlm.objectives.base import BoundObjective, Needs
from dlm.objectives.context import Context
from dlm.sampling import Canvas, denoise, reply_canvas


def sized_canvas(canvas: Canvas, lengths: torch.Tensor, tok) -> Canvas:
    """A reply canvas cut per row to its predicted length: the positions past a row's
    length are given (eos, then the rainbow pads where the model has them, as in
    training) and eos may not be sampled before them, so each reply has its length."""
    tokens = canvas.tokens.clone()
    B, T = tokens.shape
    offset = torch.arange(T - canvas.start, device=tokens.device)[None, :] - lengths[:, None]
    reply = tokens[:, canvas.start:]
    reply[offset == 0] = tok.eos_id
    if tok.pad_cycle:
        cycle = torch.tensor(tok.pad_cycle, device=tokens.device)
        pads = cycle[(offset - 1).clamp(min=0) % len(cycle)]
        reply[offset > 0] = pads[offset > 0]
    else:
        reply[offset > 0] = tok.eos_id
    no_eos = tokens == canvas.mask_id
    return dataclasses.replace(canvas, tokens=tokens, no_eos=no_eos)


@dataclass(frozen=True)
class MaskedDiffusion(BoundObjective):
    name = "diffusion"
    needs = Needs(causal=False)
    summary = "masked (absorbing-state) diffusion, MDLM / LLaDA"
    can_fill = can_constrain = length_head = True
    export_layout = "masked"
    # Its own settings, bound from the run's config (`TrainConfig` documents each; these
    # defaults are a loaded model's, which samples and is not trained).
    cfg_dropout: float = 0.0
    anneal_steps: int = 0
    length_weight: float = 0.0

    @torch.no_grad()
    def sequence_nll(self, ctx: Context, ids, scored, key_padding, draws, generator):
        """`draws` draws of the NELBO of the scored tokens (mask each with the schedule's
        rate at t, weight the masked ones' cross-entropy by w(t)), t stratified per row:
        draw k takes t in ((k + u) / draws), one uniform u per row, as the antithetic
        times of training do across a batch."""
        from dlm.diffusion.corruption import corrupt
        from dlm.diffusion.loss import nelbo_terms

        mask_id = ctx.tokenizer.mask_id
        u = torch.rand(ids.shape[0], generator=generator, device=ids.device)
        out = []
        for k in range(draws):
            t = ((k + u) / draws).clamp(min=ctx.diffusion.eps)
            noisy, masked = corrupt(ids, scored, t, ctx.schedule, mask_id, generator=generator)
            if not masked.any():
                out.append(torch.zeros(ids.shape[0], device=ids.device))
                continue
            logits = ctx.denoiser(noisy, key_padding, masked).float()
            out.append(nelbo_terms(logits, ids, masked, ctx.schedule.weight(t), mask_id))
        return torch.stack(out, 1)

    @torch.no_grad()
    def greedy_reproduces(self, ctx: Context, ids, scored, key_padding):
        """Greedy unmasking, one token per call: every scored position masked, then the
        surest one committed to its argmax, until none is left; True for a row if every
        committed token is the one given (a reply the sampler would write greedily)."""
        from dlm.diffusion.loss import subs_log_probs

        mask_id = ctx.tokenizer.mask_id
        current = torch.where(scored, torch.full_like(ids, mask_id), ids)
        left, ok = scored.clone(), torch.ones(ids.shape[0], dtype=torch.bool,
                                              device=ids.device)
        while left.any():
            logp = subs_log_probs(ctx.denoiser(current, key_padding, left).float(), mask_id)
            conf, guess = logp.max(-1)  # (M,) each
            sure = torch.full(ids.shape, -torch.inf, device=ids.device)
            sure[left] = conf
            written = torch.zeros_like(ids)
            written[left] = guess
            rows = left.any(1).nonzero().squeeze(1)
            at = sure[rows].argmax(1)
            chosen = written[rows, at]
            ok[rows] &= chosen == ids[rows, at]
            current[rows, at] = chosen
            left[rows, at] = False
        return ok

    def padding(self, cfg) -> str:
        return cfg.diffusion.padding

    def can_start_from(self, causal: bool) -> bool:
        return True  # an AR checkpoint becomes a shifted diffusion model

    def drafter(self, ctx: Context, prompt_len: int):
        return ctx.denoiser  # the whole canvas at once (shifted logits aligned)

    def model_changes(self, causal: bool) -> dict:
        return {"causal": False, "shift": True} if causal else {}

    # ---- training
    def noise(self, ctx: Context, batch):
        d = ctx.diffusion
        return draw_noise(batch.ids.shape[0], batch.ids.shape[1], d.eps, d.antithetic,
                          ctx.noise, ctx.device, 1, drop=self.cfg_dropout > 0)

    def loss_weights(self, ctx: Context, batch) -> torch.Tensor | None:
        """eos_weight padding: the per-position loss weights (None in other modes)."""
        if ctx.diffusion.padding != "eos_weight" or ctx.data_kind != "chat":
            return None
        return padding_weights(batch.ids, batch.maskable, ctx.tokenizer.eos_id)

    def loss(self, ctx: Context, batch, noise, normalizer):
        d, tok = ctx.diffusion, ctx.tokenizer
        ids = drop_prompts(batch.ids, batch.maskable, batch.key_padding, self.cfg_dropout,
                           tok.mask_id, draw=noise.drop_draw)
        maskable = batch.maskable
        if ctx.model.config.shift:  # nothing precedes position 0 to predict it
            maskable = maskable.clone()
            maskable[:, 0] = False
        out = diffusion_loss(self.denoiser(ctx, ids.shape[1]), ids, maskable,
                             batch.key_padding, ctx.schedule, tok.mask_id, d.eps, d.antithetic,
                             noise=noise, normalizer=normalizer,
                             token_weight=self.loss_weights(ctx, batch))
        if ctx.model.length_head is not None:
            out.loss = out.loss + self.length_weight * length_loss(ctx, batch)
        return out

    # ---- evaluation
    def bound_loss(self, ctx: Context, batch, generator):
        maskable = batch.maskable
        if getattr(ctx.model.config, "shift", False):  # nothing precedes position 0
            maskable = maskable.clone()
            maskable[:, 0] = False
        return diffusion_loss(ctx.denoiser, batch.ids, maskable, batch.key_padding,
                              ctx.schedule, ctx.tokenizer.mask_id, ctx.diffusion.eps, True,
                              generator)

    # ---- sampling
    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None) -> Iterator:
        from dlm.control import apply_constraints

        tok = ctx.tokenizer
        lengths = None
        if config.length == "auto":
            lengths = ctx.predict_lengths(prompt, key_padding, config, generator)  # (B,)
            config = dataclasses.replace(config, length=int(lengths.max()))
        canvas = reply_canvas(prompt, key_padding, config.length, tok.mask_id, tok.eos_id,
                              tok.never_generated, tuple(tok.pad_cycle))
        if lengths is not None:
            canvas = sized_canvas(canvas, lengths, tok)
        if constraints:
            canvas = apply_constraints(ctx.denoiser, canvas, constraints, tok, ctx.lowercase)
        start = canvas.start
        return (step.crop(start) for step in denoise(ctx.denoiser, canvas, config, generator))

    def denoiser(self, ctx: Context, width: int):
        """What the loss calls: the engine, its logits aligned when the model is shifted,
        and while annealing from AR the causal-OR-random attention mask."""
        if not ctx.model.config.shift:
            return ctx.engine
        shifted = Shifted(ctx.engine)
        if ctx.step >= self.anneal_steps:
            return shifted
        mask = annealed_mask(width, ctx.step / self.anneal_steps, ctx.noise, ctx.device)
        return lambda ids, key_padding, select: shifted(ids, key_padding, select,
                                                        attn_mask=mask)


def length_loss(ctx: Context, batch) -> torch.Tensor:
    """Cross-entropy of the length head on the prompt alone (the response is not shown,
    as at sampling), summed over these rows and divided by the global batch's rows."""
    P = int((~batch.maskable[0]).sum())  # prompt columns come first
    prompt = batch.ids[:, :P]
    padding = None if batch.key_padding is None else batch.key_padding[:, :P]
    lengths = reply_lengths(batch.ids[:, P:], ctx.tokenizer.end_ids)
    target = (lengths.clamp(1, ctx.model.config.length_classes) - 1)  # (B,)
    logits = ctx.engine(prompt, padding, head="length").float()  # (B, classes)
    return F.cross_entropy(logits, target, reduction="sum") / ctx.batch_size

