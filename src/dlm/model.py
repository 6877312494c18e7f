"""The Transformer denoiser: ids in, logits for every position out.

Bidirectional by default (the diffusion denoiser); `causal=True` makes the same
network the autoregressive baseline. By default it knows nothing of time, noise or
sampling: for absorbing diffusion the number of masks already tells the noise level.
Objectives whose input does not tell it ask for `time_conditioning` (adaLN, as in DiT),
and continuous diffusion feeds vectors (`embeds`) instead of ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dlm.config import ModelConfig

try:  # torch >= 2.5; older versions use SDPA with an explicit mask everywhere
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # pragma: no cover
    class BlockMask:  # type: ignore[no-redef]
        """Stands for flex attention's mask type where torch has none (never instantiated)."""

    flex_attention = None

_compiled_flex = None


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask) -> torch.Tensor:
    """Flex attention, compiled on CUDA: eager flex is a reference path that builds the
    full score matrix (several times slower than SDPA). On CPU it stays eager: flex has no
    CPU backward, and training there uses SDPA with the dense mask instead."""
    global _compiled_flex
    if not q.is_cuda:
        return flex_attention(q, k, v, block_mask=block_mask)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    return _compiled_flex(q, k, v, block_mask=block_mask)


def rotary_tables(head_dim: int, max_len: int, theta: float,
                  scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (max_len, head_dim / 2); `scaling`: Llama 3's."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) == "llama3":
        inv_freq = llama3_frequencies(inv_freq, scaling)
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (T, hd/2)
    return angles.cos(), angles.sin()


def llama3_frequencies(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Llama 3.1's long-context rotary frequencies: wavelengths longer than the original
    context / low_freq_factor are stretched by `factor`, shorter than context /
    high_freq_factor kept, and those between interpolated smoothly."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > context / low, inv_freq / factor, inv_freq)
    smooth = (context / wavelength - low) / (high - low)
    between = (wavelength >= context / high) & (wavelength <= context / low)
    return torch.where(between, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head by the position's angle."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hd/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Keys and values of positions already computed, per layer, preallocated to `max_len`.

    A forward with a cache writes its T positions at `start` (default: the end,
    `length`) and attends over every position written so far. `length` is the
    high-water mark: rewriting earlier positions (a block being denoised again)
    does not move it. Uses:

    - left-to-right decoding with the causal model (exact);
    - block diffusion: finished blocks' clean keys, which never depend on later
      tokens, so the cache is exact;
    - Fast-dLLM caching for the full-attention denoiser: keys of the prefix (and
      suffix) computed once per block while other positions were still masked,
      reused across the block's steps (an approximation; its cost is measured).
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (batch, cfg.kv_heads, max_len, cfg.head_width)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype)
                       for _ in range(cfg.n_layers)]
        self.length = 0
        self.capacity = max_len  # positions it can hold

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int):
        """Store (B, n_kv, T, hd) at `start`; return the keys and values of every position
        written so far, these included."""
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions, {end} asked for")
        self.keys[layer][:, :, start:end] = k.to(self.keys[layer].dtype)
        self.values[layer][:, :, start:end] = v.to(self.values[layer].dtype)
        visible = max(self.length, end)
        return self.keys[layer][:, :, :visible], self.values[layer][:, :, :visible]

    def reserve(self, capacity: int) -> None:
        """Hold at least `capacity` positions, keeping those written (a cache that grows on
        demand instead of being sized for the worst case up front)."""
        if capacity <= self.capacity:
            return
        for store in (self.keys, self.values):
            for layer, old in enumerate(store):
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])
                new[:, :, : self.length] = old[:, :, : self.length]
                store[layer] = new
        self.capacity = capacity

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (speculative decoding's rollback after a
        rejected draft): the next forward writes there and attends over `length` only."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        self.length = length

