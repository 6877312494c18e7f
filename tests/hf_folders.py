"""Tiny random checkpoint folders of the field's layouts, written as their publishers write
them: `transformers`' own classes and `save_pretrained` (Llama, Qwen2, Qwen3, and Qwen2's
weights as Dream), LLaDA's config keys and weight names for LLaDA, and one fast tokenizer
with special tokens and a chat template. No hub, no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# A chat template in the ChatML manner, written for these tests.
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
WORDS = ("hello how are you i am fine thanks what is your name tell me a joke today the "
         "weather good morning sad happy where do we go now yes no maybe later").split()
VOCAB = 320  # the model's rows: more than the tokenizer's, as published checkpoints pad


def tokenizer():
    """A byte-level BPE trained here on made-up sentences, as a `transformers` fast
    tokenizer with eos, pad, mask and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (12,), generator=gen))
             for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", mask_token="<|mask|>",
                                   chat_template=TEMPLATE)


SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def causal_model(kind: str):
    """A tiny random `transformers` model of `kind` (llama, qwen2, qwen3), biases and
    norms made to count."""
    import transformers

    torch.manual_seed(0)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **SHAPE, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False))
    elif kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
            **SHAPE, rms_norm_eps=1e-6, tie_word_embeddings=True))
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            **SHAPE, head_dim=32, rms_norm_eps=1e-6, tie_word_embeddings=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def rope_theta(config) -> float:
    """The rotary base, where transformers 4 (`rope_theta`) or 5 (`rope_parameters`) keeps it."""
    return float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"])


def llada_weights(model) -> tuple[dict, dict]:
    """A Llama model's config and weights written as a LLaDA checkpoint holds them."""
    c, w = model.config, model.state_dict()
    config = {"model_type": "llada", "architectures": ["LLaDAModelLM"],
              "d_model": c.hidden_size, "n_heads": c.num_attention_heads,
              "n_kv_heads": c.num_key_value_heads, "n_layers": c.num_hidden_layers,
              "mlp_hidden_size": c.intermediate_size, "vocab_size": c.vocab_size,
              "embedding_size": c.vocab_size, "max_sequence_length": c.max_position_embeddings,
              "rope_theta": rope_theta(c), "rms_norm_eps": c.rms_norm_eps, "weight_tying": False,
              "block_type": "llama", "include_bias": False, "include_qkv_bias": False}
    root = "model.transformer."
    weights = {f"{root}wte.weight": w["model.embed_tokens.weight"],
               f"{root}ln_f.weight": w["model.norm.weight"],
               f"{root}ff_out.weight": w["lm_head.weight"]}
    names = {"self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj",
             "self_attn.v_proj": "v_proj", "self_attn.o_proj": "attn_out",
             "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj", "mlp.down_proj": "ff_out",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ff_norm"}
    for i in range(c.num_hidden_layers):
        for theirs, llada in names.items():
            weights[f"{root}blocks.{i}.{llada}.weight"] = w[f"model.layers.{i}.{theirs}.weight"]
    return config, weights


def write_folder(folder: Path, kind: str, **save) -> tuple[Path, object]:
    """A checkpoint folder of `kind` (llama, qwen2, qwen3, llada, dream) and the
    `transformers` model of the same math (Llama for LLaDA, Qwen2 for Dream)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    mask = tok.mask_token_id
    if kind == "llada":
        model = causal_model("llama")
        config, weights = llada_weights(model)
        config.update(mask_token_id=mask, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in weights.items()},
                  str(folder / "model.safetensors"), metadata={"format": "pt"})
        # its remote code ships beside the weights; dlm must never run it
        (folder / "modeling_llada.py").write_text(
            "from pathlib import Path\nPath(__file__).with_name('RAN').write_text('ran')\n")
    else:
        model = causal_model("qwen2" if kind == "dream" else kind)
        model.config.eos_token_id = tok.eos_token_id
        model.config.pad_token_id = tok.pad_token_id
        model.save_pretrained(str(folder), **save)
        if kind == "dream":
            config = json.loads((folder / "config.json").read_text())
            config.update(model_type="Dream", architectures=["DreamModel"],
                          mask_token_id=mask, auto_map={"AutoModel": "modeling_dream.DreamModel"})
            (folder / "config.json").write_text(json.dumps(config, indent=2))
    tok.save_pretrained(str(folder))
    return folder, model


def write_diffusion_gemma(folder: Path, canvas: int = 8):
    """A tiny random `DiffusionGemmaForBlockDiffusion` (transformers' own class: two text
    layers, four experts, a one-layer vision tower) saved with the test tokenizer."""
    import transformers

    tok = tokenizer()
    torch.manual_seed(0)
    text = transformers.DiffusionGemmaTextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"], num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, global_head_dim=32, num_global_key_value_heads=1,
        num_experts=4, top_k_experts=2, moe_intermediate_size=32, max_position_embeddings=1024,
        sliding_window=64, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.pad_token_id)
    vision = transformers.Gemma4VisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, patch_size=4, position_embedding_size=64)
    config = transformers.DiffusionGemmaConfig(
        text_config=text, vision_config=vision, canvas_length=canvas, image_token_id=510,
        boi_token_id=509, eoi_token_id=511)
    model = transformers.DiffusionGemmaForBlockDiffusion(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder, model
