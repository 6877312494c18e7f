"""What an objective is handed: one typed shape for training, evaluation and sampling.

A training run builds it each step (`Trainer.context`: the engine the step calls, the
noise generator, the step), a loaded model builds it to sample (`DiffusionLM.context`:
the length head's predictions, lowercasing), and evaluation builds it from a model and
the schedule it was trained with. An objective's own settings (block size, prompt
dropout, ...) are not here: they are fields of the bound objective itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dlm.config import DiffusionConfig

if TYPE_CHECKING:
    from dlm.diffusion import Schedule
    from dlm.model import Transformer
    from dlm.tokenizer import DLMTokenizer


@dataclass
class Context:
    """The model, its tokenizer and noise schedule, where they run, and the run's
    settings an objective reads."""

    model: Transformer
    tokenizer: DLMTokenizer
    schedule: Schedule
    device: torch.device
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """The forward process (eps, antithetic draws, padding)."""
    data_kind: str = "chat"
    """chat (prompt and reply) or text (packed windows)."""
    batch_size: int = 64
    """The global batch: a loss summed over a share divides by it; evaluation's batch."""
    seed: int = 0
    """Seeds held-out draws, so successive evaluations compare the model, not the luck."""
    # ---- a training run's
    engine: Callable[..., Any] | None = None
    """What the training step calls (DDP / FSDP / compiled around the model); None: the
    model itself."""
    noise: torch.Generator | None = None
    """The run's generator of corruption draws."""
    step: int = 0
    autocast: Callable[[], AbstractContextManager] = nullcontext
    # ---- a loaded model's
    predict_lengths: Callable[..., torch.Tensor] | None = None
    """(prompt, key padding, config, generator) -> (B,) reply lengths from the length head."""
    lowercase: bool = False
    """The model was trained on lowercased text (forced words are lowercased too)."""

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = self.model

    @property
    def denoiser(self):
        """The model as a sampler calls it (logits aligned when the model is shifted)."""
        from dlm.diffusion.shift import as_denoiser

        return as_denoiser(self.model)
