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
from dlm.layouts.names import Names, renamed

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


NAMES = Names(embed="model.embed_tokens", final_norm="model.norm", head="lm_head",
              layer="model.layers.{i}.", q="self_attn.q_proj", k="self_attn.k_proj",
              v="self_attn.v_proj", out="self_attn.o_proj", gate="mlp.gate_proj",
              up="mlp.up_proj", down="mlp.down_proj", norm1="input_layernorm",
              norm2="post_attention_layernorm", q_norm="self_attn.q_norm",
              k_norm="self_attn.k_norm")


def rename_weights(weights: Mapping[str, torch.Tensor], cfg: ModelConfig
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors under dlm's names, one at a time."""
    return renamed(weights, cfg, NAMES)
