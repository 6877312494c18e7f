"""LLaDA's layout (GSAI-ML/LLaDA-8B-Base, -Instruct, LLaDA-1.5; `model_type: llada`): a
Llama block without the causal mask, under OLMo-style names (`model.transformer.blocks.N.
q_proj`, `attn_out`, `ff_proj` (the gate), `up_proj`, `ff_out`, `attn_norm`, `ff_norm`;
`wte`, `ln_f` and an untied `ff_out` head). Read from the published config and weight
names; its remote code never runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from dlm.config import ModelConfig
from dlm.errors import ConfigError
from dlm.layouts.names import Names, renamed


def model_config(hf: Mapping[str, Any]) -> ModelConfig:
    """dlm's ModelConfig for a LLaDA `config.json` (as a dict): bidirectional, untied
    unless `weight_tying`, with the padded embedding size as the vocabulary."""
    if hf.get("include_bias") or hf.get("block_type", "llama") != "llama":
        raise ConfigError("a LLaDA checkpoint with biases or a non-llama block is not a "
                          "layout dlm reads", "block_type")
    heads = hf["n_heads"]
    return ModelConfig(
        vocab_size=hf.get("embedding_size") or hf["vocab_size"], d_model=hf["d_model"],
        n_layers=hf["n_layers"], n_heads=heads, d_ff=hf["mlp_hidden_size"],
        max_seq_len=hf.get("max_sequence_length", 4096),
        rope_theta=float(hf.get("rope_theta", 10000.0)), causal=False,
        n_kv_heads=hf.get("n_kv_heads") or heads, qkv_bias=bool(hf.get("include_qkv_bias")),
        tie_embeddings=bool(hf.get("weight_tying", False)),
        norm_eps=hf.get("rms_norm_eps", 1e-5))


NAMES = Names(embed="model.transformer.wte", final_norm="model.transformer.ln_f",
              head="model.transformer.ff_out", layer="model.transformer.blocks.{i}.",
              q="q_proj", k="k_proj", v="v_proj", out="attn_out", gate="ff_proj",
              up="up_proj", down="ff_out", norm1="attn_norm", norm2="ff_norm")


def rename_weights(weights: Mapping[str, torch.Tensor], cfg: ModelConfig
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors under dlm's names, one at a time."""
    return renamed(weights, cfg, NAMES)
