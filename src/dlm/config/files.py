"""Configs to and from JSON: a checkpoint's `config.json`, a `--config` file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from dlm.config.train import DiffusionConfig, TrainConfig
from dlm.errors import ConfigError
from dlm.util.wellformed import first_invalid

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a dataclass from a dict, naming any unknown field and where it came from."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    kwargs = dict(data)
    if cls is TrainConfig and isinstance(kwargs.get("diffusion"), dict):
        kwargs["diffusion"] = from_dict(DiffusionConfig, kwargs["diffusion"], f"{source}.diffusion")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from a JSON file (fields as in `TrainConfig`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a leading BOM is dropped
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of TrainConfig fields")
    if (found := first_invalid(data)) is not None:  # a JSON escape of a lone surrogate
        raise ConfigError(f"{path}: {found[0]}: {found[1]}", found[0])
    return from_dict(TrainConfig, data, str(path))