class Attention(nn.Module):
    """Multi-head attention with RoPE, over one fused q/k/v projection or three separate
    ones (`ModelConfig.fused_projections`); grouped-query when there are fewer key/value
    heads than query heads."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.n_heads, self.causal, self.dropout = cfg.n_heads, cfg.causal, cfg.dropout
        self.n_kv, self.head_dim = cfg.kv_heads, cfg.head_width
        self.layer = layer
        self.widths = (cfg.n_heads * self.head_dim, self.n_kv * self.head_dim,
                       self.n_kv * self.head_dim)
        if cfg.fused_projections:
            self.qkv = nn.Linear(cfg.d_model, sum(self.widths), bias=cfg.qkv_bias)
        else:
            self.qkv = None
            self.q, self.k, self.v = (nn.Linear(cfg.d_model, w, bias=cfg.qkv_bias)
                                      for w in self.widths)
        self.proj = nn.Linear(cfg.n_heads * self.head_dim, cfg.d_model, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x, cos, sin, attn_mask=None, cache: KVCache | None = None, start: int = 0):
        B, T, _ = x.shape
        hd, nkv = self.head_dim, self.n_kv
        if self.qkv is not None:
            q, k, v = self.qkv(x).split(self.widths, dim=2)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        q = q.view(B, T, self.n_heads, hd).transpose(1, 2)  # (B, nh, T, hd)
        k, v = (z.view(B, T, nkv, hd).transpose(1, 2) for z in (k, v))  # (B, n_kv, T, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v, start)  # (B, n_kv, S, hd)
        grouped = nkv != self.n_heads
        if isinstance(attn_mask, BlockMask):  # flex attention (block diffusion on CUDA)
            if grouped:
                k, v = (z.repeat_interleave(self.n_heads // nkv, dim=1) for z in (k, v))
            y = flex(q, k, v, attn_mask)
            return self.proj(y.transpose(1, 2).reshape(B, T, self.n_heads * hd))
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None and cache is None,
            **({"enable_gqa": True} if grouped else {}),
        )  # (B, nh, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_heads * hd))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), gate and up as one matmul or two."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.fused_projections:
            self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        else:
            self.gate_up = None
            self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, d_ff) each
        else:
            gate, up = self.gate(x), self.up(x)
        return self.down(F.silu(gate) * up)


class TimeEmbedding(nn.Module):
    """The noise level t in [0, 1] (B,) as a (B, d_model) vector: sinusoids of 1000 t
    (DiT's timestep embedding) through a two-layer MLP."""

    def __init__(self, d_model: int, frequencies: int = 128):
        super().__init__()
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(
            frequencies).float() / frequencies), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, d_model), nn.SiLU(),
                                 nn.Linear(d_model, d_model))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 1000.0 * t.float()[:, None] * self.freqs.float()[None, :]  # (B, F)
        waves = torch.cat([angles.cos(), angles.sin()], -1)  # float32, then the weights' dtype
        return self.mlp(waves.to(self.mlp[0].weight.dtype))


