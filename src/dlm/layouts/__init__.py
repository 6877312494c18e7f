"""The field's checkpoint layouts, read into dlm's own model: a published `config.json`
becomes a `ModelConfig`, and the checkpoint's weight names become dlm's (q/k/v and
gate/up fused). Read from the configs and weights alone: no code from a checkpoint
folder ever runs.

May import config, model and errors; checkpoint loading builds on it.
"""

from dlm.layouts import dream, llada
from dlm.layouts.llama import KNOWN, model_config, rename_weights

__all__ = ["KNOWN", "dream", "llada", "model_config", "rename_weights"]
