"""A training run's checkpoints: `last/` (weights and the whole training state: step,
optimiser, sampler, noise RNG, best) and `best/` (weights only), and putting a saved
training state back into a run that resumes.

It is separate from the loop because saving is where the processes meet (FSDP's shards
are gathered, one process writes) and where resume exactness is decided: what is saved
here is all a resumed run gets. The files themselves are written atomically by
`dlm.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlm.checkpoint import finish_interrupted_saves, save_checkpoint
from dlm.config import TrainConfig, to_dict
from dlm.data.batch_samplers import ChatSampler, PackedSampler
from dlm.model import Transformer
from dlm.tokenizer import DLMTokenizer
from dlm.training.distributed import World


class RunCheckpoint:
    """Saves and restores one run's state: its model, optimiser, batch sampler and noise
    generator (each updated in place), with the step and best validation the caller keeps.
    `on_save(step, path)` hears of each checkpoint written."""

    def __init__(self, cfg: TrainConfig, world: World, model: Transformer,
                 optimizer: torch.optim.Optimizer, sampler: ChatSampler | PackedSampler,
                 noise: torch.Generator, tokenizer: DLMTokenizer,
                 on_save: Callable[[int, Path], None] = lambda step, path: None,
                 lora: dict[str, Any] | None = None):
        self.cfg, self.world, self.model, self.optimizer = cfg, world, model, optimizer
        self.lora = lora  # a LoRA run's checkpoints hold its adapters only
        self.sampler, self.noise, self.tokenizer, self.on_save = sampler, noise, tokenizer, on_save
        self.out_dir = Path(cfg.out_dir)
        if world.is_main:  # a resumed run's own folder may differ from the path resumed
            finish_interrupted_saves(self.out_dir)

    @property
    def sharded(self) -> bool:
        return self.world.distributed and self.cfg.parallel == "fsdp"

    # ---- saving
    def save(self, which: str, step: int, best: dict[str, Any] | None) -> Path:
        """Every process gathers (FSDP); process 0 writes the checkpoint, once. `last/`
        holds the training state to resume from; `best/` only the weights."""
        model = self.full_model()
        state = self.train_state(step, best) if which == "last" else None
        path = self.out_dir / which
        meta = {"objective": self.cfg.objective, "train": to_dict(self.cfg), "step": step,
                "best": best, **({"lora": self.lora} if self.lora else {})}
        if self.world.is_main:
            path = save_checkpoint(path, model, self.tokenizer, meta, state)
            self.on_save(step, path)
        self.world.barrier()
        return path

    def train_state(self, step: int, best: dict[str, Any] | None) -> dict[str, Any]:
        """Global state only (the sampler and noise are the same in every process), so a
        run resumes with any number of processes."""
        return {"step": step, "optimizer": self.full_optimizer_state(),
                "sampler": self.sampler.state_dict(), "noise_rng": self.noise.get_state(),
                "best": best}

    def full_optimizer_state(self) -> dict[str, Any]:
        """The whole optimiser state keyed by parameter name (FSDP's shards gathered), so
        any number of processes can load it."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=self.sharded))

    def full_model(self) -> Transformer:
        """The whole model as one module: FSDP's shards gathered (a collective)."""
        if not self.sharded:
            return self.model
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        state = get_model_state_dict(self.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        whole = Transformer(self.model.config)
        if self.world.is_main:
            whole.load_state_dict(state)
        return whole

    # ---- restoring
    def restore(self, state: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Put a saved training state back (the weights come with the model); returns the
        step to continue from and the best validation so far."""
        self.load_optimizer(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.noise.set_state(state["noise_rng"])
        return int(state["step"]), state.get("best")

    def load_optimizer(self, state: dict[str, Any]) -> None:
        """Optimiser state saved keyed by parameter name (any number of processes, sharded
        or not) or, by older checkpoints, by parameter index (one process)."""
        if all(isinstance(k, int) for k in state.get("state", {})) and not self.sharded:
            self.optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(self.model, self.optimizer, state,
                                 options=StateDictOptions(full_state_dict=True))
