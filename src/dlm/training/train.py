"""Training: the loop that wires a run's units together.

`train(config)` is the whole run. How it starts is `dlm.training.start`, its data
`dlm.training.batches`, one optimiser step `dlm.training.optimizer_step`, its evaluation
`dlm.training.validation`, its checkpoints `dlm.training.run_checkpoint`.
What the loop reports goes to a `Reporter` (the CLI's draws a Rich progress bar;
the default says nothing), and every step's figures go to `metrics.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlm.config import TrainConfig
from dlm.data import (
    Batch,
    EncodedSet,
    ReadReport,
)
from dlm.data.batch_samplers import (
    ChatSampler,
    PackedSampler,
)
from dlm.diffusion import (
    LossOutput,
    get_schedule,
)
from dlm.diffusion.corruption import Noise
from dlm.errors import ConfigError
from dlm.objectives import Context
from dlm.pipeline import pick_device
from dlm.sampling import Step
from dlm.tokenizer import DLMTokenizer
from dlm.training.distributed import check_split, close_world, init_world, wrap
from dlm.training.optimizer_step import Diverged, OptimizerStep, lr_at, make_optimizer
from dlm.training.run_checkpoint import RunCheckpoint
from dlm.training.start import start_run
from dlm.training.validation import RunEval, new_best

# what callers import from here; the optimiser's pieces live in dlm.training.optimizer_step
__all__ = ["Diverged", "Reporter", "TrainResult", "Trainer", "dry_run", "lr_at",
           "make_optimizer", "train"]

# ------------------------------------------------------------------ reporting
class Reporter:
    """Receives what the loop has to say; override what you want to show."""

    def on_data(self, reports: list[ReadReport], train: ChatSampler | PackedSampler,
                val: EncodedSet) -> None: ...
    def on_note(self, text: str) -> None: ...
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float],
                samples: list[tuple[str, list[Step]]], tok: DLMTokenizer) -> None: ...
    def on_save(self, step: int, path: Path) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    steps: int
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    """Evaluation rows: step, val_nelbo and val_ppl_bound (diffusion), val_nll and val_ppl (ar)."""


# ------------------------------------------------------------ the run's setup
def cpu_has_bf16() -> bool:
    """True if this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: str, device: torch.device) -> bool:
    if setting == "on":
        return True
    if setting == "off":
        return False
    return device.type == "cuda" or cpu_has_bf16()


