"""Import a checkpoint folder of the field (`config.json` with a `model_type`, safetensors
weights, tokenizer files) into dlm's `Transformer`, at any scale.

The model is built on the meta device in the requested dtype and given storage once; the
safetensors shards are then opened one at a time (`safe_open`, a memory map), and each
tensor is renamed, converted to the dtype and copied into its place, so the anonymous
memory peaks at the weights' bytes plus the largest tensor in flight (never the model
twice). No code from the folder runs: the layout is read from `config.json` alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.config import ModelConfig
from dlm.errors import CheckpointError, ConfigError, first_line
from dlm.layouts import dream, llada, llama
from dlm.layouts.tokenizer import HFTokenizer
from dlm.model import Transformer, rotary_tables


@dataclass(frozen=True)
class Layout:
    """How dlm reads one `model_type`."""

    name: str
    objective: str
    """dlm's objective the checkpoint was trained with: ar or diffusion."""
    module: Any
    """Its `model_config(hf)` and `rename_weights(weights, cfg)`."""


LAYOUTS = {
    "llada": Layout("LLaDA", "diffusion", llada),
    "dream": Layout("Dream", "diffusion", dream),
    **{kind: Layout(kind, "ar", llama) for kind in llama.KNOWN},
}
"""`model_type` (lowercased) -> layout."""
SPECIAL_KEYS = ("mask_token_id", "eos_token_id", "bos_token_id", "pad_token_id")
IGNORED = ("rotary_emb.inv_freq",)
"""Tensors some checkpoints carry that dlm recomputes."""


def is_imported(meta: Mapping[str, Any]) -> bool:
    """A config.json of the field's (a `model_type`), not one dlm wrote."""
    return isinstance(meta, Mapping) and "model_type" in meta and "format_version" not in meta


def layout_of(hf: Mapping[str, Any], where: Path) -> Layout:
    kind = str(hf.get("model_type", ""))
    if kind.lower() not in LAYOUTS:
        known = ", ".join(sorted({layout.name for layout in LAYOUTS.values()}))
        raise CheckpointError(f"{where}: model_type {kind!r} is not a layout dlm reads; "
                              f"known: {known}")
    return LAYOUTS[kind.lower()]


def model_config(hf: Mapping[str, Any], layout: Layout) -> ModelConfig:
    return (layout.module.model_config(hf) if layout.objective == "diffusion"
            else layout.module.model_config(hf, causal=True))


class ShardedWeights(Mapping[str, torch.Tensor]):
    """A checkpoint's tensors by name, read lazily from its safetensors shards: one shard
    open at a time, each tensor read only when asked for."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            self.files = {name: folder / shard for name, shard in weight_map.items()}
        elif (folder / "model.safetensors").is_file():
            from safetensors import safe_open

            single = folder / "model.safetensors"
            with safe_open(str(single), framework="pt") as f:
                self.files = {name: single for name in f.keys()}  # noqa: SIM118
        else:
            raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors."
                                  "index.json (dlm reads safetensors weights only, never "
                                  "pickled .bin files)")
        self.open_file: Path | None = None
        self.handle = None
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self.files:
            raise KeyError(name)
        file = self.files[name]
        if file != self.open_file:  # one shard open at a time
            self.handle = None
            try:
                self.handle = safe_open(str(file), framework="pt")
            except Exception as exc:
                raise CheckpointError(f"{file}: cannot read the weights ({first_line(exc)})"
                                      ) from None
            self.open_file = file
        self.read.add(name)
        return self.handle.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def empty_model(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> Transformer:
    """The Transformer with storage for its weights in `dtype` on `device`, uninitialised
    (every weight is then copied in), and its rotary tables computed."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to(dtype).to_empty(device=device)
    cos, sin = rotary_tables(cfg.head_width, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
    model.rope_cos, model.rope_sin = cos.to(device, dtype), sin.to(device, dtype)
    return model


def fill(model: Transformer, renamed: Iterator[tuple[str, torch.Tensor]], where: Path
         ) -> None:
    """Copy each (dlm name, tensor) into the model, checking shapes; every weight of the
    model must be given once."""
    params = dict(model.named_parameters())
    missing = set(params)
    try:
        for name, tensor in renamed:
            target = params.get(name)
            if target is None or target.shape != tensor.shape:
                shape = None if target is None else tuple(target.shape)
                raise CheckpointError(f"{where}: {name}: shape {tuple(tensor.shape)} does "
                                      f"not match config.json's {shape}")
            with torch.no_grad():
                target.copy_(tensor)
            missing.discard(name)
    except KeyError as exc:
        raise CheckpointError(f"{where}: the weights lack {exc.args[0]} (config.json "
                              "promises it)") from None
    if missing:
        raise CheckpointError(f"{where}: no weights for {sorted(missing)[:3]}")


def import_folder(folder: str | Path, device: torch.device, dtype: torch.dtype,
                  ) -> tuple[Transformer, HFTokenizer, dict[str, Any]]:
    """Model, tokenizer and a dlm meta dict for a checkpoint folder of the field."""
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    layout = layout_of(hf, folder)
    try:
        cfg = model_config(hf, layout)
    except ConfigError as exc:
        raise CheckpointError(f"{folder / 'config.json'}: {exc}") from None
    except KeyError as exc:
        raise CheckpointError(f"{folder / 'config.json'}: no {exc.args[0]!r}, which a "
                              f"{layout.name} config has") from None
    tokenizer = HFTokenizer.load_folder(folder, hf)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but "
                              f"the model only {cfg.vocab_size} rows; the files do not belong "
                              "together")
    if layout.objective == "diffusion":
        tokenizer.need_mask()
    weights = ShardedWeights(folder)
    model = empty_model(cfg, device, dtype)
    fill(model, layout.module.rename_weights(weights, cfg), folder)
    unread = [n for n in weights if n not in weights.read and not n.endswith(IGNORED)]
    if unread:
        raise CheckpointError(f"{folder}: weights dlm's {layout.name} layout does not read: "
                              f"{', '.join(unread[:3])}{' ...' if len(unread) > 3 else ''}")
    response = min(128, cfg.max_seq_len // 4)
    meta = {"model": asdict(cfg), "objective": layout.objective,
            "imported": {"layout": layout.name, "model_type": hf["model_type"],
                         "folder": str(folder),
                         # the special ids the tokenizer files may not hold, kept for a
                         # checkpoint dlm saves from this one
                         "hf": {k: hf[k] for k in SPECIAL_KEYS if k in hf}},
            "train": {"objective": layout.objective, "prompt_len": cfg.max_seq_len - response,
                      "response_len": response, "diffusion": {"padding": "eos"}}}
    return model.eval(), tokenizer, meta
