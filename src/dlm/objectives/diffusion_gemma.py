"""DiffusionGemma's block diffusion (google/diffusiongemma), driven by dlm: canvases of the
model's `canvas_length` tokens, one after another, each denoised by the entropy-bounded
sampler of DiffusionGemma's own generation (`transformers`'
`generation_diffusion_gemma.py`), with dlm's steps, traces, server and evaluation.

Its noise is uniform, not a mask: a canvas starts as random tokens; at each step the
positions whose entropies sum (less the largest) within the bound are accepted from the
model's draw, every other position gets a fresh random token, and the step's logits are
fed back as self-conditioning; a canvas ends when its argmax has been stable for the
stability window and its mean entropy is below the confidence threshold, or after
`steps`; its tokens are then the argmax of the last step. A reply ends after the canvas
that holds an eos. The random draws come from the request's generator in the order the
reference makes them, so a seed gives the reply `transformers` gives with that seed.

dlm's settings map as: `length` (rounded up to whole canvases), `steps` (the most steps
per canvas), `temperature` T (a schedule from T at the first step down to T / 2 at the
last, as the reference's 0.8 -> 0.4; 0 is greedy: the argmax instead of a draw), `seed`.
The rest have no counterpart and are refused one by one (`UNSUPPORTED`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.objectives.base import HeldOut, Needs, Objective
from dlm.objectives.context import Context
from dlm.sampling import Step

DEFAULTS = SampleConfig()
UNSUPPORTED = {
    "rule": "its acceptance rule is the entropy bound",
    "remask": "an accepted token is renoised only by its own rule",
    "cfg_scale": "it has no classifier-free guidance",
    "top_k": "its draws are not truncated",
    "top_p": "its draws are not truncated",
    "repetition_penalty": "its draws take no repetition penalty",
    "no_repeat_ngram": "its draws take no n-gram ban",
    "predictor": "it has no predictor-corrector",
    "threshold": "its acceptance is the entropy bound, not a confidence threshold",
    "block_length": "its block is the model's canvas_length",
    "length_sample": "it has no length head",
    "length_margin": "it has no length head",
}
"""SampleConfig fields with no counterpart in DiffusionGemma's decoding, and why."""


