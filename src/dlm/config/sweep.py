"""`dlm sweep`'s settings (`SweepConfig`): the decoding settings it crosses and the
held-out prompts it measures them on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SweepConfig:
    """`dlm sweep`: commit rules x steps (x remasking, x thresholds, x guidance, x cache).
    Every setting not swept, and a swept one left empty, is the checkpoint's own default
    decoding (`lm.decoding()`), so a row differs from what the model's users get only in
    what the row names."""

    rule: list[str] = field(default_factory=list)
    """Commit rules to sweep (empty: all of them)."""
    steps: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    """Step counts for the fixed-count rules (the threshold rule's budget is the reply
    length)."""
    remask: list[float] = field(default_factory=list)
    """Remasking rates (empty: the model's default decoding's)."""
    threshold: list[float] = field(default_factory=lambda: [0.9, 0.7, 0.5])
    """Confidences the threshold rule commits at."""
    cfg_scale: list[float] = field(default_factory=list)
    """Classifier-free guidance scales (empty: the model's default decoding's)."""
    cache: list[str] = field(default_factory=list)
    """Fast-dLLM cache modes: none, prefix, dual (empty: the model's default decoding's)."""
    length: int | None = None
    """Reply tokens (none: the model's default decoding's, its canvas)."""
    eos: str | None = None
    """allow, defer or ban (none: the model's default decoding's)."""
    block_length: int | None = None
    """Semi-autoregressive blocks (none: the model's default decoding's)."""
    repetition_penalty: float | None = None
    """Repetition penalty of every row (none: the model's default decoding's; 1 to compare
    with sweeps made before it was a default)."""
    seed: int = 0
    """Seed of every row, so the random rule (and any sampling) gives the same table every
    run."""
    prompts: int = 128
    """Held-out validation prompts."""
    batch_size: int = 64
    """Replies denoised together."""
    data: list[str] = field(default_factory=list)
    """Held-out data: a `dlm data` directory or files (empty: the run's own)."""
    judge: str | None = None
    """AR checkpoint that scores the replies (generative perplexity)."""
    out_dir: str | None = None
    """Where sweep.json and sweep.md go (none: CKPT/sweep)."""
