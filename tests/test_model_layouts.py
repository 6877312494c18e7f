"""dlm's Transformer covers the layouts of the field's checkpoints (issue 33, item 1):
grouped-query attention, q/k/v biases, per-head q/k norms, an untied head, the norm's
eps, Llama 3's rotary scaling and head widths of their own. Each tiny random model is
built with `transformers`' own class, its weights copied into dlm's Transformer under
dlm's names, and the logits compared in float32."""

from __future__ import annotations

import pytest
import torch

from dlm.config import ModelConfig
from dlm.errors import ConfigError
from dlm.layouts import model_config, rename_weights
from dlm.model import Transformer
from tests.hf_folders import llada_weights

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

SHAPE = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64)


def reference(kind: str, **extra):
    """A tiny random `transformers` causal LM of `kind`, in eval mode."""
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**SHAPE, num_key_value_heads=2, rms_norm_eps=1e-5,
                                       rope_theta=500000.0, tie_word_embeddings=False,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                     "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 16},
                                       **extra)
        model = transformers.LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        cfg = transformers.Qwen2Config(**SHAPE, num_key_value_heads=2, rms_norm_eps=1e-6,
                                       rope_theta=1000000.0, tie_word_embeddings=True, **extra)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.Qwen3Config(**SHAPE, num_key_value_heads=1, head_dim=32,
                                       rms_norm_eps=1e-6, tie_word_embeddings=False, **extra)
        model = transformers.Qwen3ForCausalLM(cfg)
    with torch.no_grad():  # biases start at zero: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def as_dlm(model, causal: bool = True) -> Transformer:
    """The same weights in dlm's Transformer, read by `dlm.layouts` from the config as
    `config.json` holds it and the state dict under the checkpoint's names."""
    cfg = model_config(model.config.to_dict(), causal)
    ours = Transformer(cfg)
    ours.load_state_dict(dict(rename_weights(model.state_dict(), cfg)), strict=True)
    return ours.eval()


def test_a_layout_dlm_does_not_read_is_named():
    with pytest.raises(ConfigError, match="model_type 'gpt2'.*known: llama, qwen2, qwen3"):
        model_config({"model_type": "gpt2"})
    llama = reference("llama").config.to_dict()
    with pytest.raises(ConfigError, match="biases"):
        model_config({**llama, "attention_bias": True})


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_causal_logits_equal_transformers(kind):
    model = reference(kind)
    ours = as_dlm(model)
    ids = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids).logits
        got = ours(ids)
    assert (got - want).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_bidirectional_logits_equal_transformers_with_a_full_mask(kind):
    """LLaDA is Llama's math without the causal mask, Dream Qwen2's: `transformers` run
    with a full 4-D mask against dlm's bidirectional model."""
    model = reference(kind)
    ours = as_dlm(model, causal=False)
    ids = torch.randint(0, 101, (2, 24), generator=torch.Generator().manual_seed(2))
    full = torch.zeros(2, 1, 24, 24)  # additive: every query sees every key
    with torch.no_grad():
        want = model(ids, attention_mask=full).logits
        got = ours(ids)
    assert (got - want).abs().max() < 1e-4
    with torch.no_grad():  # the check can fail: the causal reading differs
        assert (model(ids).logits - got).abs().max() > 1e-3


def test_cached_grouped_query_decoding_equals_the_whole_pass():
    model = reference("llama")
    ours = as_dlm(model)
    ids = torch.randint(0, 101, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = ours(ids)
        cache = ours.new_cache(1, 12)
        steps = torch.cat([ours(ids[:, :6], cache=cache)] +
                          [ours(ids[:, i:i + 1], cache=cache) for i in range(6, 12)], dim=1)
    assert (whole - steps).abs().max() < 1e-4


def test_dlm_presets_keep_their_shape_and_names():
    model = Transformer(ModelConfig(vocab_size=64))
    names = set(model.state_dict())
    assert "head.weight" not in names and "blocks.0.attn.qkv.bias" not in names
    assert model.blocks[0].attn.qkv.weight.shape == (3 * 128, 128)


def test_the_llada_layout_equals_llama_under_a_full_mask():
    """LLaDA's math is Llama's without the causal mask: a Llama model's weights written
    under LLaDA's names, read by `dlm.layouts.llada`, against `transformers`' Llama run
    with a full 4-D mask."""
    from dlm.layouts import llada

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **SHAPE, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=False)).eval()
    config, weights = llada_weights(model)
    cfg = llada.model_config(config)
    ours = Transformer(cfg)
    ours.load_state_dict(dict(llada.rename_weights(weights, cfg)), strict=True)
    ids = torch.randint(0, 101, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = model(ids, attention_mask=torch.zeros(2, 1, 24, 24)).logits
        got = ours.eval()(ids)
    assert not cfg.causal and (got - want).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="non-llama block"):
        llada.model_config({**config, "block_type": "sequential"})


def test_the_dream_layout_is_qwen2_bidirectional_and_shifted():
    """Dream keeps Qwen2's names: its config read by `dlm.layouts.dream` gives the same
    logits as `transformers`' Qwen2 under a full 4-D mask, and the shift (position i
    predicts i + 1) that dlm's samplers then apply."""
    from dlm.diffusion.shift import Shifted, as_denoiser
    from dlm.layouts import dream

    model = reference("qwen2")
    cfg = dream.model_config({**model.config.to_dict(), "model_type": "Dream"})
    ours = Transformer(cfg)
    ours.load_state_dict(dict(dream.rename_weights(model.state_dict(), cfg)), strict=True)
    ids = torch.randint(0, 101, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model(ids, attention_mask=torch.zeros(2, 1, 24, 24)).logits
        got = ours.eval()(ids)
    assert not cfg.causal and cfg.shift and cfg.qkv_bias
    assert (got - want).abs().max() < 1e-4
    assert isinstance(as_denoiser(ours), Shifted)


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_separate_projections_compute_what_fused_ones_do(kind):
    """`fused_projections=False` keeps q, k, v (with their biases) and gate, up as the
    checkpoints do: the same logits, and the separate weights under their own names."""
    import dataclasses

    model = reference(kind)
    cfg = dataclasses.replace(model_config(model.config.to_dict()), fused_projections=False)
    ours = Transformer(cfg)
    ours.load_state_dict(dict(rename_weights(model.state_dict(), cfg)), strict=True)
    names = set(ours.state_dict())
    assert "blocks.0.attn.q.weight" in names and "blocks.0.mlp.gate.weight" in names
    assert not any("qkv" in n or "gate_up" in n for n in names)
    ids = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours.eval()(ids) - model(ids).logits).abs().max() < 1e-4
