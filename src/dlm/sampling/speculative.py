"""Speculative decoding: a diffusion model drafts, the autoregressive model verifies.

Each round the drafter (a full-attention denoiser: MDLM, or one adapted from AR) fills
the next k masks of the reply in a few parallel steps (`draft.py`). The AR verifier
reads the k drafts in one forward over its KV cache (`verifier_cache.py`: refused
drafts become gaps, rolled back) and keeps the longest prefix it agrees with
(`verify.py`: greedy replies are the verifier's own, sampled ones are distributed as
its own).

The first refused position takes the verifier's token, and the next round drafts after
it; when all k stay, the verifier's next token comes free. Every round writes at least
one token, so it never costs more verifier calls than AR decoding. This module runs the
rounds: the reply being written and the draft length k of the next round.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.draft import draft
from dlm.sampling.draft_cache import prefix_cached
from dlm.sampling.sampler import Denoiser, Step
from dlm.sampling.verifier_cache import VerifierCache
from dlm.sampling.verify import Verdict, verifier_logits, verify_round


def next_draft_length(k: int, accepted: torch.Tensor, counts: torch.Tensor,
                      config: SampleConfig) -> int:
    """Adaptive k: doubled (up to `max_draft_length`) after a round in which every row
    kept all its drafts, else one more than the most any row kept (a refusal at j says
    drafts past j + 1 were wasted). Fixed at `draft_length` when not adaptive."""
    if not config.adaptive_draft:
        return config.draft_length
    if bool((accepted >= counts).all()):
        return min(2 * k, config.max_draft_length)
    return max(1, min(int(accepted.max()) + 1, config.max_draft_length))


class Reply:
    """The replies (B, L) being written: what is committed, each row's count and end."""

    def __init__(self, B: int, L: int, mask_id: int, eos_id: int, dtype, device):
        self.L, self.eos_id = L, eos_id
        self.tokens = torch.full((B, L), mask_id, dtype=dtype, device=device)
        self.confidences = torch.zeros(B, L, dtype=torch.float64, device=device)
        self.written = torch.zeros(B, dtype=torch.int64, device=device)
        self.done = torch.zeros(B, dtype=torch.bool, device=device)
        self.nothing = torch.zeros(B, L, dtype=torch.bool, device=device)

    def step(self, index: int, nfe: int, verifier_calls: int, **marks) -> Step:
        return Step(self.tokens.clone(), marks.pop("committed", self.nothing),
                    self.confidences.clone(), index, self.L, self.nothing, nfe,
                    verifier_calls=verifier_calls, **marks)

    def draft_counts(self, k: int) -> torch.Tensor:
        """(B,) drafts per row: k, fewer near the end, none once a row is done."""
        return torch.where(self.done, 0, (self.L - self.written).clamp(max=k))

    def drafted_step(self, drafts: torch.Tensor, counts: torch.Tensor, index: int, nfe: int,
                     verifier_calls: int) -> Step:
        """The state with the drafts shown where they would go, marked unverified."""
        B, K = drafts.shape
        offsets = torch.arange(K, device=drafts.device)
        rows = torch.arange(B, device=drafts.device)[:, None].expand(-1, K)
        at = (self.written[:, None] + offsets).clamp(max=self.L - 1)
        is_draft = offsets[None, :] < counts[:, None]
        step = self.step(index, nfe, verifier_calls, drafted=self.nothing.clone())
        step.tokens[rows[is_draft], at[is_draft]] = drafts[is_draft].to(step.tokens.dtype)
        step.drafted[rows[is_draft], at[is_draft]] = True
        return step

    def commit(self, sequence: torch.Tensor, confidence: torch.Tensor, counts: torch.Tensor,
               verdict: Verdict) -> tuple[torch.Tensor, torch.Tensor]:
        """Write each active row's kept drafts and the verifier's next token (`sequence`
        (B, K + 1) from `verify_round`, with `confidence` shown for each); a row that
        writes eos or reaches L is done. Returns what was committed and where a draft was
        refused. Vectorised over rows: a loop per row cost ~1 ms a round at batch 8."""
        B, W = sequence.shape
        device = sequence.device
        active = ~self.done
        n_new = torch.minimum(verdict.accepted + 1, self.L - self.written)  # (B,)
        offsets = torch.arange(W, device=device)[None, :]
        new = (offsets < n_new[:, None]) & active[:, None]  # (B, W)
        rows = torch.arange(B, device=device)[:, None].expand(B, W)[new]
        cols = (self.written[:, None] + offsets)[new]
        self.tokens[rows, cols] = sequence[new].to(self.tokens.dtype)
        self.confidences[rows, cols] = confidence[new]
        committed, rejected = self.nothing.clone(), self.nothing.clone()
        committed[rows, cols] = True
        refused = (verdict.accepted < counts) & active  # the draft at written + accepted
        rejected[refused, (self.written + verdict.accepted)[refused]] = True
        is_eos = (sequence == self.eos_id) & new
        ended = is_eos.any(1)
        # the rest of the reply is eos, as AR decoding writes it
        first_eos = self.written + is_eos.to(torch.int64).argmax(1)
        after = torch.arange(self.L, device=device)[None, :] >= first_eos[:, None]
        self.tokens.masked_fill_(ended[:, None] & after, self.eos_id)
        self.written = torch.where(active, self.written + n_new, self.written)
        self.done |= ended | (self.written >= self.L)
        return committed, rejected


