"""Speculative decoding: a diffusion model drafts, the autoregressive model verifies.

Each round the drafter (a full-attention denoiser: MDLM, or one adapted from AR) fills
the next k masks of the reply in a few parallel steps. The AR verifier reads the k
drafts in one forward over its KV cache and keeps the longest prefix it agrees with
(Leviathan et al. 2023; Chen et al. 2023):

- greedy: a draft token stays when it is the verifier's argmax, so the reply is the
  verifier's own greedy reply, token for token;
- sampling: a draft x drawn from q stays with probability min(1, p(x) / q(x)); the first
  refused position takes a token from norm(max(0, p - q)), so each token is distributed
  exactly as the verifier's p.

The first refused position takes the verifier's token, and the next round drafts after
it; when all k stay, the verifier's next token comes free. Every round writes at least
one token, so it never costs more verifier calls than AR decoding.

The rule is exact for sampling only when each draft token comes from a known q given the
drafts left of it, so sampling drafts commit left to right (several positions per step,
each independent given those before). Greedy drafts commit the surest first.

Rows of a batch accept different counts. A row's refused drafts stay in the verifier's
cache as slots hidden from attention (gaps), and each token keeps its own rotary
position, so every row attends exactly as it would alone; slots no row kept are dropped
(`KVCache.truncate`: the rollback).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.ar import next_token_logits
from dlm.sampling.draft_cache import prefix_cached
from dlm.sampling.rules import token_distribution
from dlm.sampling.sampler import Denoiser, Step


@dataclass
class Verdict:
    """What the verifier made of one round's drafts. accepted: (B,) drafts kept per row;
    next_tokens: (B,) the token after them (the correction, or the free one)."""

    accepted: torch.Tensor
    next_tokens: torch.Tensor


def verify_drafts(drafts: torch.Tensor, counts: torch.Tensor, target: torch.Tensor,
                  proposal: torch.Tensor,
                  generator: torch.Generator | None = None) -> Verdict:
    """The speculative sampling acceptance rule (greedy verification is `verify_round`'s
    argmax comparison).

    drafts: (B, K) draft ids, of which the first counts[b] are real in row b. target:
    (B, K + 1, V) the verifier's distribution at each draft position and the one after
    (position j given the drafts before j). proposal: (B, K, V) the distribution each
    draft was drawn from.
    """
    B, K = drafts.shape
    rows = torch.arange(B, device=drafts.device)
    real = torch.arange(K, device=drafts.device)[None, :] < counts[:, None]  # (B, K)
    p_draft = target[:, :K].gather(-1, drafts[..., None])[..., 0]  # (B, K)
    q_draft = proposal.gather(-1, drafts[..., None])[..., 0]
    u = torch.rand(B, K, dtype=target.dtype, device=drafts.device, generator=generator)
    keep = (u * q_draft < p_draft) & real  # u < p / q without dividing by a zero q
    # the accepted count is the length of the run of kept drafts from the left
    accepted = keep.to(torch.int64).cumprod(1).sum(1)  # (B,)
    after = target[rows, accepted]  # (B, V): the distribution at the first unkept position
    refused = accepted < counts
    q = torch.cat([proposal, proposal.new_zeros(B, 1, proposal.shape[-1])], 1)[rows, accepted]
    residual = (after - q).clamp(min=0)
    mass = residual.sum(-1, keepdim=True)
    # a refusal has mass > 0 (q != p there); the guard only avoids 0/0 in rows that
    # accepted everything, which take `after` itself
    residual = torch.where(mass > 0, residual / mass.clamp(min=1e-300), after)
    after = torch.where(refused[:, None], residual, after)
    next_tokens = torch.multinomial(after, 1, generator=generator)[:, 0]
    return Verdict(accepted, next_tokens)


def verify_round(ruled: torch.Tensor, drafts: torch.Tensor, counts: torch.Tensor,
                 config: SampleConfig, proposal: torch.Tensor | None,
                 generator: torch.Generator | None = None,
                 ) -> tuple[Verdict, torch.Tensor, torch.Tensor]:
    """The verdict on a round from the verifier's ruled logits (B, K + 1, V) (see
    `verifier_logits`), and what it commits: each row's kept drafts then its next token
    (B, K + 1; read up to accepted + 1) with their untempered probabilities (float64).

    Greedy reads only the argmax and one log-sum-exp per position: the full float64
    distribution of every position (what sampling compares) cost more than the
    verifier's forward at batch 8."""
    B, K = drafts.shape
    rows = torch.arange(B, device=drafts.device)
    if config.temperature == 0:
        # the argmax of the filtered logits is the argmax (top-k and top-p keep it)
        choice = ruled.argmax(-1)  # (B, K + 1): the verifier's token at each position
        real = torch.arange(K, device=drafts.device)[None, :] < counts[:, None]
        keep = (drafts == choice[:, :K]) & real
        accepted = keep.to(torch.int64).cumprod(1).sum(1)
        verdict = Verdict(accepted, choice[rows, accepted])
    else:
        target = token_distribution(ruled, config.temperature, config.top_k, config.top_p)
        if proposal is None:  # nothing drafted yet (a dual model's first forward): K = 0
            proposal = target.new_zeros(B, K, target.shape[-1])
        verdict = verify_drafts(drafts, counts, target, proposal, generator)
    sequence = torch.cat([drafts, drafts.new_zeros(B, 1)], 1)
    sequence[rows, verdict.accepted] = verdict.next_tokens
    confidence = (ruled.gather(-1, sequence[..., None])[..., 0]
                  - ruled.logsumexp(-1)).exp().double()
    return verdict, sequence, confidence


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


