"""Typed configuration: every setting of dlm is a field of one of these dataclasses, with
its type, default and docstring; the commands' flags, the server's request fields and the
documentation are made from them. Each config has a JSON round trip, so a checkpoint's
`config.json` rebuilds exactly the model that wrote it.

- `ModelConfig` and the presets (`model.py`); `TrainConfig` and `DiffusionConfig`
  (`train.py`); `SampleConfig` (`sample.py`); `ServeConfig` (`serve.py`); `DataConfig`
  (`data.py`); the settings of `dlm sweep`, `bench` and `distill` (`SweepConfig`,
  `BenchConfig`, `DistillConfig`: `sweep.py`, `bench.py`, `distill.py`); one list per
  set of names (`names.py`); JSON in and out (`files.py`).

Imports nothing of dlm but `dlm.errors` and `dlm.util`; every part may import it.
"""

from dlm.config.bench import BenchConfig
from dlm.config.data import DataConfig
from dlm.config.distill import DistillConfig
from dlm.config.files import from_dict, load_train_config, to_dict
from dlm.config.model import PRESETS, ModelConfig, model_preset
from dlm.config.names import COMMIT_RULES, DECODES, EOS_MODES, PADDINGS, PREDICTORS
from dlm.config.sample import SampleConfig
from dlm.config.serve import ServeConfig
from dlm.config.sweep import SweepConfig
from dlm.config.train import DiffusionConfig, TrainConfig

__all__ = ["COMMIT_RULES", "DECODES", "EOS_MODES", "PADDINGS", "PREDICTORS", "PRESETS",
           "BenchConfig", "DataConfig", "DiffusionConfig", "DistillConfig", "ModelConfig",
           "SampleConfig", "ServeConfig", "SweepConfig", "TrainConfig", "from_dict",
           "load_train_config", "model_preset", "to_dict"]