@torch.no_grad()
def speculative_decode(
    drafter: Denoiser, verifier: Transformer, prompt: torch.Tensor,
    key_padding: torch.Tensor | None, config: SampleConfig, mask_id: int, eos_id: int,
    banned: tuple[int, ...] = (), pads: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Iterator[Step]:
    """Yield the reply (B, L) after each draft and each verification; stops when every
    row has written eos or `length` tokens. The result equals `ar_decode`'s with the
    verifier (greedy), or is distributed as it (sampling).

    drafter: the diffusion denoiser (ids, key_padding) -> logits over its own canvas of
    the prompt and `length` reply positions (`Objective.drafter`; one with a `limit`
    drafts at most limit(written) tokens per row, a block drafter to its block's end).
    banned: ids the drafter never proposes (the chat template's markers); pads: its
    rainbow pads, proposed as eos (they end a reply as eos does, and the verifier writes
    eos)."""
    B, P = prompt.shape
    L = int(config.length)
    reply = Reply(B, L, mask_id, eos_id, prompt.dtype, prompt.device)
    yield reply.step(0, 0, 0)
    # room for the reply and as many gaps again; it grows if refusals leave more
    cache = VerifierCache(verifier, prompt, key_padding, P + 2 * L + config.max_draft_length)
    calls, nfe, index = cache.prefills, 0, 0
    pending = prompt[:, -1].clone()
    k = config.draft_length
    if config.cache != "none":  # the drafter's committed prefix read from a cache
        cached = prefix_cached(drafter, B, P + L)
        if cached is None:
            raise ConfigError("cache: only a full-attention drafter keeps a prefix cache "
                              "across rounds (a block drafter caches by its blocks)", "cache")
        drafter = cached
    limit = getattr(drafter, "limit", None)  # a block drafter drafts within its block
    while not bool(reply.done.all()):
        counts = reply.draft_counts(k)
        if limit is not None:
            counts = torch.minimum(counts, limit(reply.written))
        K = int(counts.max())
        drafts, proposal, steps = draft(drafter, prompt, key_padding, reply.tokens,
                                        reply.written, counts, K, config, mask_id, eos_id,
                                        banned, pads, generator)
        nfe += steps
        index += 1
        yield reply.drafted_step(drafts, counts, index, nfe + calls, calls)

        # the verifier: one forward over [pending, drafts], each at its row's position
        is_draft = torch.arange(K, device=prompt.device)[None, :] < counts[:, None]
        start, positions = cache.open_round(~reply.done, is_draft, reply.written)
        logits = verifier(torch.cat([pending[:, None], drafts], 1), cache.keys(start + 1 + K),
                          cache=cache.cache, start=start,
                          positions=positions.clamp(max=verifier.config.max_seq_len - 1))
        calls += 1
        ruled = verifier_logits(logits.float(), reply.tokens, reply.written, drafts, config,
                                mask_id, eos_id)
        verdict, sequence, confidence = verify_round(ruled, drafts, counts, config, proposal,
                                                     generator)
        committed, rejected = reply.commit(sequence, confidence, counts, verdict)
        cache.rollback(start, verdict.accepted, K)
        pending = verdict.next_tokens.to(prompt.dtype)
        k = next_draft_length(k, verdict.accepted, counts, config)
        yield reply.step(index, nfe + calls, calls, committed=committed, rejected=rejected)
