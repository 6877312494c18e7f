"""The autoregressive baseline: the same Transformer with causal attention, next-token
cross-entropy on exactly the tokens the diffusion loss covers (so the per-token figures
compare: AR's exact, diffusion's a bound), decoded left to right with a KV cache.

The math lives in `dlm.objectives.next_token` and `dlm.sampling.ar`.
"""

from __future__ import annotations

import math

import torch

from dlm.objectives.base import HeldOut, Needs, Objective
from dlm.objectives.context import Context
from dlm.objectives.next_token import ar_loss, evaluate_ar_nll
from dlm.sampling.ar import ar_decode


class Autoregressive(Objective):
    name = "ar"
    needs = Needs(causal=True)
    summary = "the autoregressive baseline (next-token cross-entropy, causal attention)"
    one_call_per_token = True
    exact_likelihood = True
    export_layout = "causal"
    refusal = ("this is an autoregressive checkpoint: it writes strictly left to right and "
               "cannot fill masks anywhere or take forced words; use a full-attention "
               "diffusion checkpoint")

    def loss(self, ctx: Context, batch, noise, normalizer):
        return ar_loss(ctx.engine, batch.ids, batch.maskable, batch.key_padding, normalizer)

    def validation(self, ctx: Context, val) -> dict[str, float]:
        """The exact NLL and perplexity, under the same keys' meaning (`val_nll`,
        `val_ppl`), and for chat per reply token (what compares with diffusion's)."""
        with ctx.autocast():
            nll = evaluate_ar_nll(ctx.model, val, ctx.tokenizer.pad_id, ctx.batch_size,
                                  ctx.device)
        out = {"val_nll": nll, "val_ppl": math.exp(min(nll, 50))}
        if ctx.data_kind == "chat":
            out["val_nll_reply"] = self.per_reply_token(nll, val, ctx.tokenizer)
        return out

    def held_out(self, ctx: Context, data, draws: int) -> HeldOut:
        return HeldOut(evaluate_ar_nll(ctx.model, data, ctx.tokenizer.pad_id, ctx.batch_size,
                                       ctx.device), 0.0, 1, exact=True)

    @torch.no_grad()
    def sequence_nll(self, ctx: Context, ids, scored, key_padding, draws, generator):
        # exact: the chain rule, one pass (right padding never reaches a real position);
        # the last token is only ever a target, so a row may be one longer than the model
        logits = ctx.model(ids[:, :-1]).float()  # position i predicts token i + 1
        logp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return -(logp * scored[:, 1:]).sum(1, keepdim=True)

    @torch.no_grad()
    def greedy_reproduces(self, ctx: Context, ids, scored, key_padding):
        hit = ctx.model(ids[:, :-1]).argmax(-1) == ids[:, 1:]
        return (hit | ~scored[:, 1:]).all(1)

    def scored_tokens(self, data) -> int:
        # every response token is predicted, the first from the prompt; text rows have none
        n, r = data.responses.shape
        return n * r if data.prompts.shape[1] else n * (r - 1)

    def reply_steps(self, ctx: Context, prompt, key_padding, config, generator,
                    constraints=None):
        if constraints:
            self.refuse_constraints()
        tok = ctx.tokenizer
        return ar_decode(ctx.model, prompt, key_padding, config, tok.mask_id, tok.eos_id,
                         generator)
