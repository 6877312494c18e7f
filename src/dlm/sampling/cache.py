"""Fast-dLLM caching for the full-attention denoiser: reuse keys and values within a block.

With bidirectional attention every position's keys change when any token is
committed, so no cache is exact. Fast-dLLM (Wu et al., 2025) observes that in
semi-autoregressive block decoding the keys of positions outside the current
block barely change while the block is denoised, and reuses them:

- `prefix`: at the block's first step one full forward fills the cache; each later
  step recomputes the block and everything after it, and reads the prefix (the
  prompt and finished blocks) from the cache.
- `dual`: the suffix (the still-masked blocks after this one) is read from the
  cache too, so a step computes only the block's own positions.

The cache is refreshed at each new block, so the error never outlives a block.
Its cost in quality is measured by `dlm sweep` and `dlm bench`, not assumed.
"""

from __future__ import annotations

import torch

from dlm.errors import ConfigError
from dlm.model import KVCache, Transformer

CACHE_MODES = ("none", "prefix", "dual")


class CachedDenoiser:
    """A windowed denoiser: called with the block's window [lo, hi), returns its logits.

    One instance serves one sampling call (it holds that call's cache).
    """

    windowed = True

    def __init__(self, model: Transformer, mode: str):
        if not isinstance(model, Transformer):
            raise ConfigError("cache needs the Transformer denoiser itself, not a wrapper")
        if mode not in CACHE_MODES[1:]:
            raise ConfigError(f"cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
        self.model, self.mode = model, mode
        self.cache: KVCache | None = None
        self.window: tuple[int, int] | None = None  # the window the cache was filled for
        self.positions_computed = 0  # query positions run through the model, for benchmarks

    def __call__(self, tokens: torch.Tensor, key_padding: torch.Tensor | None, lo: int,
                 hi: int) -> torch.Tensor:
        B, T = tokens.shape
        if self.cache is None or self.cache.keys[0].shape[0] != B or self.cache.capacity < T:
            self.cache, self.window = self.model.new_cache(B, T), None
        if (lo, hi) != self.window:  # a new block: one full forward refreshes every position
            self.cache.length = 0
            self.window = (lo, hi)
            self.positions_computed += T
            return self.model(tokens, key_padding, cache=self.cache, start=0)[:, lo:hi]
        end = T if self.mode == "prefix" else hi
        self.positions_computed += end - lo
        logits = self.model(tokens[:, lo:end], key_padding, cache=self.cache, start=lo)
        return logits[:, : hi - lo]
