"""One backbone, two losses (TiDAR-style, Liu et al. 2025): the AR next-token loss and the
masked-diffusion loss on the same batch, in one forward, each with the attention it needs.

The input is x_t ⊕ x_0 as in BD3-LM, but x_0 is read causally (token by token), so its
outputs are an AR model's next-token predictions and its keys are an AR model's keys;
each block of x_t (masked at a rate drawn per block) sees the clean tokens before its
block and its own block in full, and predicts its masks. At sampling one forward verifies
the previous draft causally and drafts the next block by diffusion over the same cache
(`dlm.sampling.dual`), so the reply is the model's own AR reply (greedy: identical) in
fewer forwards. Its held-out figure is the AR likelihood (exact); the diffusion bound
is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.diffusion import LossOutput
from dlm.diffusion.block import align_to_blocks, block_ids
from dlm.diffusion.corruption import draw_noise
from dlm.diffusion.loss import subs_log_probs
from dlm.errors import ConfigError
from dlm.objectives.ar import Autoregressive
from dlm.objectives.base import HeldOut, Needs
from dlm.objectives.block import BlockDiffusion
from dlm.objectives.context import Context
from dlm.objectives.next_token import evaluate_ar_nll, predicted_positions
from dlm.sampling.dual import CausalView, dual_decode


def dual_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """(2L, 2L) bool over x_t ⊕ x_0, True where a query may see a key: x_0 causal; a block
    of x_t its own block and the clean tokens before the block."""
    idx = torch.arange(2 * length, device=device)
    clean = idx >= length
    pos = idx % length
    blk = block_ids(length, block_size, device).repeat(2)
    q_clean, k_clean = clean[:, None], clean[None, :]
    causal = q_clean & k_clean & (pos[None, :] <= pos[:, None])
    own_block = ~q_clean & ~k_clean & (blk[:, None] == blk[None, :])
    earlier_clean = ~q_clean & k_clean & (blk[None, :] < blk[:, None])
    return causal | own_block | earlier_clean


def dual_losses(model, ids: torch.Tensor, maskable: torch.Tensor,
                key_padding: torch.Tensor | None, schedule, mask_id: int, block_size: int,
                eps: float, antithetic: bool, generator: torch.Generator | None = None,
                noise=None) -> tuple[torch.Tensor, int, torch.Tensor, int, int]:
    """Summed AR NLL and its count, summed weighted diffusion NLL, maskable tokens and
    masked tokens, from one forward over x_t ⊕ x_0."""
    ids, maskable, key_padding = align_to_blocks(ids, maskable, key_padding, block_size)
    B, L = ids.shape
    if noise is None:
        noise = draw_noise(B, L, eps, antithetic, generator, ids.device, L // block_size)
    t_token = noise.times.repeat_interleave(block_size, dim=1)  # (B, L)
    masked = (noise.mask_draw < schedule.mask_rate(t_token)) & maskable
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    predicted = predicted_positions(maskable)  # x_0 position i predicts token i + 1
    select = torch.cat([masked, predicted], 1)
    padding = None if key_padding is None else torch.cat([key_padding, key_padding], 1)
    logits = model(torch.cat([noisy, ids], 1), padding, select,
                   positions=torch.arange(L, device=ids.device).repeat(2),
                   attn_mask=dual_mask(L, block_size, ids.device))  # (M, V), row-major
    half = torch.arange(2 * L, device=ids.device).expand(B, -1)[select] >= L
    diffusion, ar = logits[~half], logits[half]
    nll = -subs_log_probs(diffusion, mask_id).gather(-1, ids[masked][:, None])[:, 0]
    ar_targets = ids[:, 1:][maskable[:, 1:]]
    ar_sum = F.cross_entropy(ar.float(), ar_targets, reduction="sum")
    return (ar_sum, int(ar_targets.numel()), (nll * schedule.weight(t_token[masked])).sum(),
            int(maskable.sum()), int(masked.sum()))


@dataclass(frozen=True)
class Dual(BlockDiffusion):
    """Block-wise as BD3-LM (its block size, checks and per-block noise draws), with the
    AR half beside the diffusion half."""

    name = "dual"
    needs = Needs(causal=False)  # both masks are built per call
    drafts_itself = True
    summary = ("one model, two losses (TiDAR-style: AR next-token + block masked diffusion "
               "in one forward; decodes by drafting and verifying itself)")
    refusal = ("this is a dual (AR + diffusion) checkpoint: it writes left to right and "
               "cannot fill masks anywhere or take forced words; use a full-attention "
               "diffusion checkpoint")
    scored_tokens = Autoregressive.scored_tokens  # its held-out figure is the AR NLL's

    def check(self, cfg, data_kind: str) -> None:
        super().check(cfg, data_kind)
        if cfg.block_size < 2:
            raise ConfigError("objective dual drafts block_size - 1 tokens per forward: "
                              "block_size must be at least 2")

    def scores_first_token(self, model) -> bool:
        return False  # the AR half predicts token i + 1 from position i

    def drafter(self, ctx: Context, prompt_len: int):
        return None  # it drafts for itself (`reply_steps`), not for another verifier

    def loss(self, ctx: Context, batch, noise, normalizer):
        d = ctx.diffusion
        ar_sum, ar_n, diff_sum, n, masked = dual_losses(
            ctx.engine, batch.ids, batch.maskable, batch.key_padding, ctx.schedule,
            ctx.tokenizer.mask_id, self.block_size, d.eps, d.antithetic, noise=noise)
        # both are per token of the batch: the AR mean and the diffusion NELBO, summed
        return LossOutput((ar_sum + diff_sum) / max(normalizer or n, 1), n, masked)

    def bound_loss(self, ctx: Context, batch, generator):
        """The diffusion half's NELBO draw (the bound reported beside the exact AR NLL)."""
        _, _, diff_sum, n, masked = dual_losses(ctx.model, batch.ids, batch.maskable,
                                                batch.key_padding, ctx.schedule,
                                                ctx.tokenizer.mask_id, self.block_size,
                                                ctx.diffusion.eps, True, generator)
        return LossOutput(diff_sum / max(n, 1), n, masked)

    def validation(self, ctx: Context, val) -> dict[str, float]:
        """The exact AR NLL (`val_nll`, `val_ppl`: what its replies are drawn from, and what
        picks the best checkpoint) and the diffusion half's bound (`val_nelbo`, 4 draws);
        for chat both per reply token too."""
        with ctx.autocast():
            nll = evaluate_ar_nll(CausalView(ctx.model), val, ctx.tokenizer.pad_id,
                                  ctx.batch_size, ctx.device)
            bound = self.diffusion_bound(ctx, val, 4)
        out = {"val_nll": nll, "val_ppl": math.exp(min(nll, 50)),
               "val_nelbo": bound.nats_per_token,
               "val_ppl_bound": math.exp(min(bound.nats_per_token, 50))}
        if ctx.data_kind == "chat":
            out["val_nll_reply"] = self.per_reply_token(nll, val, ctx.tokenizer)
            out["val_nelbo_reply"] = self.per_reply_token(bound.nats_per_token, val,
                                                          ctx.tokenizer)
        return out

    def held_out(self, ctx: Context, data, draws: int) -> HeldOut:
        return HeldOut(evaluate_ar_nll(CausalView(ctx.model), data, ctx.tokenizer.pad_id,
                                       ctx.batch_size, ctx.device), 0.0, 1, exact=True)

    def diffusion_bound(self, ctx: Context, data, draws: int) -> HeldOut:
        """The diffusion half's held-out bound (K draws, standard error)."""
        return super().held_out(ctx, data, draws)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = ctx.tokenizer
        return dual_decode(ctx.model, prompt, key_padding, config, self.block_size, tok.mask_id,
                           tok.eos_id, tok.never_generated, generator)
