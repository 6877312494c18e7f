"""dlm: text diffusion language models.

    from dlm import DiffusionLM, SampleConfig, TrainConfig, train
    result = train(TrainConfig(max_steps=300))            # the embedded chatterbot corpus
    lm = DiffusionLM.load(result.checkpoint)
    lm.generate("hello", SampleConfig(length=32, steps=16))
"""

__version__ = "0.1.0"

from dlm.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from dlm.config import (  # noqa: E402
    PRESETS,
    DiffusionConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    model_preset,
)
from dlm.errors import CheckpointError, ConfigError, DataError, DLMError  # noqa: E402
from dlm.model import Transformer  # noqa: E402
from dlm.pipeline import DiffusionLM  # noqa: E402
from dlm.tokenizer import DLMTokenizer  # noqa: E402
from dlm.train import TrainResult, dry_run, train  # noqa: E402

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DLMError",
    "DLMTokenizer",
    "DataError",
    "DiffusionConfig",
    "DiffusionLM",
    "ModelConfig",
    "SampleConfig",
    "TrainConfig",
    "TrainResult",
    "Transformer",
    "__version__",
    "dry_run",
    "load_checkpoint",
    "model_preset",
    "save_checkpoint",
    "train",
]
