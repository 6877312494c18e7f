"""A layout's weight names, and the one renaming every layout shares: each block's q, k
and v fused into dlm's `qkv`, gate and up into `gate_up` (or kept apart, when the model's
`fused_projections` is off), the rest one to one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from dlm.config import ModelConfig


@dataclass(frozen=True)
class Names:
    """Where a layout keeps each tensor; `{i}` in `layer` is the block's index."""

    embed: str
    final_norm: str
    head: str
    layer: str
    q: str
    k: str
    v: str
    out: str
    gate: str
    up: str
    down: str
    norm1: str
    norm2: str
    q_norm: str = ""
    k_norm: str = ""


def sources(cfg: ModelConfig, names: Names) -> Iterator[tuple[str, list[str]]]:
    """Each of dlm's tensors and the checkpoint's tensors it is made of, concatenated along
    the first dimension (q, k, v into `qkv`; gate, up into `gate_up`; one to one else)."""
    yield "embed.weight", [f"{names.embed}.weight"]
    yield "norm.weight", [f"{names.final_norm}.weight"]
    if not cfg.tie_embeddings:
        yield "head.weight", [f"{names.head}.weight"]
    for i in range(cfg.n_layers):
        src, dst = names.layer.format(i=i), f"blocks.{i}."
        for kind in ("weight", "bias") if cfg.qkv_bias else ("weight",):
            parts = [f"{src}{part}.{kind}" for part in (names.q, names.k, names.v)]
            if cfg.fused_projections:
                yield f"{dst}attn.qkv.{kind}", parts
            else:
                yield from ((f"{dst}attn.{x}.{kind}", [p]) for x, p in zip("qkv", parts,
                                                                             strict=True))
        yield f"{dst}attn.proj.weight", [f"{src}{names.out}.weight"]
        if cfg.qk_norm:
            yield f"{dst}attn.q_norm.weight", [f"{src}{names.q_norm}.weight"]
            yield f"{dst}attn.k_norm.weight", [f"{src}{names.k_norm}.weight"]
        gate_up = [f"{src}{names.gate}.weight", f"{src}{names.up}.weight"]
        if cfg.fused_projections:
            yield f"{dst}mlp.gate_up.weight", gate_up
        else:
            yield from ((f"{dst}mlp.{x}.weight", [p]) for x, p in zip(("gate", "up"), gate_up,
                                                                      strict=True))
        yield f"{dst}mlp.down.weight", [f"{src}{names.down}.weight"]
        yield f"{dst}norm1.weight", [f"{src}{names.norm1}.weight"]
        yield f"{dst}norm2.weight", [f"{src}{names.norm2}.weight"]


def renamed(weights: Mapping[str, torch.Tensor], cfg: ModelConfig, names: Names
            ) -> Iterator[tuple[str, torch.Tensor]]:
    """A state dict's tensors under dlm's names, one at a time (the loader of large
    checkpoints copies `sources` piece by piece instead)."""
    for name, parts in sources(cfg, names):
        yield name, torch.cat([weights[p] for p in parts])


def part_sizes(cfg: ModelConfig, name: str) -> list[int]:
    """The first-dimension sizes of the parts a fused tensor of dlm's is made of."""
    if ".attn.qkv." in name:
        return [cfg.n_heads * cfg.head_width, cfg.kv_heads * cfg.head_width,
                cfg.kv_heads * cfg.head_width]
    return [cfg.d_ff, cfg.d_ff]  # mlp.gate_up


def unfused(state: Mapping[str, torch.Tensor], cfg: ModelConfig, names: Names
            ) -> dict[str, torch.Tensor]:
    """dlm's tensors under a layout's names, fused ones split (the inverse of `renamed`)."""
    out = {}
    for name, parts in sources(cfg, names):
        tensor = state[name]
        if len(parts) == 1:
            out[parts[0]] = tensor.contiguous()
            continue
        for part, piece in zip(parts, tensor.split(part_sizes(cfg, name)), strict=True):
            out[part] = piece.contiguous()
    return out
