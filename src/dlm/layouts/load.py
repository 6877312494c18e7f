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
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.config import ModelConfig
from dlm.errors import CheckpointError, ConfigError, first_line
from dlm.layouts import dream, llada, llama
from dlm.layouts.names import sources
from dlm.layouts.tokenizer import HFTokenizer
from dlm.model import Transformer, rotary_tables


@dataclass(frozen=True)
class Layout:
    """How dlm reads one `model_type`."""

    name: str
    objective: str
    """dlm's objective the checkpoint was trained with: ar or diffusion."""
    read: Callable[[Mapping[str, Any]], ModelConfig]
    """config.json (as a dict) -> dlm's ModelConfig."""
    names: Any
    """Where the checkpoint keeps each weight (`dlm.layouts.names.Names`)."""


LAYOUTS = {
    "llada": Layout("LLaDA", "diffusion", llada.model_config, llada.NAMES),
    "dream": Layout("Dream", "diffusion", dream.model_config, dream.NAMES),
    **{kind: Layout(kind, "ar", llama.model_config, llama.NAMES) for kind in llama.KNOWN},
}
"""`model_type` (lowercased) -> layout."""
IGNORED = ("rotary_emb.inv_freq",)
"""Tensors some checkpoints carry that dlm recomputes."""


def is_imported(meta: Mapping[str, Any]) -> bool:
    """A config.json of the field's (a `model_type`), not one dlm wrote."""
    return isinstance(meta, Mapping) and "model_type" in meta and "format_version" not in meta


def layout_of(hf: Mapping[str, Any], where: Path) -> Layout:
    kind = str(hf.get("model_type", ""))
    if kind.lower() not in LAYOUTS:
        known = ", ".join(sorted({layout.name for layout in LAYOUTS.values()}
                                 | {"DiffusionGemma"}))
        raise CheckpointError(f"{where}: model_type {kind!r} is not a layout dlm reads; "
                              f"known: {known}")
    return LAYOUTS[kind.lower()]


class ShardedWeights(Mapping[str, torch.Tensor]):
    """A checkpoint's tensors by name, read lazily from its safetensors shards: one shard
    open at a time, and a tensor read whole (`[name]`) or a band of its rows (`rows`)."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            self.files = {name: folder / shard for name, shard in weight_map.items()}
        elif (folder / "model.safetensors").is_file():
            single = folder / "model.safetensors"
            self.files = {name: single for name in self._open(single).keys()}  # noqa: SIM118
        else:
            raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors."
                                  "index.json (dlm reads safetensors weights only, never "
                                  "pickled .bin files)")
        self.read: set[str] = set()

    def _open(self, file: Path):
        from safetensors import safe_open

        if getattr(self, "open_file", None) != file:  # one shard open at a time
            self.handle = None
            try:
                self.handle = safe_open(str(file), framework="pt")
            except Exception as exc:
                raise CheckpointError(f"{file}: cannot read the weights ({first_line(exc)})"
                                      ) from None
            self.open_file = file
        return self.handle

    def _slice(self, name: str):
        if name not in self.files:
            raise KeyError(name)
        self.read.add(name)
        return self._open(self.files[name]).get_slice(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._slice(name).get_shape())

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self._slice(name)[start:stop]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._slice(name)[:]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


CHUNK_BYTES = 64 << 20
"""Most bytes read from a shard at once: the loader's memory above the model's own."""


def empty_model(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> Transformer:
    """The Transformer with storage for its weights in `dtype` on `device`, uninitialised
    (every weight is then copied in), and its rotary tables computed."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to(dtype).to_empty(device=device)
    cos, sin = rotary_tables(cfg.head_width, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
    model.rope_cos, model.rope_sin = cos.to(device, dtype), sin.to(device, dtype)
    return model


def fill(model: Transformer, pieces: Iterator[tuple[str, list[str]]],
         weights: ShardedWeights, where: Path) -> None:
    """Copy each of dlm's tensors in from the checkpoint tensors it is made of (`pieces`:
    dlm name -> their names, concatenated along the first dimension), a band of rows at a
    time, converting the dtype on the way; every weight of the model must be given once."""
    params = dict(model.named_parameters())
    missing = set(params)
    for name, parts in pieces:
        try:
            shapes = [weights.shape(part) for part in parts]
        except KeyError as exc:
            raise CheckpointError(f"{where}: the weights lack {exc.args[0]} (config.json "
                                  "promises it)") from None
        target = params.get(name)
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        if target is None or tuple(target.shape) != shape or len({s[1:] for s in shapes}) > 1:
            want = None if target is None else tuple(target.shape)
            raise CheckpointError(f"{where}: {', '.join(parts)}: shapes {shapes} do not make "
                                  f"the {want} that config.json gives {name}")
        at = 0
        with torch.no_grad():
            for part, part_shape in zip(parts, shapes, strict=True):
                row_bytes = math.prod(part_shape[1:]) * 4
                band = max(1, CHUNK_BYTES // row_bytes)
                for start in range(0, part_shape[0], band):
                    stop = min(part_shape[0], start + band)
                    target[at + start:at + stop].copy_(weights.rows(part, start, stop))
                at += part_shape[0]
        missing.discard(name)
    if missing:
        raise CheckpointError(f"{where}: no weights for {sorted(missing)[:3]}")


def import_folder(folder: str | Path, device: torch.device, dtype: torch.dtype,
                  ) -> tuple[Transformer, HFTokenizer, dict[str, Any]]:
    """Model, tokenizer and a dlm meta dict for a checkpoint folder of the field."""
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if hf.get("model_type") == "diffusion_gemma":  # transformers' own class, driven by dlm
        from dlm.layouts import diffusion_gemma

        return diffusion_gemma.load(folder, device, dtype)
    layout = layout_of(hf, folder)
    try:
        cfg = layout.read(hf)
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
    if not cfg.causal:  # a bidirectional reading denoises masks
        tokenizer.need_mask()
    weights = ShardedWeights(folder)
    model = empty_model(cfg, device, dtype)
    fill(model, sources(cfg, layout.names), weights, folder)
    unread = [n for n in weights if n not in weights.read and not n.endswith(IGNORED)]
    if unread:
        raise CheckpointError(f"{folder}: weights dlm's {layout.name} layout does not read: "
                              f"{', '.join(unread[:3])}{' ...' if len(unread) > 3 else ''}")
    response = min(128, cfg.max_seq_len // 4)
    meta = {"model": asdict(cfg), "objective": layout.objective,
            "imported": {"layout": layout.name, "model_type": hf["model_type"],
                         "folder": str(folder)},
            "train": {"objective": layout.objective, "prompt_len": cfg.max_seq_len - response,
                      "response_len": response, "diffusion": {"padding": "eos"}}}
    return model.eval(), tokenizer, meta
