"""dlm: text diffusion language models.

    from dlm import DataConfig, DiffusionLM, SampleConfig, TrainConfig, prepare, train
    prepare(DataConfig(sources=["dailydialog/train.zip"], out_dir="data/dd"))  # `dlm data`
    result = train(TrainConfig(data=["data/dd"], max_steps=300))  # default: chatterbot corpus
    lm = DiffusionLM.from_pretrained(result.checkpoint)
    lm.generate("hello", SampleConfig(length=32, steps=16, rule="threshold"))
    lm.infill("The weather is [MASK] today, so [MASK*5] umbrella.").text
    lm.edit("I am so happy today.", span="happy").after
    from dlm.server import serve; serve(result.checkpoint, ServeConfig(port=8000))  # `dlm serve`
"""

from importlib.metadata import version as _installed_version

__version__ = _installed_version("dlm")  # one source: pyproject.toml

from dlm.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from dlm.config import (  # noqa: E402
    PRESETS,
    DataConfig,
    DiffusionConfig,
    DistillConfig,
    ModelConfig,
    SampleConfig,
    ServeConfig,
    TrainConfig,
    model_preset,
)
from dlm.control import Constraints, Edit, Infill  # noqa: E402
from dlm.data.prepare import PrepareResult, prepare  # noqa: E402
from dlm.errors import CheckpointError, ConfigError, DataError, DLMError  # noqa: E402
from dlm.model import Transformer  # noqa: E402
from dlm.pipeline import DiffusionLM  # noqa: E402
from dlm.tokenizer import DLMTokenizer  # noqa: E402
from dlm.training.distill import DistillResult, distill  # noqa: E402
from dlm.training.train import TrainResult, dry_run, train  # noqa: E402

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "Constraints",
    "DLMError",
    "DLMTokenizer",
    "DataConfig",
    "DataError",
    "DistillConfig",
    "DistillResult",
    "DiffusionConfig",
    "DiffusionLM",
    "Edit",
    "Infill",
    "ModelConfig",
    "PrepareResult",
    "SampleConfig",
    "ServeConfig",
    "TrainConfig",
    "TrainResult",
    "Transformer",
    "__version__",
    "distill",
    "dry_run",
    "load_checkpoint",
    "model_preset",
    "prepare",
    "save_checkpoint",
    "train",
]
