"""`dlm export`: a dlm checkpoint written in a layout of the field, so code that is not
dlm's reads it.

- An AR checkpoint becomes `LlamaForCausalLM` (`Qwen2ForCausalLM` with q/k/v biases,
  `Qwen3ForCausalLM` with q/k norms), built and saved by `transformers` itself, so it
  loads there with no dlm installed.
- A masked-diffusion checkpoint becomes LLaDA's layout (its config keys, OLMo-style
  weight names); a shifted one (adapted from AR) Dream's (Qwen2's names and config,
  `model_type: Dream`). Their own code reads those layouts; so does `DiffusionLM.load`.
- The tokenizer goes with it: `tokenizer.json`, and `tokenizer_config.json` with the
  special tokens and a chat template that renders dlm's chat format, so
  `apply_chat_template` gives the ids dlm's own template gives.

Objectives with no such layout (SEDD, uniform, continuous, block, dual) are refused in
one line, as is time conditioning; a length head, which no layout has and which does not
enter the logits, is left out (`export` says so).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dlm.config import ModelConfig
from dlm.errors import ConfigError
from dlm.layouts import llada, llama
from dlm.layouts.names import unfused
from dlm.tokenizer import ASSISTANT, BOS, EOS, MASK, PAD, USER

# dlm's chat format as a template: each turn's text follows a space (dlm encodes every
# text with one leading space), an assistant turn ends with eos, and the generation
# prompt is the assistant marker.
CHAT_TEMPLATE = (BOS + "{% for m in messages %}{% if m['role'] == 'assistant' %}" + ASSISTANT
                 + " {{ m['content'] }}" + EOS + "{% else %}" + USER + " {{ m['content'] }}"
                 "{% endif %}{% endfor %}{% if add_generation_prompt %}" + ASSISTANT
                 + "{% endif %}")


def norm_eps(cfg: ModelConfig) -> float:
    """RMSNorm's epsilon as dlm runs it (None: float32's machine epsilon)."""
    return cfg.norm_eps if cfg.norm_eps is not None else float(torch.finfo(torch.float32).eps)


def float_state(lm) -> dict[str, torch.Tensor]:
    """The weights in float32, without the length head (no layout has one: the export
    keeps every weight that computes the logits)."""
    return {k: v.float() for k, v in lm.model.state_dict().items()
            if not k.startswith("length_head.")}


def refuse(lm) -> str:
    """The layout `lm` is written in, or a one-line refusal."""
    cfg, objective = lm.model.config, lm.objective
    if objective.export_layout is None:
        raise ConfigError(f"a {objective.name} checkpoint has no layout in the field's "
                          "model families (dlm export writes AR models as Llama and masked "
                          "diffusion as LLaDA or Dream)", "objective")
    if cfg.time_conditioning:
        raise ConfigError("a time-conditioned checkpoint has parts no exported layout "
                          "holds", "model")
    return objective.export_layout


def hf_causal(cfg: ModelConfig, tok, causal_kind: str):
    """transformers' config and class for a causal (or Dream's Qwen2) layout."""
    import transformers

    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                  intermediate_size=cfg.d_ff, num_hidden_layers=cfg.n_layers,
                  num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
                  max_position_embeddings=cfg.max_seq_len, rms_norm_eps=norm_eps(cfg),
                  rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                  bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
                  head_dim=cfg.head_width)
    if cfg.rope_scaling:
        common["rope_scaling"] = dict(cfg.rope_scaling)
    if causal_kind == "qwen3":
        return transformers.Qwen3Config(**common), transformers.Qwen3ForCausalLM
    if causal_kind == "qwen2":
        return transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM
    return (transformers.LlamaConfig(**common, attention_bias=False, mlp_bias=False),
            transformers.LlamaForCausalLM)


def write_transformers(lm, out: Path, kind: str) -> None:
    """Build the `transformers` model of `kind` from dlm's weights and save it."""
    cfg = lm.model.config
    config, cls = hf_causal(cfg, lm.tokenizer, kind)
    model = cls(config)
    weights = unfused(float_state(lm), cfg, llama.NAMES)
    if kind == "qwen2" and not cfg.qkv_bias:  # Qwen2 always has q/k/v biases: zero here
        for i in range(cfg.n_layers):
            for part, width in zip("qkv", (cfg.n_heads * cfg.head_width,
                                           cfg.kv_heads * cfg.head_width,
                                           cfg.kv_heads * cfg.head_width), strict=True):
                weights[f"model.layers.{i}.self_attn.{part}_proj.bias"] = torch.zeros(width)
    if cfg.tie_embeddings:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if [m for m in missing if "rotary" not in m] or unexpected:
        raise ConfigError(f"the {kind} layout does not hold this model: missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]}", "model")
    model.save_pretrained(str(out))


