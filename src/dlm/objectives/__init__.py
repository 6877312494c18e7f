"""The objectives dlm trains, behind one interface (`Objective`, in `base.py`).

A new objective is one file here, its test and one line in `REGISTRY`. A run's start and
a checkpoint's load bind one (`bind_objective`: the registered objective with its own
settings from the run's config) and pass the instance on; nothing else looks one up.

May import control, sampling, checkpoint, data, diffusion, model, tokenizer,
config, errors and util; never the pipeline, training, evaluation or above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlm.errors import ConfigError
from dlm.objectives.ar import Autoregressive
from dlm.objectives.base import BoundObjective, HeldOut, Needs, Objective
from dlm.objectives.block import BlockDiffusion
from dlm.objectives.context import Context
from dlm.objectives.continuous import ContinuousDiffusion
from dlm.objectives.diffusion_gemma import DiffusionGemmaBlocks
from dlm.objectives.dual import Dual
from dlm.objectives.mdlm import MaskedDiffusion
from dlm.objectives.sedd import ScoreEntropy
from dlm.objectives.uniform import UniformDiffusion

REGISTRY: dict[str, Objective] = {o.name: o for o in (
    MaskedDiffusion(),
    BlockDiffusion(),
    Autoregressive(),
    UniformDiffusion(),
    ScoreEntropy(graph_name="absorbing"),
    ScoreEntropy(graph_name="uniform"),
    ContinuousDiffusion(),
    Dual(),
    DiffusionGemmaBlocks(),
)}


def get_objective(name: str) -> Objective:
    """The registered objective called `name` (a ConfigError listing them otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown objective {name!r}; choose one of "
                          + ", ".join(f"{n} ({o.summary})" for n, o in REGISTRY.items())
                          ) from None


def bind_objective(train: Mapping[str, Any]) -> Objective:
    """The objective a run trains or a checkpoint was trained with, bound to its own
    settings: `train` is a `TrainConfig`'s fields (`vars(cfg)`) or a checkpoint's `train`
    record; a record without `objective` (older checkpoints) is masked diffusion."""
    return get_objective(train.get("objective", "diffusion")).bind(train)


__all__ = [
    "REGISTRY",
    "BoundObjective",
    "Context",
    "HeldOut",
    "Needs",
    "Objective",
    "bind_objective",
    "get_objective",
]
