"""The drafter's side of speculative decoding: the next few tokens of each reply,
drafted by the diffusion model in a few parallel steps over its canvas.

The acceptance rule (`dlm.sampling.verify`) is exact for sampling only when each draft
token comes from a known q given the drafts left of it, so sampling drafts commit left
to right (several positions per step, each independent given those before). Greedy
drafts commit the surest first.
"""

from __future__ import annotations

import torch

from dlm.config import SampleConfig
from dlm.sampling.rules import token_distribution
from dlm.sampling.sampler import Denoiser


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
    device = prompt.device
    drafting = counts > 0
    if not bool(drafting.all()):  # finished rows cost the drafter nothing: leave them out
        rows = drafting.nonzero()[:, 0]
        if hasattr(drafter, "keep_rows"):  # a cached drafter forgets the finished rows
            drafter.keep_rows(rows)
        some, q, calls = draft(drafter, prompt[rows], None if key_padding is None else
                               key_padding[rows], reply[rows], written[rows], counts[rows], K,
                               config, mask_id, eos_id, banned, pads, generator)
        return (*into_batch(rows, B, some, q, eos_id), calls)
    offsets = torch.arange(K, device=device)
    open_ = offsets[None, :] < counts[:, None]  # (B, K) still to draft
    drafts = torch.full((B, K), eos_id, dtype=torch.int64, device=device)
    proposal = None
    steps = min(config.draft_steps, max(K, 1))
    calls = 0
    lo = int(written.min())
    hi = max(int((written + counts).max()), lo + 1)
    canvas, padding = drafter_canvas(drafter, prompt, key_padding, reply, hi, config)
    # (B, K) canvas positions of the drafts (slots past a row's count read anything)
    at = P + (written[:, None] + offsets).clamp(max=canvas.shape[1] - P - 1)
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
        ban_undraftable(logits, mask_id, eos_id, banned, pads)
        # each open position commits within the steps left, evenly
        left = open_.sum(1)
        take = (left + (steps - s) - 1) // (steps - s)  # (B,)
        tokens, score, q = propose(logits, open_, config, generator)
        if q is not None:
            proposal = q if proposal is None else torch.where(open_[..., None], q, proposal)
        order = score.argsort(1, descending=True)
        ranks = order.argsort(1)
        commit = (ranks < take[:, None]) & open_
        drafts = torch.where(commit, tokens, drafts)
        canvas.scatter_(1, at, torch.where(commit, tokens.to(canvas.dtype),
                                           canvas.gather(1, at)))
        open_ &= ~commit
    return drafts, proposal, calls


def into_batch(rows: torch.Tensor, B: int, drafts: torch.Tensor, q: torch.Tensor | None,
               eos_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The drafts (and their distributions) of the drafting `rows`, placed in a batch of
    B rows: the others (finished) draft eos, and their (unread) q is uniform."""
    K, device = drafts.shape[1], drafts.device
    full = torch.full((B, K), eos_id, dtype=torch.int64, device=device)
    full[rows] = drafts
    proposal = None
    if q is not None:  # finished rows draw nothing; their (unread) q is uniform
        proposal = torch.full((B, K, q.shape[-1]), 1 / q.shape[-1], dtype=q.dtype,
                              device=device)
        proposal[rows] = q
    return full, proposal


def drafter_canvas(drafter: Denoiser, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                   reply: torch.Tensor, hi: int, config: SampleConfig,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The drafter's canvas (the prompt, then the reply up to where the drafter reads it)
    and its key padding, for drafts that end at reply position `hi` at most."""
    L = reply.shape[1]
    if config.draft_window:  # the canvas ends `draft_window` masks after the last draft
        reply = reply[:, : min(L, hi + config.draft_window)]
    elif hasattr(drafter, "canvas_end"):  # a block drafter: nothing after the block counts
        reply = reply[:, : min(L, drafter.canvas_end(hi))]
    canvas = torch.cat([prompt, reply], 1)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones_like(reply, dtype=torch.bool)], 1)
    return canvas, padding


def ban_undraftable(logits: torch.Tensor, mask_id: int, eos_id: int,
                    banned: tuple[int, ...], pads: tuple[int, ...]) -> None:
    """Rule out in place what the drafter never proposes: the mask, the `banned` ids, and
    the pads, whose mass goes to eos."""
    logits[..., mask_id] = float("-inf")
    if banned:
        logits[..., list(banned)] = float("-inf")
    if pads:  # a pad ends the reply as eos does: propose eos with the pads' mass
        logits[..., eos_id] = torch.logsumexp(logits[..., [eos_id, *pads]], -1)
        logits[..., list(pads)] = float("-inf")


def propose(logits: torch.Tensor, open_: torch.Tensor, config: SampleConfig,
            generator: torch.Generator | None,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A token for each of the (B, K) draft positions, the score that orders their commits
    (open positions first) and, when sampling, the distribution q they were drawn from
    (B, K, V; None when greedy)."""
    B, K = open_.shape
    if config.temperature == 0:  # the surest first: the argmax's log-probability
        tokens = logits.argmax(-1)
        score = (logits.amax(-1) - logits.logsumexp(-1)).double().masked_fill(
            ~open_, float("-inf"))
        return tokens, score, None
    q = token_distribution(logits, config.temperature, config.top_k, config.top_p)
    tokens = torch.multinomial(q.view(-1, q.shape[-1]), 1, generator=generator).view(B, K)
    # left to right: the acceptance rule needs each draft's q given those before
    offsets = torch.arange(K, device=open_.device)
    score = (K - offsets.to(torch.float64))[None, :].expand(B, -1).masked_fill(~open_, -1.0)
    return tokens, score, q