def write_llada(lm, out: Path) -> None:
    """LLaDA's config keys and weight names (as its published checkpoints hold them)."""
    from safetensors.torch import save_file

    cfg, tok = lm.model.config, lm.tokenizer
    config = {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
        "alibi": False, "attention_dropout": 0.0, "attention_layer_norm": False,
        "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama",
        "d_model": cfg.d_model, "embedding_dropout": 0.0, "embedding_size": cfg.vocab_size,
        "eos_token_id": tok.eos_id, "flash_attention": False, "include_bias": False,
        "include_qkv_bias": cfg.qkv_bias, "input_emb_norm": False,
        "layer_norm_type": "rms", "layer_norm_with_affine": True,
        "mask_token_id": tok.mask_id, "max_sequence_length": cfg.max_seq_len,
        "mlp_hidden_size": cfg.d_ff, "mlp_ratio": cfg.d_ff / cfg.d_model,
        "multi_query_attention": None, "n_heads": cfg.n_heads, "n_kv_heads": cfg.kv_heads,
        "n_layers": cfg.n_layers, "pad_token_id": tok.pad_id, "residual_dropout": 0.0,
        "rms_norm_eps": norm_eps(cfg), "rope": True, "rope_full_precision": True,
        "rope_theta": cfg.rope_theta, "scale_logits": False, "use_cache": False,
        "vocab_size": cfg.vocab_size, "weight_tying": cfg.tie_embeddings,
    }
    if cfg.head_dim or cfg.qk_norm or cfg.rope_scaling:
        raise ConfigError("LLaDA's layout has no heads of their own width, q/k norms or "
                          "rotary scaling", "model")
    weights = unfused(float_state(lm), cfg, llada.NAMES)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})


def write_tokenizer(lm, out: Path) -> None:
    """dlm's tokenizer as a `transformers` fast tokenizer with its chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from dlm.layouts.tokenizer import HFTokenizer

    tok = lm.tokenizer
    if isinstance(tok, HFTokenizer):  # imported: its own files, as they came
        tok.save(out / "tokenizer.json")
        return
    plain = Tokenizer.from_str(tok.hf.to_str())  # special tokens parsed in templates
    PreTrainedTokenizerFast(tokenizer_object=plain, bos_token=BOS, eos_token=EOS,
                            pad_token=PAD, mask_token=MASK,
                            additional_special_tokens=[USER, ASSISTANT],
                            chat_template=CHAT_TEMPLATE).save_pretrained(str(out))


def export(lm, out: str | Path, merge: bool = False) -> tuple[Path, list[str]]:
    """Write `lm` (a loaded `DiffusionLM`) to the folder `out` in the field's layout its
    objective has (see the module docstring); returns the folder and what was left out.
    A LoRA checkpoint is written with its adapters folded into the weights (`merge`)."""
    from dlm.lora import is_lora, merged

    out = Path(out)
    layout = refuse(lm)
    if is_lora(lm.model):
        if not merge:
            raise ConfigError("a LoRA checkpoint holds adapters on its base: pass --merge "
                              "to fold them into the exported weights", "merge")
        lm.model = merged(lm.model)
    cfg = lm.model.config
    notes = (["the length head (no layout has one; it does not enter the logits)"]
             if cfg.length_classes else [])
    out.mkdir(parents=True, exist_ok=True)
    if layout == "causal":
        kind = "qwen3" if cfg.qk_norm else "qwen2" if cfg.qkv_bias else "llama"
        write_transformers(lm, out, kind)
    elif cfg.shift:  # AR-adapted: Dream's layout
        if cfg.qk_norm or cfg.rope_scaling:
            raise ConfigError("Dream's layout has no q/k norms or rotary scaling", "model")
        write_transformers(lm, out, "qwen2")
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        config.update(model_type="Dream", architectures=["DreamModel"],
                      mask_token_id=lm.tokenizer.mask_id)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    else:
        write_llada(lm, out)
    write_tokenizer(lm, out)
    return out, notes
