"""The units a training run is made of, each on its own, without a Trainer: one optimiser
step (`dlm.training.optimizer_step`), the evaluation of a run (`dlm.training.validation`) and its
checkpoints (`dlm.training.run_checkpoint`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from dlm.checkpoint import load_checkpoint
from dlm.config import TrainConfig
from dlm.diffusion import get_schedule
from dlm.model import Transformer
from dlm.objectives import Context, Objective
from dlm.training.batches import PreparedData, prepare_data
from dlm.training.distributed import World
from dlm.training.optimizer_step import Diverged, OptimizerStep, make_optimizer
from dlm.training.run_checkpoint import RunCheckpoint
from dlm.training.start import start_run
from dlm.training.validation import RunEval, new_best
from tests.conftest import tiny_train_config


@dataclass
class TinyRun:
    """A training run's pieces over a tiny model in one CPU process, and the `Context`
    its objective is handed."""

    cfg: TrainConfig
    objective: Objective
    model: Transformer
    data: PreparedData
    step: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self):
        self.engine = self.model
        self.schedule = get_schedule(self.cfg.diffusion.schedule)
        self.noise = torch.Generator().manual_seed(self.cfg.seed + 1)

    @property
    def tokenizer(self):
        return self.data.tokenizer

    @property
    def context(self) -> Context:
        return Context(self.model, self.tokenizer, self.schedule, self.device,
                       self.cfg.diffusion, self.data.kind, self.cfg.batch_size, self.cfg.seed,
                       engine=self.engine, noise=self.noise, step=self.step)

    def loss(self, batch, noise, normalizer):
        return self.objective.loss(self.context, batch, noise, normalizer)


def tiny_run(out_dir: Path, data: Path, **overrides) -> TinyRun:
    start = start_run(tiny_train_config(out_dir, data, **overrides), World())
    return TinyRun(start.cfg, start.objective, start.model.train(), start.data)


def stepper(run: TinyRun, loss=None, optimizer=None) -> OptimizerStep:
    rows = run.cfg.batch_size // run.cfg.grad_accum
    return OptimizerStep(run.cfg, run.objective,
                         optimizer or make_optimizer(run.model, run.cfg), World(), rows,
                         loss or run.loss)


# ------------------------------------------------------------------ the optimiser step
@pytest.mark.parametrize("objective", ["diffusion", "ar"])
def test_two_accumulated_micro_batches_make_the_update_of_one_batch(tmp_path, pairs_tsv,
                                                                    objective):
    whole = tiny_run(tmp_path / "whole", pairs_tsv, objective=objective)
    halves = tiny_run(tmp_path / "halves", pairs_tsv, objective=objective, grad_accum=2)
    batch = whole.data.sampler.next()
    one, two = stepper(whole)(batch, whole.context), stepper(halves)(batch, halves.context)
    assert float(one["loss"]) == pytest.approx(float(two["loss"]), rel=1e-5)
    assert float(one["grad_norm"]) == pytest.approx(float(two["grad_norm"]), rel=1e-4)
    assert one["lr"] == two["lr"] and one["tokens"] == two["tokens"] == batch.ids.numel()
    for (name, p), q in zip(whole.model.named_parameters(), halves.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, atol=2e-6, rtol=1e-5, msg=name)
    assert whole.step == 0  # the run, not the step, counts steps


def test_a_step_sets_the_scheduled_learning_rate_and_reads_back_numbers(tmp_path, pairs_tsv):
    from dlm.training.optimizer_step import lr_at

    run = tiny_run(tmp_path / "run", pairs_tsv)
    run.step = 3
    step = stepper(run)
    metrics = step(run.data.sampler.next(), run.context)
    assert metrics["lr"] == lr_at(3, run.cfg)
    assert all(group["lr"] == lr_at(3, run.cfg) for group in step.optimizer.param_groups)
    numbers = step.read_back(metrics)
    assert isinstance(numbers["loss"], float) and isinstance(numbers["grad_norm"], float)
    assert numbers["loss"] == pytest.approx(float(metrics["loss"]))


def test_a_non_finite_loss_is_refused_before_the_update(tmp_path, pairs_tsv):
    run = tiny_run(tmp_path / "run", pairs_tsv)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}

    def poisoned(batch, noise, normalizer):
        out = run.loss(batch, noise, normalizer)
        out.loss = out.loss * float("nan")
        return out

    with pytest.raises(Diverged, match="step 1: the loss is nan") as caught:
        stepper(run, poisoned)(run.data.sampler.next(), run.context)
    assert caught.value.step == 1 and "no checkpoint was written yet" in str(caught.value)
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name



# ------------------------------------------------------------------ the evaluation
@pytest.mark.parametrize("objective, keys", [
    ("diffusion", {"val_nelbo", "val_ppl_bound", "val_nelbo_reply"}),
    ("ar", {"val_nll", "val_ppl", "val_nll_reply"}),
])
def test_an_evaluation_gives_the_objectives_figures_and_a_trace_per_prompt(
        tmp_path, pairs_tsv, objective, keys):
    run = tiny_run(tmp_path / "run", pairs_tsv, objective=objective,
                   val_prompts=["hello", "bye"])
    assert len(run.data.val)
    metrics, samples = RunEval(run.cfg, run.objective, run.data.val).evaluate(run.context)
    assert set(metrics) == keys and all(isinstance(v, float) for v in metrics.values())
    assert [prompt for prompt, _ in samples] == ["hello", "bye"]
    assert all(steps for _, steps in samples)
    assert run.model.training  # left as the loop needs it


def test_an_evaluation_without_validation_data_has_no_figures(tmp_path, pairs_tsv):
    from dlm.data import EncodedSet

    run = tiny_run(tmp_path / "run", pairs_tsv, val_prompts=[])
    none = EncodedSet(run.data.val.prompts[:0], run.data.val.responses[:0])
    assert RunEval(run.cfg, run.objective, none).evaluate(run.context) == ({}, [])


def test_only_a_lower_validation_figure_is_a_new_best():
    first = new_best({"val_nelbo": 3.0, "val_ppl_bound": 20.0}, None, 10)
    assert first == {"step": 10, "metric": "val_nelbo", "value": 3.0}
    assert new_best({"val_nelbo": 3.0}, first, 20) is None  # a tie keeps the earlier one
    assert new_best({"val_nelbo": 2.5}, first, 20) == {"step": 20, "metric": "val_nelbo",
                                                      "value": 2.5}
    assert new_best({"val_nll": 1.0, "val_ppl": 2.7}, None, 5)["metric"] == "val_nll"
    assert new_best({}, first, 30) is None

# ------------------------------------------------------------------ the checkpoints
def checkpoints_of(run: TinyRun, optimizer, on_save=lambda step, path: None) -> RunCheckpoint:
    return RunCheckpoint(run.cfg, World(), run.model, optimizer, run.data.sampler, run.noise,
                         run.tokenizer, on_save)


def test_saving_then_restoring_a_run_continues_it_exactly(tmp_path, pairs_tsv):
    run = tiny_run(tmp_path / "run", pairs_tsv)
    step = stepper(run)
    for _ in range(2):  # optimiser moments, a moved sampler and a used noise generator
        step(run.data.sampler.next(), run.context)
        run.step += 1
    saved: list = []
    best = {"step": 2, "metric": "val_nelbo", "value": 3.5}
    path = checkpoints_of(run, step.optimizer, lambda *heard: saved.append(heard)).save(
        "last", run.step, best)
    assert path == tmp_path / "run" / "last" and saved == [(2, path)]
    ckpt = load_checkpoint(path)
    assert ckpt.meta["step"] == 2 and ckpt.meta["best"] == best
    assert ckpt.meta["train"]["max_steps"] == run.cfg.max_steps
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], tensor), name

    # a resumed process: the checkpoint's weights, a fresh optimiser, sampler and noise
    fresh_data = prepare_data(run.cfg, run.objective, run.tokenizer, reuse=True)
    resumed = TinyRun(run.cfg, run.objective, ckpt.model.train(), fresh_data)
    optimizer = make_optimizer(resumed.model, resumed.cfg)
    resumed.step, resumed_best = checkpoints_of(resumed, optimizer).restore(ckpt.train_state())
    assert (resumed.step, resumed_best) == (2, best)
    assert resumed.data.sampler.state_dict() == run.data.sampler.state_dict()
    assert torch.equal(resumed.noise.get_state(), run.noise.get_state())
    ours, theirs = step.optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys()
    for index in ours:
        for key, value in ours[index].items():
            assert torch.equal(theirs[index][key], value), (index, key)
    # and the next step is the one the uninterrupted run takes, bit for bit
    step(run.data.sampler.next(), run.context)
    stepper(resumed, optimizer=optimizer)(resumed.data.sampler.next(), resumed.context)
    for (name, p), q in zip(run.model.named_parameters(), resumed.model.parameters(),
                            strict=True):
        assert torch.equal(p, q), name


def test_best_keeps_the_weights_without_a_training_state(tmp_path, pairs_tsv):
    run = tiny_run(tmp_path / "run", pairs_tsv)
    best = {"step": 0, "metric": "val_nelbo", "value": 4.0}
    path = checkpoints_of(run, make_optimizer(run.model, run.cfg)).save("best", 0, best)
    assert path == tmp_path / "run" / "best"
    ckpt = load_checkpoint(path)
    assert ckpt.train_state() is None and ckpt.meta["best"] == best