class VerifierCache:
    """The verifier's KV cache with per-row visibility. Each round writes the pending token
    (the last one written, not yet in the cache) and the drafts; a row's refused drafts
    become hidden slots (gaps), and slots no row kept are dropped (the rollback)."""

    def __init__(self, model, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                 capacity: int):
        B, P = prompt.shape
        self.P = P
        self.cache = model.new_cache(B, capacity)
        self.visible = torch.zeros(B, capacity, dtype=torch.bool, device=prompt.device)
        self.visible[:, :P] = (key_padding if key_padding is not None else True)
        self.prefills = 0
        if P > 1:
            model(prompt[:, :-1], self.visible[:, : P - 1], cache=self.cache)
            self.prefills = 1

    def open_round(self, active: torch.Tensor, is_draft: torch.Tensor,
                   written: torch.Tensor, extra: int = 0) -> tuple[int, torch.Tensor]:
        """Mark this round's slots (pending, drafts, and `extra` more after them, shown to
        active rows); returns the first slot and the (B, 1 + K) rotary positions of the
        pending token and the drafts (each row's own: position P - 1 + written)."""
        start, K = self.cache.length, is_draft.shape[1]
        needed = start + 1 + K + extra
        if needed > self.cache.capacity:  # refused drafts left gaps: grow, doubling
            capacity = max(needed, 2 * self.cache.capacity)
            self.cache.reserve(capacity)
            grown = self.visible.new_zeros(self.visible.shape[0], capacity)
            grown[:, : self.visible.shape[1]] = self.visible
            self.visible = grown
        self.visible[:, start] = active
        self.visible[:, start + 1 : start + 1 + K] = is_draft
        self.visible[:, start + 1 + K : start + 1 + K + extra] = active[:, None]
        positions = (self.P - 1 + written)[:, None] + torch.arange(
            K + 1, device=written.device)[None, :]
        return start, positions

    def keys(self, end: int) -> torch.Tensor:
        return self.visible[:, :end]

    def rollback(self, start: int, accepted: torch.Tensor, K: int) -> None:
        kept = torch.arange(K, device=accepted.device)[None, :] < accepted[:, None]
        self.visible[:, start + 1 : start + 1 + K] &= kept
        self.cache.truncate(start + 1 + int(accepted.max()))
        self.visible[:, self.cache.length :] = False


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


def verifier_logits(logits: torch.Tensor, reply: torch.Tensor, written: torch.Tensor,
                    drafts: torch.Tensor, config: SampleConfig, mask_id: int,
                    eos_id: int) -> torch.Tensor:
    """The verifier's logits (B, K + 1, V) at each draft position and the one after, under
    the same rules AR decoding applies there (given the reply so far and the drafts
    before)."""
    B, W, V = logits.shape
    if config.repetition_penalty == 1.0 and not config.no_repeat_ngram:
        # no rule reads the reply before a position: rule every position at once
        ruled = next_token_logits(logits.reshape(B * W, V), written.new_empty(B * W, 0),
                                  config, mask_id, eos_id).view(B, W, V)
    else:  # each position follows what is written, then the drafts before it
        history = torch.full((B, reply.shape[1] + W), -1, dtype=torch.int64,
                             device=reply.device)
        for b in range(B):
            n = int(written[b])
            history[b, :n] = reply[b, :n]
            history[b, n : n + W - 1] = drafts[b]
        ruled = torch.stack([
            next_token_logits(logits[:, j], masked_after(history, written + j), config,
                              mask_id, eos_id) for j in range(W)], 1)  # (B, W, V)
    return ruled


