"""The verifier's KV cache across speculative rounds, with per-row visibility.

Rows of a batch accept different counts. A row's refused drafts stay in the verifier's
cache as slots hidden from attention (gaps), and each token keeps its own rotary
position, so every row attends exactly as it would alone; slots no row kept are dropped
(`KVCache.truncate`: the rollback).
"""

from __future__ import annotations

import torch


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
