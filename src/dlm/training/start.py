"""How a training run starts: from scratch, resumed from its own checkpoint, or from
another run's weights (`init_from`: fine-tuning, or an AR model turned into a diffusion
one). Each gives the run's settings, its data, its model and (resumed) the training
state to restore; nothing here steps or saves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.checkpoint import finish_interrupted_saves, load_checkpoint
from dlm.config import TrainConfig, from_dict, model_preset
from dlm.errors import CheckpointError, ConfigError
from dlm.lora import add_lora, base_hash
from dlm.model import Transformer
from dlm.objectives import Objective, bind_objective
from dlm.tokenizer import DLMTokenizer
from dlm.training.batches import PreparedData, prepare_data
from dlm.training.distributed import World


@dataclass
class RunStart:
    cfg: TrainConfig
    """The run's settings (a resumed run's own, from its checkpoint)."""
    objective: Objective
    """What it trains, bound once here to its own settings and passed on."""
    data: PreparedData
    model: Transformer
    state: dict[str, Any] | None
    """The training state to restore (optimiser, sampler, noise RNG, step): resume only."""
    lora: dict[str, Any] | None = None
    """A LoRA run's adapters: rank, alpha, dropout, targets, the base's path and hash, and
    the layers the run added to the base (`dlm.lora`); None: every weight trains."""


def start_run(cfg: TrainConfig, world: World, say=lambda text: None,
              resume: str | Path | None = None) -> RunStart:
    """The run's start; settings that cannot train are refused before any work."""
    objective = bind_objective(vars(cfg))  # an unknown one is refused before any work
    if not 0 <= cfg.cfg_dropout < 1:
        raise ConfigError(f"cfg_dropout must be in [0, 1), got {cfg.cfg_dropout}")
    state = None
    if resume is not None:
        if world.is_main:  # the writer finishes what a killed save left, before reading
            for note in finish_interrupted_saves(resume):
                say(note)
        world.barrier()
        ckpt = load_checkpoint(resume)
        state = ckpt.train_state()
        if state is None:
            raise CheckpointError(
                f"{ckpt.path}: no training state to resume from (train_state.pt is "
                "missing); start a new run or pass a checkpoint written during training")
        cfg = from_dict(TrainConfig, ckpt.meta["train"], f"{ckpt.path} train config")
        objective = bind_objective(vars(cfg))
        data = prepare_everywhere(cfg, objective, world, say, ckpt.tokenizer)
        model, lora = ckpt.model, ckpt.meta.get("lora")
    elif cfg.init_from is not None:
        # fine-tuning: the checkpoint's weights and tokenizer, a fresh optimiser
        ckpt = load_checkpoint(cfg.init_from, best=True)
        data = prepare_everywhere(cfg, objective, world, say, ckpt.tokenizer)
        causal = ckpt.model.config.causal
        if not objective.can_start_from(causal):
            kind = "causal (ar)" if causal else "bidirectional (diffusion)"
            raise ConfigError(f"{ckpt.path} is a {kind} model; --objective "
                              f"{cfg.objective} cannot start from it")
        torch.manual_seed(cfg.seed)
        base_names = set(ckpt.model.state_dict())
        model = adapt_model(ckpt.model, cfg, objective, data.tokenizer.vocab_size, say)
        lora = None
        if cfg.lora_rank:
            lora = lora_settings(cfg, ckpt.path, [n for n, _ in model.named_parameters()
                                                  if n not in base_names])
            model = add_lora(model, lora, tuple(lora["new_weights"]))
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            say(f"LoRA rank {cfg.lora_rank} on {', '.join(cfg.lora_targets)}: {trained:,} "
                f"of {model.num_parameters():,} parameters train")
        need = max(cfg.prompt_len + cfg.response_len, cfg.packed_len)
        if need > model.config.max_seq_len:
            raise ConfigError(
                f"prompt_len + response_len = {need} is longer than the "
                f"{model.config.max_seq_len} positions of {ckpt.path}; shorten them")
    else:
        if cfg.lora_rank:
            raise ConfigError("lora_rank adapts a trained model: give --init-from CKPT",
                              "lora_rank")
        data = prepare_everywhere(cfg, objective, world, say, None)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, objective, data.tokenizer.vocab_size)
        lora = None
    if cfg.anneal_steps and not model.config.shift:
        raise ConfigError("anneal_steps is for a diffusion run started from an AR "
                          "checkpoint (--init-from AR_CKPT); this model is not one")
    return RunStart(cfg, objective, data, model, state, lora)