def masked_after(history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """history (B, N) with -1 from each row's `lengths` on."""
    cols = torch.arange(history.shape[1], device=history.device)[None, :]
    return history.masked_fill(cols >= lengths[:, None], -1)


def draft(drafter: Denoiser, prompt: torch.Tensor, key_padding: torch.Tensor | None,
          reply: torch.Tensor, written: torch.Tensor, counts: torch.Tensor, K: int,
          config: SampleConfig, mask_id: int, eos_id: int, banned: tuple[int, ...],
          pads: tuple[int, ...], generator: torch.Generator | None,
          ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """counts[b] draft tokens after row b's `written` reply tokens, in `draft_steps`
    parallel steps over the drafter's canvas: the prompt, the reply so far and masks to
    `length`, as it was trained (a canvas cut after the drafts would tell it the reply
    ends there), or `draft_window` masks past the last draft (a block drafter's canvas
    ends with the block, which is exact). Rows with nothing to draft are left out of the
    drafter's batch. Returns drafts (B, K), the distribution each came from (B, K, V;
    None when greedy) and the drafter calls made."""
    B, P = prompt.shape
    L, device = reply.shape[1], prompt.device
    drafting = counts > 0
    if not bool(drafting.all()):  # finished rows cost the drafter nothing: leave them out
        rows = drafting.nonzero()[:, 0]
        if hasattr(drafter, "keep_rows"):  # a cached drafter forgets the finished rows
            drafter.keep_rows(rows)
        some, q, calls = draft(drafter, prompt[rows], None if key_padding is None else
                               key_padding[rows], reply[rows], written[rows], counts[rows], K,
                               config, mask_id, eos_id, banned, pads, generator)
        drafts = torch.full((B, K), eos_id, dtype=torch.int64, device=device)
        drafts[rows] = some
        proposal = None
        if q is not None:  # finished rows draw nothing; their (unread) q is uniform
            proposal = torch.full((B, K, q.shape[-1]), 1 / q.shape[-1], dtype=q.dtype,
                                  device=device)
            proposal[rows] = q
        return drafts, proposal, calls
    offsets = torch.arange(K, device=device)
    open_ = offsets[None, :] < counts[:, None]  # (B, K) still to draft
    drafts = torch.full((B, K), eos_id, dtype=torch.int64, device=device)
    proposal = None
    steps = min(config.draft_steps, max(K, 1))
    calls = 0
    lo = int(written.min())
    hi = max(int((written + counts).max()), lo + 1)
    if config.draft_window:  # the canvas ends `draft_window` masks after the last draft
        reply = reply[:, : min(L, hi + config.draft_window)]
    elif hasattr(drafter, "canvas_end"):  # a block drafter: nothing after the block counts
        reply = reply[:, : min(L, drafter.canvas_end(hi))]
    canvas = torch.cat([prompt, reply], 1)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones_like(reply, dtype=torch.bool)], 1)
    # (B, K) canvas positions of the drafts (slots past a row's count read anything)
    at = P + (written[:, None] + offsets).clamp(max=reply.shape[1] - 1)
    window = torch.zeros_like(canvas, dtype=torch.bool)
    window[:, P + lo : P + hi] = True  # (B, T): the same span of every row
    for s in range(steps):
        if not bool(open_.any()):
            break
        # only the window holding every row's drafts goes through the output head (the
        # head over the whole canvas cost the tiny chat model more than its blocks)
        logits = drafter(canvas, padding, window).float().view(B, hi - lo, -1)
        calls += 1
        inside = (at - P - lo).clamp(0, hi - lo - 1)  # rows not drafting read anything
        logits = logits.gather(1, inside[..., None].expand(-1, -1, logits.shape[-1]))
        logits[..., mask_id] = float("-inf")
        if banned:
            logits[..., list(banned)] = float("-inf")
        if pads:  # a pad ends the reply as eos does: propose eos with the pads' mass
            logits[..., eos_id] = torch.logsumexp(logits[..., [eos_id, *pads]], -1)
            logits[..., list(pads)] = float("-inf")
        # each open position commits within the steps left, evenly
        left = open_.sum(1)
        take = (left + (steps - s) - 1) // (steps - s)  # (B,)
        if config.temperature == 0:  # the surest first: the argmax's log-probability
            tokens = logits.argmax(-1)
            score = (logits.amax(-1) - logits.logsumexp(-1)).double().masked_fill(
                ~open_, float("-inf"))
        else:
            q = token_distribution(logits, config.temperature, config.top_k, config.top_p)
            tokens = torch.multinomial(q.view(-1, q.shape[-1]), 1,
                                       generator=generator).view(B, K)
            # left to right: the acceptance rule needs each draft's q given those before
            score = (K - offsets.to(torch.float64))[None, :].expand(B, -1).masked_fill(
                ~open_, -1.0)
            proposal = q if proposal is None else torch.where(
                open_[..., None], q, proposal)
        order = score.argsort(1, descending=True)
        ranks = order.argsort(1)
        commit = (ranks < take[:, None]) & open_
        drafts = torch.where(commit, tokens, drafts)
        canvas.scatter_(1, at, torch.where(commit, tokens.to(canvas.dtype),
                                           canvas.gather(1, at)))
        open_ &= ~commit
    return drafts, proposal, calls