def modulation(cfg: ModelConfig, parts: int) -> nn.Linear | None:
    """adaLN's projection of the time embedding into `parts` (B, C) shifts / scales /
    gates (zero-initialised by the Transformer)."""
    return nn.Linear(cfg.d_model, parts * cfg.d_model) if cfg.time_conditioning else None


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model, cfg.norm_eps)
        self.norm2 = nn.RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn, self.mlp = Attention(cfg, layer), SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.adaln = modulation(cfg, 6)

    def forward(self, x, cos, sin, attn_mask=None, cache=None, start=0, cond=None):
        if self.adaln is None or cond is None:
            x = x + self.drop(self.attn(self.norm1(x), cos, sin, attn_mask, cache, start))
            return x + self.drop(self.mlp(self.norm2(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(cond).chunk(6, dim=-1)
        h = self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin, attn_mask, cache,
                      start)
        x = x + self.drop(h * (1 + gate1[:, None]))
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + self.drop(h * (1 + gate2[:, None]))


class Transformer(nn.Module):
    """Pre-norm Transformer with RoPE, RMSNorm, SwiGLU and a tied output head (or one of
    its own), in the Llama / Qwen / LLaDA / Dream layouts that `ModelConfig` spells."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.checkpointing = False  # activation checkpointing: recompute blocks in backward
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = (None if cfg.tie_embeddings
                     else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False))
        self.time_embed = TimeEmbedding(cfg.d_model) if cfg.time_conditioning else None
        self.final_adaln = modulation(cfg, 2)
        # reply length in tokens (class c = length c + 1), from the pooled prompt
        self.length_head = (nn.Linear(cfg.d_model, cfg.length_classes)
                            if cfg.length_classes else None)
        cos, sin = rotary_tables(cfg.head_width, cfg.max_seq_len, cfg.rope_theta,
                                 cfg.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: shrink the residual projections by depth so the stream stays O(1).
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))
        # adaLN starts at zero, so a fresh time-conditioned model is the time-free one
        # (scales and gates enter as 1 + value) and learns how much t matters.
        for name, p in self.named_parameters():
            if "adaln." in name:
                nn.init.zeros_(p)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache (see `KVCache` for when it is exact and when approximate)."""
        p = self.embed.weight
        return KVCache(self.config, batch, max_len, p.device, p.dtype)

    def forward(self, ids: torch.Tensor, key_padding: torch.Tensor | None = None,
                select: torch.Tensor | None = None, cache: KVCache | None = None,
                start: int | None = None, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | BlockMask | None = None,
                head: str = "tokens", time: torch.Tensor | None = None,
                embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for ids (B, T).

        key_padding: optional (B, T) bool, True for real tokens; pad positions are
        hidden from every query (used for left-padded batches of prompts). With a
        cache it covers every visible position, cached ones included: (B, S).
        select: optional (B, T) bool; if given, only those positions go through the
        output head and the result is (M, vocab). The loss needs only the masked
        positions, and the head is a quarter of the tiny model's FLOPs.
        cache: a `KVCache`; ids are positions start .. start + T - 1 (start defaults
        to the cache's length), written into the cache, and every query attends over
        all S positions written so far (causal models: those up to its own).
        positions: optional (T,) rotary position of each token (block diffusion feeds
        x_t and x_0 side by side, both at positions 0..L-1), or (B, T), one per row
        (speculative decoding: rows that accepted fewer draft tokens have gaps in the
        cache, so a row's position is not its cache slot).
        attn_mask: optional (T, S) bool, True where a query may see a key, combined
        with key_padding; or a flex-attention `BlockMask` that already holds both.
        head: "tokens", "hidden" (the final normed hidden states, (B, T, d_model)), or
        "length": ids are a prompt alone and the result is the length head's logits
        (B, length_classes) from the mean of its real positions.
        time: (B,) noise levels in [0, 1], for a model with `time_conditioning` (required
        there, refused elsewhere: a time-free model would silently ignore it).
        embeds: (B, T, d_model) input vectors instead of ids (continuous diffusion over
        embeddings); ids is then None.
        """
        if (time is None) == (self.time_embed is not None):
            raise ValueError("this model is time-conditioned: pass time=" if time is None
                             else "this model is time-free: it takes no time input")
        B, T = (ids if embeds is None else embeds[..., 0]).shape
        device = (ids if embeds is None else embeds).device
        if start is None:
            start = cache.length if cache is not None else 0
        elif cache is None and start:
            raise ValueError("start needs a cache: without one, ids begin at position 0")
        last = start + T if positions is None else int(positions.max()) + 1
        if last > self.config.max_seq_len:
            raise ValueError(f"sequence of {last} tokens exceeds "
                             f"max_seq_len={self.config.max_seq_len}")
        S = max(cache.length, start + T) if cache is not None else T  # keys visible
        mask = attn_mask
        if isinstance(attn_mask, torch.Tensor):
            # each query also sees itself, so a padded query row is never all -inf
            itself = torch.zeros_like(attn_mask)
            itself[:, start : start + T] = torch.eye(T, dtype=torch.bool, device=device)
            mask = attn_mask[None, None] | itself  # (1, 1, T, S)
            if key_padding is not None:
                mask = (mask & key_padding[:, None, None, :]) | itself
        elif attn_mask is None and (key_padding is not None or (
                cache is not None and self.config.causal and (T > 1 or S > start + T))):
            real = (key_padding if key_padding is not None
                    else torch.ones(B, S, dtype=torch.bool, device=device))
            mask = real[:, None, None, :]  # (B, 1, 1, S) broadcast over heads, queries
            if self.config.causal:
                # query i (at position start + i) sees keys up to its own position
                keys = torch.arange(S, device=device)
                queries = torch.arange(start, start + T, device=device)
                causal = keys[None, :] <= queries[:, None]  # (T, S)
                # Each position also sees itself, so a left-pad query row is never all -inf.
                itself = keys[None, :] == queries[:, None]
                mask = (mask & causal) | itself  # (B, 1, T, S)
        if positions is None:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        else:
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
            if positions.dim() == 2:  # (B, T, hd/2) -> (B, 1, T, hd/2), broadcast over heads
                cos, sin = cos[:, None], sin[:, None]
        x = self.embed(ids) if embeds is None else embeds.to(self.embed.weight.dtype)  # (B, T, C)
        cond = None if time is None else self.time_embed(time.to(device))  # (B, C)
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:  # keep only each block's input; recompute its inside in backward
                x = checkpoint(block, x, cos, sin, mask, cache, start, cond,
                               use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, cache, start, cond)
        if cache is not None:
            cache.length = S
        x = self.norm(x)
        if cond is not None:
            x = modulate(x, *self.final_adaln(cond).chunk(2, dim=-1))
        if head == "hidden":  # the final normed hidden states (features, e.g. for MAUVE)
            return x
        if head == "length":
            if self.length_head is None:
                raise ValueError("this model has no length head")
            real = (key_padding if key_padding is not None
                    else torch.ones(B, T, dtype=torch.bool, device=device))
            weights = real[..., None].to(x.dtype)  # (B, T, 1)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, C)
            return self.length_head(pooled)  # (B, classes)
        if select is not None:
            x = x[select]  # (M, C)
        output = self.embed.weight if self.head is None else self.head.weight
        return F.linear(x, output)  # (B, T, vocab) or (M, vocab)
