"""Dream's layout (Dream-org/Dream-v0-Base-7B, -Instruct-7B; `model_type: Dream`): Qwen2's
block and weight names, read without the causal mask and with the shift operation it was
trained with from Qwen2.5 (the logits at position i predict token i + 1; dlm's `shift`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dlm.config import ModelConfig
from dlm.layouts.llama import NAMES, rename_weights  # noqa: F401  (Qwen2's names: Dream's)
from dlm.layouts.llama import model_config as llama_family_config


def model_config(hf: Mapping[str, Any]) -> ModelConfig:
    """dlm's ModelConfig for a Dream `config.json` (as a dict): Qwen2's shape,
    bidirectional and shifted."""
    qwen2 = llama_family_config({**hf, "model_type": "qwen2"}, causal=False)
    return dataclasses.replace(qwen2, shift=True)