def lora_settings(cfg: TrainConfig, base: Path, new_weights: list[str]) -> dict[str, Any]:
    """What a LoRA run's checkpoints record of it (`dlm.lora`)."""
    return {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
            "targets": list(cfg.lora_targets), "base": str(base),
            "base_sha256": base_hash(base), "new_weights": new_weights}


def prepare_everywhere(cfg: TrainConfig, objective: Objective, world: World, say,
                       tokenizer: DLMTokenizer | None) -> PreparedData:
    """Process 0 splits and tokenizes; the others then read what it wrote."""
    if world.is_main:
        data = prepare_data(cfg, objective, tokenizer, say)
        if world.distributed:
            data.tokenizer.save(data.folder / "tokenizer.json")
    world.barrier()
    if not world.is_main:
        folder_tok = Path(cfg.out_dir) / "data" / "tokenizer.json"
        if tokenizer is None and folder_tok.is_file():
            tokenizer = DLMTokenizer.load(folder_tok)
        data = prepare_data(cfg, objective, tokenizer, reuse=True)
    return data


def run_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """ModelConfig fields a run sets whatever the model's origin: dropout, the length head."""
    out: dict[str, Any] = {}
    if cfg.dropout is not None:
        out["dropout"] = cfg.dropout
    if cfg.length_head:
        out["length_classes"] = cfg.response_len
    return out


# ModelConfig fields a fine-tuning run may change: none of them shapes a weight (rotary
# positions have no table to learn, so a model can be given more of them to train on)
KEEP_WEIGHTS = ("max_seq_len", "rope_theta", "dropout")


def fine_tuning_overrides(cfg: TrainConfig, old) -> dict[str, Any]:
    """The run's model_overrides for a model started from a checkpoint (`init_from`):
    refused when one would change a trained weight's shape."""
    shaping = sorted(k for k, v in cfg.model_overrides.items()
                     if k not in KEEP_WEIGHTS and getattr(old, k, None) != v)
    if shaping:
        raise ConfigError(f"model_overrides {', '.join(shaping)} would change the shape of "
                          f"{cfg.init_from}'s weights; a fine-tuning run may only set "
                          f"{', '.join(KEEP_WEIGHTS)}", "model_overrides")
    return dict(cfg.model_overrides)


def build_model(cfg: TrainConfig, objective: Objective, vocab_size: int) -> Transformer:
    needs = objective.needs
    overrides = {"vocab_size": vocab_size, "causal": needs.causal,
                 "time_conditioning": needs.time,
                 "max_seq_len": max(cfg.prompt_len + cfg.response_len, cfg.packed_len, 64),
                 **run_overrides(cfg), **cfg.model_overrides}
    return Transformer(model_preset(cfg.preset, **overrides))


def adapt_model(model: Transformer, cfg: TrainConfig, objective: Objective, vocab_size: int,
                say=lambda text: None) -> Transformer:
    """A checkpoint's model made ready for this run, every trained weight kept: an AR
    model becomes a shifted diffusion model (`--objective diffusion`), the vocabulary
    grows for new special tokens (rainbow pads), dropout and a length head as the run
    asks. New weights are initialised as in a fresh model."""
    old = model.config
    changes = run_overrides(cfg)
    changes.update(fine_tuning_overrides(cfg, old))
    changes.update(objective.model_changes(old.causal))
    if objective.needs.time and not old.time_conditioning:
        changes["time_conditioning"] = True  # adaLN starts at zero: the same function
    if changes.get("shift") and not old.shift:
        say("AR -> diffusion: full attention (annealed from causal over "
            f"{cfg.anneal_steps} steps), shifted logits (position i predicts i + 1)")
    if vocab_size > old.vocab_size:
        changes["vocab_size"] = vocab_size
    if changes.get("length_classes", old.length_classes) == old.length_classes:
        changes.pop("length_classes", None)
    if not changes:
        return model
    new = Transformer(dataclasses.replace(old, **changes))
    state = new.state_dict()
    for name, tensor in model.state_dict().items():
        if name == "embed.weight":
            state[name][: tensor.shape[0]] = tensor  # new rows keep their fresh init
        elif name in state and state[name].shape == tensor.shape:
            state[name] = tensor
    new.load_state_dict(state)
    return new
