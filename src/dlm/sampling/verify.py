"""The verifier's side of speculative decoding: the AR model's verdict on a round's drafts.

The verifier reads the k drafts in one forward over its KV cache and keeps the longest
prefix it agrees with (Leviathan et al. 2023; Chen et al. 2023):

- greedy: a draft token stays when it is the verifier's argmax, so the reply is the
  verifier's own greedy reply, token for token;
- sampling: a draft x drawn from q stays with probability min(1, p(x) / q(x)); the first
  refused position takes a token from norm(max(0, p - q)), so each token is distributed
  exactly as the verifier's p.

The first refused position takes the verifier's token; when all k stay, the verifier's
next token comes free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.sampling.ar import next_token_logits
from dlm.sampling.rules import token_distribution


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
