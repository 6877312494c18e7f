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

import torch
import torch.nn.functional as F

from dlm.diffusion import diffusion_loss
from dlm.diffusion.corruption import draw_noise, drop_prompts
from dlm.diffusion.padding import padding_weights, reply_lengths
from dlm.diffusion.shift import Shifted, annealed_mask, as_denoiser
from dlm.objectives.base import BoundObjective, Needs, TrainingRun
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


class MaskedDiffusion(BoundObjective):
    name = "diffusion"
    needs = Needs(causal=False)
    summary = "masked (absorbing-state) diffusion, MDLM / LLaDA"
    can_fill = can_constrain = length_head = True

    def padding(self, cfg) -> str:
        return cfg.diffusion.padding

    def can_start_from(self, causal: bool) -> bool:
        return True  # an AR checkpoint becomes a shifted diffusion model

    def drafter(self, lm, prompt_len: int):
        return lm.denoiser  # the whole canvas at once (shifted logits aligned)

    def model_changes(self, causal: bool) -> dict:
        return {"causal": False, "shift": True} if causal else {}

    # ---- training
    def noise(self, run: TrainingRun, batch):
        cfg, d = run.cfg, run.cfg.diffusion
        return draw_noise(batch.ids.shape[0], batch.ids.shape[1], d.eps, d.antithetic,
                          run.noise, run.device, 1, drop=cfg.cfg_dropout > 0)

    def loss_weights(self, run: TrainingRun, batch) -> torch.Tensor | None:
        """eos_weight padding: the per-position loss weights (None in other modes)."""
        if self.padding(run.cfg) != "eos_weight" or run.data_kind != "chat":
            return None
        return padding_weights(batch.ids, batch.maskable, run.tokenizer.eos_id)

    def loss(self, run: TrainingRun, batch, noise, normalizer):
        d, tok = run.cfg.diffusion, run.tokenizer
        ids = drop_prompts(batch.ids, batch.maskable, batch.key_padding, run.cfg.cfg_dropout,
                           tok.mask_id, draw=noise.drop_draw)
        maskable = batch.maskable
        if run.model.config.shift:  # nothing precedes position 0 to predict it
            maskable = maskable.clone()
            maskable[:, 0] = False
        out = diffusion_loss(denoiser(run, ids.shape[1]), ids, maskable, batch.key_padding,
                             run.schedule, tok.mask_id, d.eps, d.antithetic, noise=noise,
                             normalizer=normalizer, token_weight=self.loss_weights(run, batch))
        if run.model.length_head is not None:
            out.loss = out.loss + run.cfg.length_weight * length_loss(run, batch)
        return out

    # ---- evaluation
    def bound_loss(self, model, batch, tok, schedule, eps, generator, block_size):
        maskable = batch.maskable
        if getattr(model.config, "shift", False):  # nothing precedes position 0
            maskable = maskable.clone()
            maskable[:, 0] = False
        return diffusion_loss(as_denoiser(model), batch.ids, maskable, batch.key_padding,
                              schedule, tok.mask_id, eps, True, generator)

    # ---- sampling
    def reply_steps(self, lm, prompt, key_padding, config, generator,
                    constraints=None) -> Iterator:
        from dlm.control import apply_constraints

        tok = lm.tokenizer
        lengths = None
        if config.length == "auto":
            lengths = lm.predict_lengths(prompt, key_padding, config, generator)  # (B,)
            config = dataclasses.replace(config, length=int(lengths.max()))
        canvas = reply_canvas(prompt, key_padding, config.length, tok.mask_id, tok.eos_id,
                              tok.never_generated, tuple(tok.pad_cycle))
        if lengths is not None:
            canvas = sized_canvas(canvas, lengths, tok)
        if constraints:
            canvas = apply_constraints(lm.denoiser, canvas, constraints, tok, lm.lowercase)
        start = canvas.start
        return (step.crop(start) for step in denoise(lm.denoiser, canvas, config, generator))


def denoiser(run: TrainingRun, width: int):
    """What the loss calls: the engine, its logits aligned when the model is shifted, and
    while annealing from AR the causal-OR-random attention mask."""
    if not run.model.config.shift:
        return run.engine
    shifted = Shifted(run.engine)
    if run.step >= run.cfg.anneal_steps:
        return shifted
    mask = annealed_mask(width, run.step / run.cfg.anneal_steps, run.noise, run.device)
    return lambda ids, key_padding, select: shifted(ids, key_padding, select, attn_mask=mask)


def length_loss(run: TrainingRun, batch) -> torch.Tensor:
    """Cross-entropy of the length head on the prompt alone (the response is not shown,
    as at sampling), summed over these rows and divided by the global batch's rows."""
    P = int((~batch.maskable[0]).sum())  # prompt columns come first
    prompt = batch.ids[:, :P]
    padding = None if batch.key_padding is None else batch.key_padding[:, :P]
    lengths = reply_lengths(batch.ids[:, P:], run.tokenizer.end_ids)
    target = (lengths.clamp(1, run.model.config.length_classes) - 1)  # (B,)
    logits = run.engine(prompt, padding, head="length").float()  # (B, classes)
    return F.cross_entropy(logits, target, reduction="sum") / run.cfg.batch_size

