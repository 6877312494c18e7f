"""A speculative drafter that keeps its committed prefix's keys and values across rounds.

Each speculative round the full-attention drafter reads the prompt, the reply written so
far and the masks after it, and only the drafts' logits are used. Without a cache every
round recomputes the whole canvas, although all of it but the last round's tokens and
the masks is what the previous round already computed. `PrefixCachedDrafter` keeps the
keys and values of the positions every row had committed at its last call (Fast-dLLM's
prefix cache, carried from round to round), so a call computes only the tokens written
since, the drafts and the masks after them.

With bidirectional attention the cached keys are stale: they were computed while later
positions were still masks. The drafts may therefore differ from the uncached drafter's,
but speculative decoding stays exact (the verifier decides every token); only the share
of drafts kept can change, which `dlm bench --speculative ... --draft-cache` measures.
"""

from __future__ import annotations

import torch

from dlm.diffusion.shift import Shifted
from dlm.model import KVCache, Transformer


class PrefixCachedDrafter:
    """Called like the drafter, `(canvas, key_padding, window) -> (M, V)` logits of the
    window's positions (row-major); one instance serves one speculative call.

    The window must be the same span [a, b) of every row (as `draft` gives it), and each
    call's canvas must extend the last one's committed prefix (positions before the last
    window start do not change between calls): both hold within a speculative call."""

    def __init__(self, model: Transformer, batch: int, capacity: int):
        self.model = model
        self.shift = bool(model.config.shift)  # the output at j - 1 predicts position j
        self.cache: KVCache = model.new_cache(batch, capacity)  # the whole canvas fits
        self.rows = torch.arange(batch, device=model.embed.weight.device)  # rows it holds
        self.positions_computed = 0  # query positions run through the model (benchmarks)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Only these rows of the speculative batch (ascending; a subset of those kept
        before: finished rows never draft again) draft from now on."""
        if rows.shape == self.rows.shape:
            return
        held = torch.searchsorted(self.rows, rows)  # where each kept row sits in the cache
        self.cache.keys = [k[held] for k in self.cache.keys]
        self.cache.values = [v[held] for v in self.cache.values]
        self.rows = rows

    def __call__(self, canvas: torch.Tensor, key_padding: torch.Tensor | None,
                 window: torch.Tensor) -> torch.Tensor:
        B, T = canvas.shape
        cols = window[0].nonzero()[:, 0]
        a, b = int(cols[0]), int(cols[-1]) + 1
        first = a - 1 if self.shift else a  # the first position whose output is read
        start = min(self.cache.length, first)
        select = torch.zeros(B, T - start, dtype=torch.bool, device=canvas.device)
        select[:, first - start : first - start + b - a] = True
        self.positions_computed += B * (T - start)
        logits = self.model(canvas[:, start:], key_padding, select, cache=self.cache,
                            start=start)  # (B * (b - a), V)
        # keep what every row has committed; the drafts and masks are recomputed next time
        self.cache.truncate(first)
        return logits


def prefix_cached(drafter, batch: int, capacity: int) -> PrefixCachedDrafter | None:
    """The cached form of a full-attention drafter (the Transformer, or it shifted) for
    `batch` rows and canvases of up to `capacity` positions; None for drafters with a
    layout of their own (block diffusion)."""
    model = drafter.model if isinstance(drafter, Shifted) else drafter
    if isinstance(model, Transformer) and not model.config.causal:
        return PrefixCachedDrafter(model, batch, capacity)
    return None