def use_compile(setting: str, device: torch.device) -> bool:
    """torch.compile pays on CUDA (fused kernels); on CPU the compile time outweighs it."""
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"compile must be auto, on or off, got {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def open_tensorboard(folder: Path):
    """A TensorBoard SummaryWriter when the `tensorboard` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: metrics.jsonl has every figure anyway
        return None
    return SummaryWriter(str(folder))


# -------------------------------------------------------------------- the loop
class Trainer:
    """The run: what its objective is handed (`context`, a `dlm.objectives.Context`), the
    units it wires together (one optimiser step, the evaluation, the checkpoints) and
    `run()`, the loop: log, evaluate every N, save every N, report."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter | None = None,
                 resume: str | Path | None = None):
        self.world = init_world(cfg.device)
        # one process speaks and writes: the others compute the same thing silently
        self.reporter = (reporter or Reporter()) if self.world.is_main else Reporter()
        start = start_run(cfg, self.world, self.reporter.on_note, resume)
        cfg, self.data, self.model, state = start.cfg, start.data, start.model, start.state
        self.objective = start.objective
        self.objective.check(cfg, self.data.kind)
        self.cfg = cfg
        # refused before the model moves to its device or is wrapped
        rows_per_micro = check_split(cfg.batch_size, cfg.grad_accum, self.world)
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda" and self.world.distributed:
            self.device = torch.device("cuda", self.world.local_rank)
        self.model.to(self.device).train()
        self.model.checkpointing = cfg.activation_checkpointing
        # what the training step calls: DDP / FSDP around the model, maybe compiled;
        # `self.model` stays the plain module (evaluation, checkpoints)
        self.engine = wrap(self.model, self.world, cfg.parallel, self.device)
        if use_compile(cfg.compile, self.device):
            self.engine = torch.compile(self.engine)
        self.bf16 = use_bf16(cfg.bf16, self.device)
        self.schedule = get_schedule(cfg.diffusion.schedule)
        self.optimizer = make_optimizer(self.model, cfg, fused=self.device.type == "cuda")
        self.sampler = self.data.sampler
        self.noise = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self.step = 0
        self.best: dict[str, float] | None = None  # the best validation so far: step, value
        self.optimizer_step = OptimizerStep(cfg, self.objective, self.optimizer, self.world,
                                            rows_per_micro, self.loss)
        self.evaluation = RunEval(cfg, self.objective, self.data.val)
        self.checkpoints = RunCheckpoint(cfg, self.world, self.model, self.optimizer,
                                         self.sampler, self.noise, self.data.tokenizer,
                                         self.reporter.on_save, start.lora)
        if state is not None:
            self.step, self.best = self.checkpoints.restore(state)
        self.out_dir = Path(cfg.out_dir)
        self.tensorboard = None  # a SummaryWriter from the first logged row (False: none)

    # ---- what the objective is handed, and one step
    @property
    def context(self) -> Context:
        """The objective's view of the run at this step."""
        cfg = self.cfg
        return Context(self.model, self.tokenizer, self.schedule, self.device, cfg.diffusion,
                       self.data.kind, cfg.batch_size, cfg.seed, engine=self.engine,
                       noise=self.noise, step=self.step, autocast=self.autocast)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def tokenizer(self) -> DLMTokenizer:
        return self.data.tokenizer

    @property
    def data_kind(self) -> str:
        return self.data.kind

    def step_noise(self, batch: Batch) -> Noise | None:
        """The corruption draws of a whole (global) batch, made once per optimiser step."""
        return self.objective.noise(self.context, batch)

    def loss(self, batch: Batch, noise: Noise | None = None,
             normalizer: float | None = None) -> LossOutput:
        """The objective's training loss of `batch` (one Monte Carlo draw of a diffusion
        bound, or AR's next-token loss; what train_step and dry_run share). `noise`,
        `normalizer`: this share's draws and the whole batch's token count, when `batch`
        is a share of a larger one."""
        noise = noise if noise is not None else self.step_noise(batch)
        with self.autocast():
            return self.objective.loss(self.context, batch, noise, normalizer)

    def train_step(self) -> dict[str, Any]:
        """One optimiser step over the next global batch (`OptimizerStep`); loss and
        gradient norm stay device tensors until `OptimizerStep.read_back`."""
        metrics = self.optimizer_step(self.sampler.next(), self.context)
        self.step += 1
        return {**metrics, "epoch": round(self.sampler.epochs, 4)}

    # ---- evaluation and checkpoints
    def save(self, which: str = "last") -> Path:
        """`last/` (to resume from) or `best/` (weights only): `RunCheckpoint.save`."""
        return self.checkpoints.save(which, self.step, self.best)

    def keep_if_best(self, ev: dict[str, float]) -> None:
        """Write `best/` when the validation NELBO (AR: NLL) is the lowest so far."""
        best = new_best(ev, self.best, self.step)
        if best is not None:
            self.best = best
            self.save("best")

    def log(self, row: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        with (self.out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is None and self.cfg.tensorboard:
            # tried once: a writer, or False when the package is not installed
            self.tensorboard = open_tensorboard(self.out_dir / "tensorboard") or False
        if self.tensorboard:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, row["step"])

    # ---- the loop
    def run(self) -> TrainResult:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.reporter.on_data(self.data.reports, self.sampler, self.data.val)
        self.reporter.on_start({
            "parameters": self.model.num_parameters(), "device": str(self.device),
            "bf16": self.bf16, "start_step": self.step, "max_steps": cfg.max_steps,
            "config": self.model.config,
        })
        result = TrainResult(self.out_dir, self.out_dir / "last", self.step)
        if self.step == 0 and len(self.data.val):
            # the starting point, so a curve shows how far training brought the NELBO
            ev = self.evaluation.validation(self.context)
            self.log({"step": 0, **ev})
            result.history.append({"step": 0, **ev})
            self.reporter.on_eval(0, ev, [], self.data.tokenizer)
        start, tokens_seen = time.perf_counter(), 0
        log_every = cfg.log_every or (10 if self.device.type == "cuda" else 1)
        try:
            while self.step < cfg.max_steps:
                metrics = self.train_step()
                tokens_seen += metrics["tokens"]
                last = self.step == cfg.max_steps
                if last or self.step % log_every == 0:
                    metrics = self.optimizer_step.read_back(metrics)
                    elapsed = time.perf_counter() - start
                    metrics["tokens_per_s"] = tokens_seen / max(elapsed, 1e-9)
                    self.log({"step": self.step, "elapsed_s": round(elapsed, 3), **metrics})
                    self.reporter.on_step(self.step, metrics)
                if last or (cfg.eval_every and self.step % cfg.eval_every == 0):
                    ev, samples = self.evaluation.evaluate(self.context)
                    if ev:
                        self.log({"step": self.step, **ev})
                        result.history.append({"step": self.step, **ev})
                        self.keep_if_best(ev)
                    self.reporter.on_eval(self.step, ev, samples, self.data.tokenizer)
                if last or (cfg.save_every and self.step % cfg.save_every == 0):
                    self.save()
        except KeyboardInterrupt:
            # Keep the work: the run continues with `dlm train --resume OUT_DIR`.
            self.save()
            result.interrupted = True
        result.steps = self.step
        if self.tensorboard:
            self.tensorboard.close()
        self.reporter.on_end(result)
        return result


def train(cfg: TrainConfig, reporter: Reporter | None = None,
          resume: str | Path | None = None) -> TrainResult:
    """Train a diffusion chat model; `resume` continues a run from its checkpoint.

    Under torchrun every process calls this; they train one model together."""
    trainer = Trainer(cfg, reporter, resume)
    try:
        return trainer.run()
    finally:
        close_world(trainer.world)


def dry_run(cfg: TrainConfig) -> dict[str, Any]:
    """One forward and backward pass on one batch; writes nothing to the run directory
    (files are tokenized into a temporary one). Returns shapes and the loss."""
    with tempfile.TemporaryDirectory(prefix="dlm-dry-run-") as tmp:
        trainer = Trainer(dataclasses.replace(cfg, out_dir=tmp))
        model, data = trainer.model, trainer.data
        batch = trainer.sampler.next().to(trainer.device)
        out = trainer.loss(batch)
        out.loss.backward()
    return {
        "parameters": model.num_parameters(),
        "model": dataclasses.asdict(model.config),
        "data": data.kind,
        "train_examples": len(data.sampler), "val_examples": len(data.val),
        "batch_ids": tuple(batch.ids.shape), "logits": (*batch.ids.shape, model.config.vocab_size),
        "masked_tokens": out.n_masked, "maskable_tokens": out.n_tokens,
        "initial_loss": float(out.loss.detach()),
        "uniform_loss": math.log(model.config.vocab_size - 1),
        "reports": data.reports,
    }
