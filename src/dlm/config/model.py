"""The Transformer's shape (`ModelConfig`) and the named presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlm.errors import ConfigError


@dataclass
class ModelConfig:
    """Shape of the Transformer denoiser (also the autoregressive baseline when `causal`)."""

    vocab_size: int
    """Number of token ids, special tokens included: the tokenizer's, so no default (the
    target size of a tokenizer being trained is `TrainConfig.vocab_size`)."""
    d_model: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Number of Transformer blocks."""
    n_heads: int = 4
    """Attention heads; `d_model` must be divisible by it."""
    d_ff: int = 352
    """Hidden width of the SwiGLU MLP."""
    max_seq_len: int = 256
    """Longest sequence the rotary tables are built for."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding."""
    causal: bool = False
    """True turns the denoiser into the autoregressive baseline (causal attention)."""
    dropout: float = 0.0
    """Dropout on attention and MLP outputs."""
    shift: bool = False
    """The logits at position i predict token i + 1, as in AR (a diffusion model adapted
    from an AR checkpoint keeps its head's meaning): a masked position j reads the
    logits at j - 1."""
    length_classes: int = 0
    """A length head: predicts the reply's token length (1..length_classes) from the
    prompt (0 = none)."""
    time_conditioning: bool = False
    """adaLN: every block's norms are shifted, scaled and gated by an embedding of the
    noise level (SEDD's and MDLM's DiT). Set by objectives whose input does not tell the
    noise level (score entropy, Gaussian diffusion); masked diffusion stays time-free."""
    # ---- the layouts of imported checkpoints (Llama, Qwen2/3, LLaDA, Dream); dlm's own
    # presets keep the defaults
    n_kv_heads: int = 0
    """Key/value heads (grouped-query attention: each serves n_heads / n_kv_heads query
    heads); 0 = n_heads."""
    head_dim: int = 0
    """Width of one head; 0 = d_model / n_heads (Qwen3 sets its own)."""
    fused_projections: bool = True
    """q/k/v as one matmul and gate/up as one (fast); False: separate layers as the
    checkpoints of the field keep them (and as LoRA targets name them)."""
    qkv_bias: bool = False
    """Biases on the query, key and value projections (Qwen2, Dream)."""
    qk_norm: bool = False
    """RMSNorm on each head's queries and keys before the rotary embedding (Qwen3)."""
    tie_embeddings: bool = True
    """The output head reuses the input embedding; False: a head of its own."""
    norm_eps: float | None = None
    """RMSNorm's epsilon; None: torch's default (the machine epsilon of the dtype)."""
    rope_scaling: dict[str, Any] | None = None
    """Llama 3's rotary frequency scaling ({"rope_type": "llama3", "factor",
    "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}); None:
    plain RoPE."""

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_width(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    def __post_init__(self) -> None:
        if not self.head_dim and self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.head_width % 2:
            raise ConfigError("head dimension must be even for rotary embeddings")
        if self.n_heads % self.kv_heads:
            raise ConfigError(f"n_heads={self.n_heads} is not a multiple of "
                              f"n_kv_heads={self.n_kv_heads}")
        scaling = self.rope_scaling
        if scaling is not None and scaling.get("rope_type", scaling.get("type")) not in (
                "llama3", "default"):
            raise ConfigError(f"rope_scaling {scaling!r}: dlm knows llama3 (and default)",
                              "rope_scaling")


# Named sizes. Parameter counts (printed by `dlm train --dry-run`) depend on the
# vocabulary; the figures below are for the default vocabularies.
PRESETS: dict[str, dict[str, Any]] = {
    # ~1.2M parameters with a 2k vocabulary: the CPU demo.
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, d_ff=352, max_seq_len=256),
    # ~25M parameters (+ embeddings): a real small model.
    "small": dict(d_model=512, n_layers=8, n_heads=8, d_ff=1376, max_seq_len=512),
    # ~110M parameters with a 32k vocabulary: the MDLM / GPT-2 small size.
    "base": dict(d_model=768, n_layers=12, n_heads=12, d_ff=2048, max_seq_len=1024),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset (`tiny`, `small`, `base`), with overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
