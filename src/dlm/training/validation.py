"""The evaluation of a training run: the objective's held-out figures on the fixed
validation set, the denoising traces of replies to the run's `val_prompts`, and
whether an evaluation is the best so far.

It is separate from the loop so that what an evaluation measures (and leaves as it
found it: the model back in training mode) can be checked without training, and the
loop only decides when to evaluate and what to do with the figures.
"""

from __future__ import annotations

from typing import Any

from dlm.config import TrainConfig
from dlm.data import EncodedSet
from dlm.objectives import Context, Objective
from dlm.pipeline import DiffusionLM
from dlm.sampling import Step

Samples = list[tuple[str, list[Step]]]
"""Each validation prompt with the steps of its reply."""


class RunEval:
    """Evaluates a run's model on `val`; see the module docstring."""

    def __init__(self, cfg: TrainConfig, objective: Objective, val: EncodedSet):
        self.cfg, self.objective, self.val = cfg, objective, val

    def validation(self, ctx: Context) -> dict[str, float]:
        """The objective's held-out figures: diffusion's NELBO (4 draws of t) and its
        perplexity bound, or AR's exact NLL and perplexity (`Objective.validation`)."""
        return self.objective.validation(ctx, self.val)

    def evaluate(self, ctx: Context) -> tuple[dict[str, float], Samples]:
        """The held-out figures (none without a validation set) and, for chat, a reply
        to each validation prompt (the settings every command starts from), every
        denoising step kept."""
        cfg = self.cfg
        ctx.model.eval()
        metrics = self.validation(ctx) if len(self.val) else {}
        samples = []
        lm = DiffusionLM(ctx.model, ctx.tokenizer, cfg.prompt_len, cfg.response_len,
                         cfg.lowercase, self.objective)
        prompts = cfg.val_prompts if ctx.data_kind == "chat" else []
        for prompt in prompts:
            steps: list[Step] = []
            with ctx.autocast():
                lm.generate(prompt, lm.decoding(length=cfg.response_len),
                            on_step=steps.append)
            samples.append((prompt, steps))
        ctx.model.train()
        return metrics, samples


def new_best(ev: dict[str, float], best: dict[str, Any] | None,
             step: int) -> dict[str, Any] | None:
    """The record of `ev` at `step` when its validation NELBO (AR: NLL) is lower than
    `best`'s, or the first; None when it is not (or has no such figure)."""
    key = "val_nll" if "val_nll" in ev else "val_nelbo"
    if key not in ev or (best is not None and ev[key] >= best["value"]):
        return None
    return {"step": step, "metric": key, "value": ev[key]}
