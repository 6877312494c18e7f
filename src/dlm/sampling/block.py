"""Block diffusion sampling (BD3-LM): blocks left to right, each denoised by the usual
sampler, with an exact key/value cache of the finished blocks.

The prompt is read once, clean and block-causal (as training's x_0 half sees it). Each
block then starts as L' masks; every step is one forward of just those L' positions,
attending the cached clean prefix and the block itself, exactly as training's x_t
block does. A finished block is run once more, clean, to write its exact keys. The
reply stops at eos: when every row has one, no further block is made (variable
length, unlike the full-canvas sampler).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlm.config import SampleConfig
from dlm.diffusion.block import block_causal_mask, training_mask
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.sampler import Canvas, Step, denoise


def aligned_prompt(prompt: torch.Tensor, key_padding: torch.Tensor | None, block_size: int,
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad the prompt to a whole number of blocks, so the reply starts on a block
    boundary as it does in training (rotary attention sees only relative positions)."""
    B, P = prompt.shape
    extra = -P % block_size
    real = (key_padding if key_padding is not None
            else torch.ones(B, P, dtype=torch.bool, device=prompt.device))
    pad = torch.full((B, extra), pad_id, dtype=prompt.dtype, device=prompt.device)
    hidden = torch.zeros(B, extra, dtype=torch.bool, device=prompt.device)
    return torch.cat([pad, prompt], 1), torch.cat([hidden, real], 1)


@torch.no_grad()
def block_decode(model: Transformer, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                 config: SampleConfig, block_size: int, mask_id: int, eos_id: int,
                 pad_id: int = 0, banned: tuple[int, ...] = (),
                 generator: torch.Generator | None = None) -> Iterator[Step]:
    """Yield the reply (B, length) after every step; `config.length` is the most tokens,
    `config.steps` the step budget shared evenly over the blocks."""
    if config.cfg_scale:
        raise ConfigError("classifier-free guidance is not available for block diffusion")
    ids, real = aligned_prompt(prompt, key_padding, block_size, pad_id)
    B, P = ids.shape
    n_blocks = -(-config.length // block_size)
    length = n_blocks * block_size
    per_block = max(1, config.steps // n_blocks)
    block_config = SampleConfig(**{**vars(config), "length": block_size, "steps": per_block,
                                   "block_length": 0, "cache": "none"})
    reply = torch.full((B, length), mask_id, dtype=ids.dtype, device=ids.device)
    confidences = torch.zeros(B, length, dtype=torch.float64, device=ids.device)
    nothing = torch.zeros_like(reply, dtype=torch.bool)
    real = torch.cat([real, torch.ones_like(reply, dtype=torch.bool)], 1)  # (B, P + length)
    yield Step(reply[:, : config.length].clone(), nothing[:, : config.length],
               confidences[:, : config.length].clone(), 0, per_block * n_blocks, nothing, 0)
    cache = model.new_cache(B, P + length)
    model(ids, real[:, :P], cache=cache, start=0, attn_mask=block_causal_mask(P, block_size,
                                                                            ids.device))
    nfe, index, finished = 1, 0, torch.zeros(B, dtype=torch.bool, device=ids.device)
    for k in range(n_blocks):
        a = P + k * block_size

        def denoiser(block, _padding, a=a):
            return model(block, real[:, : a + block_size], cache=cache, start=a)

        canvas = Canvas(torch.full((B, block_size), mask_id, dtype=ids.dtype,
                                   device=ids.device), mask_id, eos_id, banned=banned)
        lo = k * block_size
        block_nfe = 0
        for step in denoise(denoiser, canvas, block_config, generator):
            if step.step_index == 0:
                continue
            block_nfe = step.nfe
            reply[:, lo : lo + block_size] = step.tokens
            confidences[:, lo : lo + block_size] = step.confidences
            committed = nothing.clone()
            committed[:, lo : lo + block_size] = step.newly_committed
            index += 1
            yield Step(reply[:, : config.length].clone(), committed[:, : config.length],
                       confidences[:, : config.length].clone(), index, per_block * n_blocks,
                       None, nfe + block_nfe)
        nfe += block_nfe
        finished |= (reply[:, lo : lo + block_size] == eos_id).any(1)
        if k == n_blocks - 1:
            break
        if bool(finished.all()):  # every row has ended: the rest of the canvas is eos
            reply[:, lo + block_size :] = eos_id
            yield Step(reply[:, : config.length].clone(), nothing[:, : config.length],
                       confidences[:, : config.length].clone(), index, index, None, nfe)
            break
        model(reply[:, lo : lo + block_size], real[:, : a + block_size], cache=cache,
              start=a)  # the finished block's clean keys, exact
        nfe += 1


class BlockDrafter:
    """A BD3-LM model as a speculative drafter: (canvas, key padding) -> logits over the
    canvas of a prompt of `prompt_len` and the reply, each row drafting in the block its
    written reply ends in. One forward reads x_t ⊕ x_0 under the training mask, so every
    row's block sees its own clean earlier blocks, whatever block each row is in (no
    cache: rows of a batch are in different blocks). `limit` keeps a draft in its block:
    the next block needs this one's clean keys, which only verification gives."""

    def __init__(self, model: Transformer, block_size: int, prompt_len: int, pad_id: int):
        self.model, self.size, self.pad_id = model, block_size, pad_id
        self.left = -prompt_len % block_size  # the reply starts on a block boundary

    def canvas_end(self, hi: int) -> int:
        """The reply positions a draft ending before `hi` needs: up to its block's end
        (a noisy block sees only earlier clean blocks and itself, so the cut is exact)."""
        return -(-hi // self.size) * self.size

    def limit(self, written: torch.Tensor) -> torch.Tensor:
        """(B,) the most tokens each row may draft: to the end of its current block."""
        return self.size - written % self.size

    def __call__(self, canvas: torch.Tensor, key_padding: torch.Tensor | None,
                 select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) of the canvas, or (M, V) of the `select`ed (B, T) positions."""
        B, T = canvas.shape
        right = -(T + self.left) % self.size
        real = (key_padding if key_padding is not None
                else torch.ones(B, T, dtype=torch.bool, device=canvas.device))
        ids = torch.nn.functional.pad(canvas, (self.left, right), value=self.pad_id)
        real = torch.nn.functional.pad(real, (self.left, 0), value=False)
        real = torch.nn.functional.pad(real, (0, right), value=True)
        width = ids.shape[1]
        chosen = None
        if select is not None:  # x_t's positions only
            chosen = torch.nn.functional.pad(select, (self.left, right + width), value=False)
        logits = self.model(torch.cat([ids, ids], 1), torch.cat([real, real], 1), chosen,
                            positions=torch.arange(width, device=ids.device).repeat(2),
                            attn_mask=training_mask(width, self.size, ids.device))
        return logits if select is not None else logits[:, self.left : self.left + T]
