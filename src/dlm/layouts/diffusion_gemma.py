"""DiffusionGemma (google/diffusiongemma-26B-A4B-it; `model_type: diffusion_gemma`) in dlm:
`transformers`' own `DiffusionGemmaForBlockDiffusion`, driven by dlm's sampler.

Its architecture is not dlm's Transformer: a causal prompt encoder that fills a KV cache,
a bidirectional canvas decoder that shares its weights and reads the cache, MoE layers,
and self-conditioning (the previous step's logits fed back into the canvas). So dlm does
not re-implement it; this wrapper gives the class the calls dlm's objective makes of it
(`dlm.objectives.diffusion_gemma`): encode prompt tokens into a cache, and the logits of
one canvas given the cache and the self-conditioning signal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class DiffusionGemmaShape:
    """What dlm reads of a DiffusionGemma model's shape (dlm's `ModelConfig` fields that
    apply, under the same names)."""

    vocab_size: int
    d_model: int
    n_layers: int
    max_seq_len: int
    canvas_length: int
    """Tokens per canvas (its block): a model setting, not a decoding one."""
    causal: bool = False
    shift: bool = False
    length_classes: int = 0
    time_conditioning: bool = False
    tie_embeddings: bool = True
    fused_projections: bool = True


class DiffusionGemmaModel(torch.nn.Module):
    """transformers' DiffusionGemmaForBlockDiffusion with the calls of dlm's sampler."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf.eval()
        text = hf.config.get_text_config(decoder=True)
        self.config = DiffusionGemmaShape(
            vocab_size=text.vocab_size, d_model=text.hidden_size,
            n_layers=text.num_hidden_layers, max_seq_len=text.max_position_embeddings,
            canvas_length=hf.config.canvas_length)
        self.checkpointing = False

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, *args, **kwargs):
        raise ConfigError("a DiffusionGemma checkpoint computes a canvas with its own encoder "
                          "and decoder (dlm's diffusion-gemma objective): this use of the "
                          "model is not one it has", "objective")

    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.hf.config.get_text_config(decoder=True))

    def encode(self, ids: torch.Tensor, cache, start: int) -> None:
        """Append `ids` (1, T), at positions start.., to the prompt cache."""
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)[None]
        self.hf.model.encoder(input_ids=ids, cache=cache, position_ids=positions)

    def canvas_logits(self, canvas: torch.Tensor, cache, self_conditioning, start: int
                      ) -> torch.Tensor:
        """(1, L, V) float32 logits of a canvas at positions start.. (the cache unchanged)."""
        positions = torch.arange(start, start + canvas.shape[1], device=canvas.device)[None]
        return self.hf(decoder_input_ids=canvas, cache=cache,
                       self_conditioning_logits=self_conditioning,
                       decoder_position_ids=positions).logits.float()

    def sampler_settings(self) -> dict[str, Any]:
        """The checkpoint's own decoding constants (its generation config's, else
        transformers' defaults): the entropy bound of the acceptance rule, and when a
        canvas is done (argmax stable for `stability_threshold` steps and mean entropy
        below `confidence_threshold`)."""
        gen = getattr(self.hf, "generation_config", None)

        def get(name, default):
            value = getattr(gen, name, None) if gen is not None else None
            return default if value is None else value

        bound = get("sampler_config", None)
        bound = getattr(bound, "entropy_bound", None) if bound is not None else None
        return {"entropy_bound": 0.1 if bound is None else float(bound),
                "stability_threshold": int(get("stability_threshold", 1)),
                "confidence_threshold": float(get("confidence_threshold", 0.005))}


def load(folder: Path, device: torch.device, dtype: torch.dtype):
    """Model, tokenizer and a dlm meta dict for a DiffusionGemma checkpoint folder."""
    from transformers import DiffusionGemmaForBlockDiffusion

    from dlm.layouts.tokenizer import HFTokenizer

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    try:
        hf = DiffusionGemmaForBlockDiffusion.from_pretrained(str(folder), dtype=dtype)
    except Exception as exc:  # transformers' own reading errors
        raise CheckpointError(f"{folder}: cannot read the DiffusionGemma checkpoint "
                              f"({str(exc).splitlines()[0]})") from None
    model = DiffusionGemmaModel(hf).to(device)
    text = config.get("text_config", {})
    tokenizer = HFTokenizer.load_folder(folder, {**text, **config})
    if tokenizer.mask_id is None:  # no mask in its noise (uniform): a position not yet
        tokenizer.mask_id = tokenizer.pad_id  # accepted is shown as one in dlm's traces
    canvas = model.config.canvas_length
    meta = {"objective": "diffusion-gemma",
            "imported": {"layout": "DiffusionGemma", "model_type": config["model_type"],
                         "folder": str(folder)},
            "train": {"objective": "diffusion-gemma", "response_len": canvas,
                      "prompt_len": model.config.max_seq_len - canvas}}
    return model.eval(), tokenizer, meta
