"""Self-speculative decoding of a dual model (`--objective dual`): each forward verifies
the previous draft causally and drafts the next block by diffusion, over one KV cache.

One forward reads [pending, d_1..d_K, then K + 1 blocks of B = block_size masks]: the
last written token and the K drafts causally, as the AR half was trained (their outputs
verify the drafts and give the next token; their keys are AR keys, kept in the cache
when accepted), and, for each number a of drafts the verifier may keep, a block that
sees every clean token before it, pending and d_1..d_a, and itself, as the diffusion
half was trained (TiDAR's drafting for every outcome). The first mask of block a stands
where the verifier's token goes when it keeps a drafts; its other B - 1 masks are the
next draft, read from the block of the outcome that happened. So every forward after
the first both verifies and drafts, even after a refusal. The acceptance rule is
`dlm.sampling.verify`'s: greedy replies are the model's own AR greedy replies;
sampled ones are distributed as its AR half's (drafts are drawn in one parallel step,
each independent given the prefix, so each has a known q).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from dlm.config import SampleConfig
from dlm.model import Transformer
from dlm.sampling.rules import token_distribution
from dlm.sampling.sampler import Step
from dlm.sampling.speculative import Reply
from dlm.sampling.verifier_cache import VerifierCache
from dlm.sampling.verify import verifier_logits, verify_round


class CausalView(nn.Module):
    """The dual model read as an AR model: every call with the causal mask (over its cache
    when given), so AR decoding, the AR likelihood and a verifier can use it as is."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def new_cache(self, batch: int, max_len: int):
        return self.model.new_cache(batch, max_len)

    def forward(self, ids, key_padding=None, select=None, cache=None, start=None,
                positions=None):
        T = ids.shape[1]
        begin = 0 if cache is None else (cache.length if start is None else start)
        S = T if cache is None else max(cache.length, begin + T)
        keys = torch.arange(S, device=ids.device)
        grid = keys[None, :] <= torch.arange(begin, begin + T, device=ids.device)[:, None]
        return self.model(ids, key_padding, select, cache=cache, start=start,
                          positions=positions, attn_mask=grid)


@torch.no_grad()
def dual_decode(model: Transformer, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                config: SampleConfig, block_size: int, mask_id: int, eos_id: int,
                banned: tuple[int, ...] = (), generator: torch.Generator | None = None,
                ) -> Iterator[Step]:
    """Yield the reply (B, L) after each forward (drafts shown as drafted, the kept ones
    as accepted); stops when every row has written eos or `length` tokens."""
    B, P = prompt.shape
    L, device = int(config.length), prompt.device
    M = block_size
    reply = Reply(B, L, mask_id, eos_id, prompt.dtype, device)
    yield reply.step(0, 0, 0)
    # room for the reply, as many gaps again and one forward's blocks; it grows on demand
    cache = VerifierCache(CausalView(model), prompt, key_padding, P + 2 * L + M * (M + 1))
    calls = cache.prefills
    pending = prompt[:, -1].clone()
    drafts = torch.zeros(B, 0, dtype=torch.int64, device=device)
    counts = torch.zeros(B, dtype=torch.int64, device=device)
    proposal: torch.Tensor | None = None
    masks = torch.full((B, M), mask_id, dtype=prompt.dtype, device=device)
    limit = model.config.max_seq_len - 1
    rows = torch.arange(B, device=device)
    while not bool(reply.done.all()):
        K = drafts.shape[1]
        blocks = K + 1  # one per number of drafts the verifier may keep
        is_draft = torch.arange(K, device=device)[None, :] < counts[:, None]
        start, positions = cache.open_round(~reply.done, is_draft, reply.written,
                                            extra=blocks * M)
        # block a starts right after the pending token and the first a drafts
        block_at = ((P + reply.written)[:, None, None]
                    + torch.arange(blocks, device=device)[None, :, None]
                    + torch.arange(M, device=device)[None, None, :]).view(B, blocks * M)
        T = 1 + K + blocks * M
        S = start + T
        grid = block_attention(start, K, blocks, M, device)
        logits = model(torch.cat([pending[:, None], drafts.to(prompt.dtype),
                                  masks.repeat(1, blocks)], 1),
                       cache.keys(S), cache=cache.cache, start=start,
                       positions=torch.cat([positions, block_at], 1).clamp(max=limit),
                       attn_mask=grid).float()
        calls += 1
        ruled = verifier_logits(logits[:, : 1 + K], reply.tokens, reply.written, drafts, config,
                                mask_id, eos_id)
        verdict, sequence, confidence = verify_round(ruled, drafts, counts, config, proposal,
                                                     generator)
        committed, rejected = reply.commit(sequence, confidence, counts, verdict)
        cache.rollback(start, verdict.accepted, K)  # the blocks' noisy keys go too
        pending = verdict.next_tokens.to(prompt.dtype)
        yield reply.step(calls, calls, calls, committed=committed, rejected=rejected)
        # the next draft: the block of the outcome that happened, after the verifier's token
        block = logits[:, 1 + K :].view(B, blocks, M, -1)[rows, verdict.accepted, 1:]
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
        counts = reply.draft_counts(M - 1)
        if not bool(counts.any()):  # no row drafts: no draft slots next forward
            drafts = drafts[:, :0]
        if bool(counts.any()):
            yield reply.drafted_step(drafts, counts, calls, calls, calls)


def block_attention(start: int, K: int, blocks: int, M: int, device) -> torch.Tensor:
    """(T, start + T) bool, True where a query may see a key, for one forward over
    [pending, K drafts, `blocks` blocks of M masks] after `start` cached slots: pending
    and the drafts causally; block a every cached slot, pending, the first a drafts and
    its own M masks (never another block's)."""
    T = 1 + K + blocks * M
    keys = torch.arange(start + T, device=device)
    grid = keys[None, :] <= torch.arange(start, start + T, device=device)[:, None]
    which = torch.arange(blocks, device=device).repeat_interleave(M)  # each mask's block
    first = start + 1 + K + which * M  # where its block's slots begin
    clean = keys[None, :] < (start + 1 + which)[:, None]
    own = (keys[None, :] >= first[:, None]) & (keys[None, :] < (first + M)[:, None])
    grid[1 + K :] = clean | own
    return grid
