"""LoRA (Hu et al. 2021) on dlm's Transformer through `peft`: low-rank adapters injected
into the chosen linear layers, the base weights frozen.

A LoRA run's checkpoint holds only what trains (the adapters, and any layer the run added
to the base, such as a length head) with the base's path and a hash of its weight files;
loading it reads the base, checks the hash, and puts the adapters back. `merged` folds
the adapters into plain weights (`dlm export --merge`).

May import config, model and errors; checkpoints build on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlm.errors import CheckpointError, ConfigError
from dlm.model import Transformer

DEFAULT_TARGETS = ("qkv", "proj", "gate_up", "down")
"""The linear layers adapted: attention's q/k/v and output, the MLP's gate/up and down
(with `fused_projections` off: q, k, v, proj, gate, up, down)."""


def lora_config(settings: Mapping[str, Any]):
    from peft import LoraConfig

    targets = list(settings.get("targets") or DEFAULT_TARGETS)
    return LoraConfig(r=int(settings["rank"]), lora_alpha=float(settings["alpha"]),
                      lora_dropout=float(settings["dropout"]), target_modules=targets,
                      bias="none")


def add_lora(model: Transformer, settings: Mapping[str, Any],
             new_weights: tuple[str, ...] = ()) -> Transformer:
    """`model` with LoRA adapters in the target layers; only the adapters (and the
    parameters named in `new_weights`, layers the run added to the base) train."""
    from peft import inject_adapter_in_model

    names = {n for n, _ in model.named_modules()}
    targets = list(settings.get("targets") or DEFAULT_TARGETS)
    if not any(n.split(".")[-1] in targets for n in names):
        raise ConfigError(f"lora_targets {targets} name no layer of this model (its linear "
                          "layers: qkv or q/k/v, proj, gate_up or gate/up, down, head)",
                          "lora_targets")
    model = inject_adapter_in_model(lora_config(settings), model)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or name in new_weights
    return model


def is_lora(model: torch.nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint stores: every parameter that trains."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
            if p.requires_grad}


def merged(model: Transformer) -> Transformer:
    """The adapters folded into the weights and the LoRA layers replaced by plain ones
    (a model any loader reads)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
    for p in model.parameters():
        p.requires_grad = True
    return model


def weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no safetensors weights to hash")
    return files


def base_hash(folder: str | Path) -> str:
    """sha256 over the base checkpoint's weight files, so a LoRA checkpoint knows the
    base it was trained on is unchanged."""
    digest = hashlib.sha256()
    for file in weight_files(Path(folder)):
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_base(folder: str | Path, want: str, where: Path) -> None:
    got = base_hash(folder)
    if got != want:
        raise CheckpointError(f"{where}: its LoRA base {folder} has changed (weights hash "
                              f"{got[:12]}, trained on {want[:12]}); restore that base or "
                              "train the adapters again")
