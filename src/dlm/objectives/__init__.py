"""The objectives dlm trains, behind one interface (`Objective`, in `base.py`).

A new objective is one file here, its test and one line in `REGISTRY`.

May import control, sampling, checkpoint, data, diffusion, model, tokenizer,
config, errors and util; never the pipeline, training, evaluation or above.
"""

from __future__ import annotations

from dlm.errors import ConfigError
from dlm.objectives.ar import Autoregressive
from dlm.objectives.base import BoundObjective, HeldOut, Needs, Objective, TrainingRun
from dlm.objectives.block import BlockDiffusion
from dlm.objectives.continuous import ContinuousDiffusion
from dlm.objectives.dual import Dual
from dlm.objectives.mdlm import MaskedDiffusion
from dlm.objectives.sedd import ScoreEntropy
from dlm.objectives.uniform import UniformDiffusion

REGISTRY: dict[str, Objective] = {o.name: o for o in (
    MaskedDiffusion(),
    BlockDiffusion(),
    Autoregressive(),
    UniformDiffusion(),
    ScoreEntropy("absorbing"),
    ScoreEntropy("uniform"),
    ContinuousDiffusion(),
    Dual(),
)}


def get_objective(name: str) -> Objective:
    """The registered objective called `name` (a ConfigError listing them otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown objective {name!r}; choose one of "
                          + ", ".join(f"{n} ({o.summary})" for n, o in REGISTRY.items())
                          ) from None


__all__ = [
    "REGISTRY",
    "BoundObjective",
    "HeldOut",
    "Needs",
    "Objective",
    "TrainingRun",
    "get_objective",
]
