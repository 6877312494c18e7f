"""Sampling: pure rules (rules.py) and the stateless step-by-step sampler (sampler.py)."""

from dlm.sampling.rules import RULES, commit_counts, filter_logits, sample_tokens, top_k_mask
from dlm.sampling.sampler import Step, denoise, sample

__all__ = [
    "RULES",
    "Step",
    "commit_counts",
    "denoise",
    "filter_logits",
    "sample",
    "sample_tokens",
    "top_k_mask",
]
