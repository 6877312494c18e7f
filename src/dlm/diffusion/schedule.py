"""Noise schedules: the only mapping from time t to the mask rate.

alpha(t) is the probability that a token is still clean at time t; a token is
masked with probability 1 - alpha(t). The NELBO weight of a masked token is
-alpha'(t) / (1 - alpha(t)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dlm.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    name: str

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """-alpha'(t) / (1 - alpha(t)): the weight of a masked token's cross-entropy."""
        raise NotImplementedError

    def mask_rate(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.alpha(t)


@dataclass(frozen=True)
class Linear(Schedule):
    """alpha = 1 - t: mask rate t, weight 1/t (LLaDA, MDLM's reference case)."""

    name: str = "linear"

    def alpha(self, t):
        return 1.0 - t

    def weight(self, t):
        return 1.0 / t


@dataclass(frozen=True)
class LogLinear(Schedule):
    """MDLM's log-linear noise: sigma(t) = -log(1 - (1 - e) t), so alpha = 1 - (1 - e) t.

    The small e keeps a token clean with probability e even at t = 1; the weight
    is still 1/t.
    """

    name: str = "loglinear"
    e: float = 1e-3

    def alpha(self, t):
        return 1.0 - (1.0 - self.e) * t

    def weight(self, t):
        return 1.0 / t


@dataclass(frozen=True)
class Cosine(Schedule):
    """alpha = cos(pi t / 2): fewer masks early on, more late."""

    name: str = "cosine"

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def weight(self, t):
        half_pi = 0.5 * math.pi
        return half_pi * torch.sin(half_pi * t) / (1.0 - torch.cos(half_pi * t))


SCHEDULES: dict[str, type[Schedule]] = {"linear": Linear, "loglinear": LogLinear, "cosine": Cosine}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name]()
