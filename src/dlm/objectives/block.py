"""Block diffusion, BD3-LM (Arriola et al. 2025): blocks of `block_size` tokens written left
to right, each denoised by masked diffusion given the clean blocks before it; its NELBO
is a sum of per-block bounds, and its sampler keeps an exact KV cache of finished blocks.

The math lives in `dlm.diffusion.block` and `dlm.sampling.block`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlm.diffusion import block_diffusion_loss
from dlm.diffusion.block import align_to_blocks, check_block_size
from dlm.diffusion.corruption import draw_noise
from dlm.objectives.base import BoundObjective, Needs
from dlm.objectives.context import Context
from dlm.sampling.block import block_decode


@dataclass(frozen=True)
class BlockDiffusion(BoundObjective):
    name = "block"
    needs = Needs(causal=False)  # block-causal masks are built per call, not by the model
    summary = "block diffusion, BD3-LM (blocks left to right, diffusion within each)"
    refusal = ("this is a block diffusion checkpoint: it writes block by block and cannot "
               "fill masks anywhere or take forced words; use a full-attention diffusion "
               "checkpoint")

    block_size: int = 0
    """Tokens per block, bound from the run's config (`TrainConfig.block_size`)."""

    def can_start_from(self, causal: bool) -> bool:
        # an AR checkpoint's weights are a start (SDAR, Fast-dLLM v2 and TiDAR adapt AR
        # models to blocks): the block-causal masks are built per call, and each x_t
        # position learns to predict its own token rather than the next
        return True

    def model_changes(self, causal: bool) -> dict:
        return {"causal": False} if causal else {}

    def check(self, cfg, data_kind: str) -> None:
        super().check(cfg, data_kind)
        # which lengths the blocks must tile depends on the data
        check_block_size(cfg.block_size, (
            {"prompt_len": cfg.prompt_len, "response_len": cfg.response_len}
            if data_kind == "chat" else
            {"seq_len" if cfg.seq_len else "prompt_len + response_len": cfg.packed_len}))

    def noise(self, ctx: Context, batch):
        d, size = ctx.diffusion, self.block_size
        width = align_to_blocks(batch.ids, batch.maskable, batch.key_padding, size)[0].shape[1]
        return draw_noise(batch.ids.shape[0], width, d.eps, d.antithetic, ctx.noise,
                          ctx.device, width // size)

    def loss(self, ctx: Context, batch, noise, normalizer):
        d = ctx.diffusion
        return block_diffusion_loss(ctx.engine, batch.ids, batch.maskable, batch.key_padding,
                                    ctx.schedule, ctx.tokenizer.mask_id, self.block_size,
                                    d.eps, d.antithetic, noise=noise, normalizer=normalizer)

    def bound_loss(self, ctx: Context, batch, generator):
        return block_diffusion_loss(ctx.model, batch.ids, batch.maskable, batch.key_padding,
                                    ctx.schedule, ctx.tokenizer.mask_id, self.block_size,
                                    ctx.diffusion.eps, True, generator)

    def drafter(self, ctx: Context, prompt_len: int):
        from dlm.sampling.block import BlockDrafter

        return BlockDrafter(ctx.model, self.block_size, prompt_len, ctx.tokenizer.pad_id)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = ctx.tokenizer
        return block_decode(ctx.model, prompt, key_padding, config, self.block_size, tok.mask_id,
                            tok.eos_id, tok.pad_id, tok.never_generated, generator)
