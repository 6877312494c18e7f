"""Block diffusion, BD3-LM (Arriola et al. 2025): blocks of `block_size` tokens written left
to right, each denoised by masked diffusion given the clean blocks before it; its NELBO
is a sum of per-block bounds, and its sampler keeps an exact KV cache of finished blocks.

The math lives in `dlm.diffusion.block` and `dlm.sampling.block`.
"""

from __future__ import annotations

from dlm.diffusion import block_diffusion_loss
from dlm.diffusion.block import align_to_blocks, check_block_size
from dlm.diffusion.corruption import draw_noise
from dlm.objectives.base import BoundObjective, Needs, TrainingRun
from dlm.sampling.block import block_decode


class BlockDiffusion(BoundObjective):
    name = "block"
    needs = Needs(causal=False)  # block-causal masks are built per call, not by the model
    summary = "block diffusion, BD3-LM (blocks left to right, diffusion within each)"
    refusal = ("this is a block diffusion checkpoint: it writes block by block and cannot "
               "fill masks anywhere or take forced words; use a full-attention diffusion "
               "checkpoint")

    def block_size(self, train: dict) -> int:
        return int(train.get("block_size", 4))

    def check(self, cfg, data_kind: str) -> None:
        super().check(cfg, data_kind)
        # which lengths the blocks must tile depends on the data
        check_block_size(cfg.block_size, (
            {"prompt_len": cfg.prompt_len, "response_len": cfg.response_len}
            if data_kind == "chat" else
            {"seq_len" if cfg.seq_len else "prompt_len + response_len": cfg.packed_len}))

    def noise(self, run: TrainingRun, batch):
        d, size = run.cfg.diffusion, run.cfg.block_size
        width = align_to_blocks(batch.ids, batch.maskable, batch.key_padding, size)[0].shape[1]
        return draw_noise(batch.ids.shape[0], width, d.eps, d.antithetic, run.noise,
                          run.device, width // size)

    def loss(self, run: TrainingRun, batch, noise, normalizer):
        d = run.cfg.diffusion
        return block_diffusion_loss(run.engine, batch.ids, batch.maskable, batch.key_padding,
                                    run.schedule, run.tokenizer.mask_id, run.cfg.block_size,
                                    d.eps, d.antithetic, noise=noise, normalizer=normalizer)

    def bound_loss(self, model, batch, tok, schedule, eps, generator, block_size):
        return block_diffusion_loss(model, batch.ids, batch.maskable, batch.key_padding,
                                    schedule, tok.mask_id, block_size, eps, True, generator)

    def drafter(self, lm, prompt_len: int):
        from dlm.sampling.block import BlockDrafter

        return BlockDrafter(lm.model, lm.block_size, prompt_len, lm.tokenizer.pad_id)

    def reply_steps(self, lm, prompt, key_padding, config, generator, constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = lm.tokenizer
        return block_decode(lm.model, prompt, key_padding, config, lm.block_size, tok.mask_id,
                            tok.eos_id, tok.pad_id, tok.never_generated, generator)
