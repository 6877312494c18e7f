"""The Llama family's layout (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`):
pre-norm blocks with RoPE, RMSNorm and SwiGLU, which dlm's `Transformer` spells with
`ModelConfig`'s layout fields (grouped-query heads, q/k/v biases for Qwen2, per-head q/k
norms for Qwen3, an untied head, Llama 3's rotary scaling)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from dlm.config import ModelConfig
from dlm.errors import ConfigError

KNOWN = ("llama", "qwen2", "qwen3")
"""The `model_type`s read here."""


def rope_settings(hf: Mapping[str, Any]) -> tuple[float, dict | None]:
    """The rotary base and scaling, from `rope_theta` / `rope_scaling` (published
    checkpoints) or `rope_parameters` (what transformers 5 writes)."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = hf.get("rope_theta") or params.pop("rope_theta", None) or 10000.0
    params.pop("rope_theta", None)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind != "llama3":
        raise ConfigError(f"rope scaling {kind!r}: dlm reads llama3 scaling only",
                          "rope_scaling")
    return float(theta), params


def model_config(hf: Mapping[str, Any], causal: bool = True) -> ModelConfig:
    """dlm's ModelConfig for a checkpoint's `config.json` (as a dict); `causal`: read as
    the AR model it was trained as, or False for a bidirectional (diffusion) reading."""
    kind = hf.get("model_type")
    if kind not in KNOWN:
        raise ConfigError(f"model_type {kind!r} is not a layout dlm reads here; known: "
                          f"{', '.join(KNOWN)}", "model_type")
    if kind != "qwen2" and (hf.get("attention_bias") or hf.get("mlp_bias")):
        raise ConfigError(f"a {kind} checkpoint with attention or MLP biases (beyond q/k/v) "
                          "is not a layout dlm reads", "attention_bias")
    theta, scaling = rope_settings(hf)
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or 0
    return ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"], n_heads=heads, d_ff=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048), rope_theta=theta,
        causal=causal, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=0 if head_dim * heads == hf["hidden_size"] else head_dim,
        qkv_bias=kind == "qwen2",
        qk_norm=kind == "qwen3", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        norm_eps=hf.get("rms_norm_eps", 1e-6), rope_scaling=scaling)


def rename_weights(weights: Mapping[str, torch.Tensor], cfg: ModelConfig
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors under dlm's names, one at a time (q, k and v concatenated
    into `qkv`, gate and up into `gate_up`), so a loader can place each and let it go."""
    yield "embed.weight", weights["model.embed_tokens.weight"]
    yield "norm.weight", weights["model.norm.weight"]
    if not cfg.tie_embeddings:
        yield "head.weight", weights["lm_head.weight"]
    for i in range(cfg.n_layers):
        src, dst = f"model.layers.{i}.", f"blocks.{i}."
        yield f"{dst}attn.qkv.weight", torch.cat(
            [weights[f"{src}self_attn.{p}_proj.weight"] for p in "qkv"])
        if cfg.qkv_bias:
            yield f"{dst}attn.qkv.bias", torch.cat(
                [weights[f"{src}self_attn.{p}_proj.bias"] for p in "qkv"])
        yield f"{dst}attn.proj.weight", weights[f"{src}self_attn.o_proj.weight"]
        if cfg.qk_norm:
            yield f"{dst}attn.q_norm.weight", weights[f"{src}self_attn.q_norm.weight"]
            yield f"{dst}attn.k_norm.weight", weights[f"{src}self_attn.k_norm.weight"]
        yield f"{dst}mlp.gate_up.weight", torch.cat(
            [weights[f"{src}mlp.gate_proj.weight"], weights[f"{src}mlp.up_proj.weight"]])
        yield f"{dst}mlp.down.weight", weights[f"{src}mlp.down_proj.weight"]
        yield f"{dst}norm1.weight", weights[f"{src}input_layernorm.weight"]
        yield f"{dst}norm2.weight", weights[f"{src}post_attention_layernorm.weight"]
