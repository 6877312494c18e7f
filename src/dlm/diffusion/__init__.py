"""Masked (absorbing-state) diffusion: schedule, corruption and loss, as pure functions.

May import errors and util only: nothing that knows a model or a tokenizer.
"""

from dlm.diffusion.block import block_diffusion_loss
from dlm.diffusion.corruption import corrupt, drop_prompts, sample_times
from dlm.diffusion.loss import LossOutput, diffusion_loss, nelbo_terms, subs_log_probs
from dlm.diffusion.schedule import SCHEDULES, Schedule, get_schedule

__all__ = [
    "SCHEDULES",
    "LossOutput",
    "Schedule",
    "block_diffusion_loss",
    "corrupt",
    "diffusion_loss",
    "drop_prompts",
    "get_schedule",
    "nelbo_terms",
    "sample_times",
    "subs_log_probs",
]