@dataclass(frozen=True)
class DiffusionGemmaBlocks(Objective):
    name = "diffusion-gemma"
    needs = Needs(causal=False)
    summary = ("DiffusionGemma's block diffusion (transformers' class: causal prompt encoder, "
               "canvases denoised with self-conditioning); loaded, not trained by dlm")
    refusal = ("a DiffusionGemma checkpoint cannot fill masks anywhere or take forced words: "
               "its canvases are whole blocks after the prompt")
    decoding_defaults = {"repetition_penalty": 1.0, "temperature": 0.8, "eos": "allow"}
    """The reference's own decoding (temperature 0.8 -> 0.4), not dlm's measured one."""

    def check(self, cfg, data_kind: str) -> None:
        raise ConfigError("a DiffusionGemma checkpoint is loaded (--ckpt), not trained by dlm",
                          "objective")

    def held_out(self, ctx: Context, data, draws: int) -> HeldOut:
        raise ConfigError("dlm gives no likelihood for a DiffusionGemma checkpoint (its "
                          "noise and self-conditioning have no bound here)", "objective")

    def refuse_settings(self, ctx: Context, config: SampleConfig) -> None:
        for field, why in UNSUPPORTED.items():
            value = getattr(config, field)
            if field == "block_length" and value in (0, ctx.model.config.canvas_length):
                continue
            if value != getattr(DEFAULTS, field):
                raise ConfigError(f"{field}={value!r}: DiffusionGemma takes none ({why})",
                                  field)
        if config.decode != "diffusion" or config.cache == "dual" or config.length == "auto":
            raise ConfigError("DiffusionGemma decodes by its own canvases: no speculative "
                              "decoding, dual cache or auto length (its prompt cache is "
                              "always on)", "decode")
        if config.eos != "allow":
            raise ConfigError(f"eos={config.eos!r}: DiffusionGemma ends a reply after the "
                              "canvas holding its eos (eos allow only)", "eos")

    @torch.no_grad()
    def reply_steps(self, ctx: Context, prompt, key_padding, config: SampleConfig,
                    generator, constraints=None) -> Iterator[Step]:
        if constraints:
            self.refuse_constraints()
        self.refuse_settings(ctx, config)
        model, tok = ctx.model, ctx.tokenizer
        L = model.config.canvas_length
        canvases = max(1, math.ceil(int(config.length) / L))
        B, device = prompt.shape[0], prompt.device
        shown = torch.full((B, canvases * L), tok.mask_id, device=device)
        nfe, index = 0, 0
        yield Step(shown.clone(), torch.zeros_like(shown, dtype=torch.bool),
                   torch.zeros(shown.shape, device=device), 0, canvases * config.steps)
        for b in range(B):  # a row at a time: each has its own cache and stops on its own
            ids = prompt[b:b + 1] if key_padding is None else prompt[b:b + 1, key_padding[b]]
            cache, start, new = model.new_cache(), 0, ids
            for c in range(canvases):
                model.encode(new, cache, start)
                start += new.shape[1]
                for state in self.canvas(ctx, cache, start, config, generator):
                    nfe += 1
                    index += 1
                    accepted, tokens, final = state
                    before = shown[b, c * L:(c + 1) * L].clone()
                    shown[b, c * L:(c + 1) * L] = (tokens if final else torch.where(
                        accepted, tokens, torch.full_like(tokens, tok.mask_id)))
                    yield Step(shown.clone(), self.changed(shown, b, c, L, before),
                               torch.zeros(shown.shape, device=device), index,
                               canvases * config.steps, nfe=nfe)
                new = shown[b:b + 1, c * L:(c + 1) * L]  # encoded where it stood, next
                if bool(torch.isin(new, torch.tensor(tok.end_ids, device=device)).any()):
                    break
            # positions after the reply's last canvas stay masks: decoding cuts at eos

    @staticmethod
    def changed(shown, b, c, L, before) -> torch.Tensor:
        out = torch.zeros_like(shown, dtype=torch.bool)
        out[b, c * L:(c + 1) * L] = shown[b, c * L:(c + 1) * L] != before
        return out

    def canvas(self, ctx: Context, cache, start: int, config: SampleConfig, generator):
        """One canvas's steps: yields (accepted (L,), tokens (L,), final) per model call."""
        model = ctx.model
        L, V = model.config.canvas_length, model.config.vocab_size
        settings = model.sampler_settings()
        device = next(model.parameters()).device
        canvas = torch.randint(0, V, (1, L), generator=generator, device=device)
        history = torch.full((settings["stability_threshold"], 1, L), -1, device=device)
        conditioning = None
        steps = max(1, int(config.steps))
        for step in range(steps, 0, -1):  # counts down, as the reference's schedule does
            raw = model.canvas_logits(canvas, cache, conditioning, start)
            t = config.temperature
            logits = raw / (t / 2 + (t - t / 2) * step / steps) if t > 0 else raw
            argmax = logits.argmax(-1)
            if t > 0:
                probs = torch.softmax(logits, -1).view(-1, V)
                drawn = torch.multinomial(probs, 1, generator=generator).view(1, L)
            else:
                drawn = argmax
            entropy = torch.distributions.Categorical(logits=logits).entropy()
            ordered, order = torch.sort(entropy, -1)
            within = (ordered.cumsum(-1) - ordered) <= settings["entropy_bound"]
            accepted = torch.zeros_like(within).scatter(-1, order, within)
            canvas = torch.where(accepted, drawn, canvas)
            noise = torch.randint(0, V, (1, L), generator=generator, device=device)
            canvas = torch.where(accepted, canvas, noise)
            stable = (history == argmax[None]).all(-1).all(0)
            history = torch.roll(history, -1, 0)
            history[-1] = argmax
            conditioning = logits
            finished = bool((stable & (entropy.mean(-1) < settings["confidence_threshold"]))
                            .all()) or step == 1
            yield accepted[0], (argmax[0] if finished else canvas[0]), finished
            if finished:
                return
