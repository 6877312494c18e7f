"""Sampling: pure rules (rules.py) and the stateless step-by-step sampler (sampler.py).

May import model, tokenizer, diffusion, config, errors and util; never an objective
(an objective brings its own sampler to `sample`).
"""

from dlm.sampling.rules import (
    RULES,
    CommitRule,
    commit_counts,
    filter_logits,
    get_rule,
    sample_tokens,
    top_k_mask,
)
from dlm.sampling.sampler import Canvas, Step, denoise, final_tokens, reply_canvas, sample

__all__ = [
    "RULES",
    "Canvas",
    "CommitRule",
    "Step",
    "commit_counts",
    "denoise",
    "filter_logits",
    "final_tokens",
    "get_rule",
    "reply_canvas",
    "sample",
    "sample_tokens",
    "top_k_mask",
]
