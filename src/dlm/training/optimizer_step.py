"""One optimiser step over a global batch: its learning rate, the loss over the
micro-batches of this process's share, gradient accumulation (DDP syncing once, at
the end), clipping, the refusal of a non-finite step, and the update.

It is separate from the loop so that what one step computes can be checked on its own
(accumulation equals one big batch, a NaN is refused before it is applied) and so that
the loop only decides when to step, log, evaluate and save.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlm.config import TrainConfig
from dlm.data import Batch
from dlm.diffusion import LossOutput
from dlm.diffusion.corruption import Noise
from dlm.errors import DLMError
from dlm.model import Transformer
from dlm.objectives import Context, Objective
from dlm.training.distributed import World
from dlm.util.failpoints import passage

ShareLoss = Callable[[Batch, Noise | None, float | None], LossOutput]
"""The training loss of a share of the batch: (share, its noise rows, the whole batch's
token count) -> loss (`Trainer.loss`)."""


class Diverged(DLMError):
    """The loss or the gradient norm of a step was NaN or inf; it was not applied."""

    def __init__(self, step: int, loss: float, grad_norm: float, out_dir: Path):
        last = out_dir / "last"
        kept = (f"the last good checkpoint is {last} (step "
                f"{json.loads((last / 'config.json').read_text()).get('step')})"
                if (last / "config.json").is_file() else "no checkpoint was written yet")
        super().__init__(f"step {step}: the loss is {loss:g} and the gradient norm "
                         f"{grad_norm:g}; training stopped before applying it, and {kept}. "
                         "Lower --lr or keep --grad-clip on, then --resume")
        self.step = step


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: Transformer, cfg: TrainConfig,
                   fused: bool = False) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (not norms, not embeddings);
    `fused`: one kernel for all parameters (CUDA)."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # LoRA: adapters
    decay = [p for n, p in trained if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in trained if p.dim() < 2 or "embed" in n]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8,
                             fused=fused or None)


class OptimizerStep:
    """Applies one optimiser step of a run (at `ctx.step`, which the caller advances).

    `rows_per_micro`: this process's rows of each micro-batch (`check_split`); `loss`:
    the loss of one share (the run's, so what it adds, a test's poison included, is
    what the step backpropagates).
    """

    def __init__(self, cfg: TrainConfig, objective: Objective,
                 optimizer: torch.optim.Optimizer, world: World, rows_per_micro: int,
                 loss: ShareLoss):
        self.cfg, self.objective, self.optimizer = cfg, objective, optimizer
        self.world, self.rows_per_micro, self.loss = world, rows_per_micro, loss

    def __call__(self, batch: Batch, ctx: Context) -> dict[str, Any]:
        """One step over the global `batch` (on the host); returns loss and gradient norm
        as device tensors (read back only when logged: no host sync here), lr and tokens.

        Every process draws the same global batch and noise and takes its own rows of
        each micro-batch; each share's loss is its part of the global sum (divided by
        the global token count), so the gradients add up to the whole batch's.
        """
        cfg, world, objective = self.cfg, self.world, self.objective
        lr = lr_at(ctx.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        noise = objective.noise(ctx, batch)
        scored = objective.scores_first_token(ctx.model)
        target = batch.maskable if scored else batch.maskable[:, 1:]
        normalizer: float = max(int(target.sum()), 1)
        weights = objective.loss_weights(ctx, batch)
        if weights is not None:
            normalizer = float(weights[batch.maskable].sum())
        pin = ctx.device.type == "cuda"
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=ctx.device)
        rows = self.rows_per_micro
        for micro in range(cfg.grad_accum):
            lo = (micro * world.size + world.rank) * rows
            share = batch.rows(lo, lo + rows)
            share = (share.pin_memory() if pin else share).to(ctx.device)
            last = micro == cfg.grad_accum - 1
            no_sync = getattr(ctx.engine, "no_sync", None)  # DDP: all-reduce once, at the end
            with no_sync() if (no_sync and not last) else contextlib.nullcontext():
                out = self.loss(share, None if noise is None else noise.rows(lo, lo + rows),
                                normalizer)
                # DDP and FSDP average gradients over processes; the shares are parts of
                # one sum, so undo the average
                (out.loss * world.size).backward()
            total += out.loss.detach()
        # The norm is computed even with clipping off: a non-finite one must be caught
        grad_norm = torch.nn.utils.clip_grad_norm_(
            ctx.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        # One scalar read per step (a host sync on a GPU): a NaN or inf step applied would
        # poison the weights and every checkpoint after them, so it is refused first. The
        # norm is of the all-reduced gradients, so every process decides alike.
        norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        if not bool(torch.isfinite(total) & torch.isfinite(norm)):
            raise Diverged(ctx.step + 1, float(total), float(norm), Path(cfg.out_dir))
        passage("train.step")
        self.optimizer.step()
        return {"loss": total, "lr": lr, "grad_norm": grad_norm, "tokens": batch.ids.numel()}

    def read_back(self, metrics: dict[str, Any]) -> dict[str, float]:
        """A step's device tensors to numbers (a host sync; a collective when distributed:
        every process calls it at the same steps)."""
        out = dict(metrics)
        out["loss"] = float(self.world.sum(metrics["loss"]))
        norm = metrics["grad_norm"]
        out["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        return out
