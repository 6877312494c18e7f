"""Self-speculative decoding of a dual model (`--objective dual`): each forward verifies
the previous draft causally and drafts the next block by diffusion, over one KV cache.

One forward reads [pending, d_1..d_K, M_0..M_{B-1}]: the last written token and the K
drafts causally, as the AR half was trained (their outputs verify the drafts and give
the next token; their keys are AR keys, kept in the cache when accepted), and a block of
B = block_size masks that sees every clean token before it and itself, as the diffusion
half was trained. The first mask stands where the verifier's next token will go; the
other B - 1 are the next draft, used when every draft of this round was kept (they
assumed so). After a refusal the next forward drafts afresh while writing the
verifier's token, so every forward writes at least one token. The acceptance rule is
`dlm.sampling.speculative`'s: greedy replies are the model's own AR greedy replies;
sampled ones are distributed as its AR half's (drafts are drawn in one parallel step,
each independent given the prefix, so each has a known q).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlm.config import SampleConfig
from dlm.model import Transformer
from dlm.sampling.rules import token_distribution
from dlm.sampling.sampler import Step
from dlm.sampling.speculative import Reply, VerifierCache, verifier_logits, verify_round


@torch.no_grad()
def dual_decode(model: Transformer, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                config: SampleConfig, block_size: int, mask_id: int, eos_id: int,
                banned: tuple[int, ...] = (), generator: torch.Generator | None = None,
                ) -> Iterator[Step]:
    """Yield the reply (B, L) after each forward (drafts shown as drafted, the kept ones
    as accepted); stops when every row has written eos or `length` tokens."""
    from dlm.objectives.dual import CausalView

    B, P = prompt.shape
    L, device = int(config.length), prompt.device
    M = block_size
    reply = Reply(B, L, mask_id, eos_id, prompt.dtype, device)
    yield reply.step(0, 0, 0)
    cache = VerifierCache(CausalView(model), prompt, key_padding, P + L * (M + 1) + M)
    calls = cache.prefills
    pending = prompt[:, -1].clone()
    drafts = torch.zeros(B, 0, dtype=torch.int64, device=device)
    counts = torch.zeros(B, dtype=torch.int64, device=device)
    proposal: torch.Tensor | None = None
    masks = torch.full((B, M), mask_id, dtype=prompt.dtype, device=device)
    limit = model.config.max_seq_len - 1
    while not bool(reply.done.all()):
        K = drafts.shape[1]
        is_draft = torch.arange(K, device=device)[None, :] < counts[:, None]
        start, positions = cache.open_round(~reply.done, is_draft, reply.written, extra=M)
        # each row's block starts right after its own drafts
        block_at = (P + reply.written + counts)[:, None] + torch.arange(M, device=device)
        T = 1 + K + M
        S = start + T
        keys = torch.arange(S, device=device)
        queries = torch.arange(start, S, device=device)
        grid = keys[None, :] <= queries[:, None]  # the causal part: pending and drafts
        grid[1 + K :] = True  # the block sees every clean token and itself
        logits = model(torch.cat([pending[:, None], drafts.to(prompt.dtype), masks], 1),
                       cache.keys(S), cache=cache.cache, start=start,
                       positions=torch.cat([positions, block_at], 1).clamp(max=limit),
                       attn_mask=grid).float()
        calls += 1
        ruled = verifier_logits(logits[:, : 1 + K], reply.tokens, reply.written, drafts, config,
                                mask_id, eos_id)
        verdict, sequence, confidence = verify_round(ruled, drafts, counts, config, proposal,
                                                     generator)
        all_kept = verdict.accepted >= counts
        committed, rejected = reply.commit(sequence, confidence, counts, verdict)
        cache.rollback(start, verdict.accepted, K)  # the block's noisy keys go too
        pending = verdict.next_tokens.to(prompt.dtype)
        yield reply.step(calls, calls, calls, committed=committed, rejected=rejected)
        # the next draft: the block after the verifier's token, where this round's guess held
        block = logits[:, 1 + K + 1 :]  # (B, M - 1, V)
        block[..., mask_id] = float("-inf")
        if banned:
            block[..., list(banned)] = float("-inf")
        q = token_distribution(block, config.temperature, config.top_k, config.top_p)
        if config.temperature == 0:
            drafts = q.argmax(-1)
        else:
            drafts = torch.multinomial(q.reshape(-1, q.shape[-1]), 1,
                                       generator=generator).view(B, M - 1)
        proposal = None if config.temperature == 0 else q
        counts = torch.where(all_kept & ~reply.done, reply.draft_counts(M - 1), 0)
        if not bool(counts.any()):  # no row drafts: no draft slots next forward
            drafts = drafts[:, :0]
        if bool(counts.any()):
            yield reply.drafted_step(drafts, counts, calls, calls, calls)
