import json
import math

import pytest
import torch

from dlm.checkpoint import load_checkpoint
from dlm.config import TrainConfig
from dlm.pipeline import DiffusionLM
from dlm.training.train import Reporter, dry_run, lr_at, train
from tests.conftest import tiny_train_config


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


class InterruptAt(Reporter):
    def __init__(self, step):
        self.step = step

    def on_step(self, step, metrics):
        if step == self.step:
            raise KeyboardInterrupt


def weights(path):
    return load_checkpoint(path).model.state_dict()


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, pairs_tsv):
    full = train(tiny_train_config(tmp_path / "full", pairs_tsv))
    cut = train(tiny_train_config(tmp_path / "cut", pairs_tsv), InterruptAt(3))
    assert cut.interrupted and cut.steps == 3
    at_step_3 = weights(cut.checkpoint)
    assert not torch.equal(at_step_3["embed.weight"], weights(full.checkpoint)["embed.weight"])
    resumed = train(TrainConfig(), resume=tmp_path / "cut")
    assert resumed.steps == 6 and not resumed.interrupted
    a, b = weights(full.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_lowers_the_validation_nelbo_and_logs_metrics(tmp_path, pairs_tsv):
    # duplicates kept, so the validation rows are pairs the model trains on: this checks
    # that training fits, not that it generalises
    cfg = tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=60, eval_every=10,
                            batch_size=16, lr=5e-3, dedupe=False)
    result = train(cfg)
    first, last = result.history[0]["val_nelbo"], result.history[-1]["val_nelbo"]
    assert last < 0.8 * first and math.isfinite(last), result.history
    assert result.history[0]["step"] == 0  # the untrained starting point
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 61))
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)
    lm = DiffusionLM.load(result.checkpoint)
    assert isinstance(lm.generate("hello")[0], str)


def test_dry_run_writes_nothing(tmp_path, pairs_tsv):
    cfg = tiny_train_config(tmp_path / "run", pairs_tsv)
    info = dry_run(cfg)
    assert not (tmp_path / "run").exists()
    assert info["parameters"] > 0 and info["batch_ids"][0] == 8
    assert math.isfinite(info["initial_loss"])


def test_metrics_also_go_to_tensorboard_when_it_is_installed(tmp_path, pairs_tsv):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install "
                        "'dlm[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlm.training.train import train

    train(tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=3))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss", "lr", "val_nelbo"} <= set(tags)
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    off = tiny_train_config(tmp_path / "off", pairs_tsv, max_steps=1, tensorboard=False)
    train(off)
    assert not (tmp_path / "off" / "tensorboard").exists()


def test_the_best_validation_checkpoint_is_kept_beside_the_last(tmp_path, pairs_tsv):
    """best/ is written whenever the validation NELBO improves; loading a run for sampling
    takes it, resuming takes last/ (with the best so far in its training state)."""
    cfg = tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=8, eval_every=2,
                            save_every=4, lr=0.05)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in rows if "val_nelbo" in r and r["step"] > 0]
    best = min(evals, key=lambda r: r["val_nelbo"])
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert meta["best"]["step"] == best["step"] == meta["step"]
    assert not (tmp_path / "run" / "best" / "train_state.pt").exists()
    lm = DiffusionLM.load(tmp_path / "run", "cpu")
    assert lm.source.name == "best" and f"step {best['step']}" in lm.source_note()
    assert load_checkpoint(tmp_path / "run").path.name == "last"
    assert DiffusionLM.load(tmp_path / "run", "cpu", best=False).source.name == "last"
    assert all("epoch" in r for r in rows if "loss" in r)
