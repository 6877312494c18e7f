"""How a reply is denoised (`SampleConfig`): every sampling flag, request field and
API argument is one of its fields."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlm.config.names import COMMIT_RULES, DECODES, EOS_MODES, PREDICTORS
from dlm.errors import ConfigError


@dataclass
class SampleConfig:
    """How a reply is denoised from a fully masked canvas."""

    length: int | str = 32
    """Number of response tokens (the canvas); text after the first eos is dropped.
    "auto": sized by the model's length head (argmax, or sampled with
    `length_sample`, plus `length_margin`), eos kept out of it."""
    length_margin: int = 0
    """length auto: tokens added to the predicted length."""
    length_sample: bool = False
    """length auto: draw the length from the head's distribution instead of its argmax."""
    steps: int = 16
    """Denoising steps (model calls); each commits about length/steps tokens. For the
    threshold rule an upper bound."""
    temperature: float = 0.0
    """0 = greedy (argmax); otherwise categorical sampling in float64."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set with this much probability (1 = off)."""
    block_length: int = 0
    """Semi-autoregressive blocks decoded left to right (0 = the whole length at once)."""
    rule: str = "low_confidence"
    """Commit rule: low_confidence, margin, entropy, random (a fixed count per step), or
    threshold (every token at least `threshold` sure; `steps` is then an upper bound)."""
    threshold: float = 0.9
    """Confidence the threshold rule commits at (Fast-dLLM's recipe is 0.9)."""
    remask: float = 0.0
    """ReMDM-style revision: each step re-masks this share of the block's earlier
    commits, the least confident first; the share decays to zero by the last step."""
    eos: str = "allow"
    """allow; defer: rank eos last among the candidates, so the words settle before the
    length (training pads replies with eos, so eos is otherwise the surest prediction
    and sweeps in from the right); ban: never sample eos, so the reply is exactly
    `length` tokens."""
    trim_eos: bool = True
    """Drop the text after the first eos (off: keep it, to see what the canvas held)."""
    cfg_scale: float = 0.0
    """Classifier-free guidance: uncond + (scale + 1)(cond - uncond); 0 = off."""
    cache: str = "none"
    """Fast-dLLM key/value reuse within a block (use with `block_length`): none; prefix
    (the prompt and finished blocks are read from a cache refreshed once per block);
    dual (the masked blocks after this one too). Approximate: faster, at a measured cost."""
    repetition_penalty: float = 1.0
    """CTRL's penalty on ids already in the reply (1 = off): their logits are divided by
    it (multiplied when negative). Diffusion: the ids committed so far; AR: those
    written so far. eos is exempt."""
    no_repeat_ngram: int = 0
    """AR only: never write an n-gram of this size twice in a reply (0 = off)."""
    predictor: str | None = None
    """Score-entropy models (sedd-*): the reverse step, tweedie (tau-leaping with the
    Tweedie denoiser, exact for one step of the learned score) or euler (first order);
    None: the objective's own (`ScoreEntropy.predictor`, tweedie)."""
    decode: str = "diffusion"
    """diffusion: the model's own sampler; speculative: the model drafts, an AR verifier
    (`--verifier`) keeps what it agrees with, so the reply is the verifier's (greedy:
    identical; sampling: distributed as its), in fewer verifier calls."""
    draft_length: int = 4
    """speculative: tokens drafted per round (k), the first round's when adaptive."""
    draft_steps: int = 1
    """speculative: drafter calls per draft (at most one per drafted token)."""
    adaptive_draft: bool = True
    """speculative: k doubles while whole drafts are kept, and drops to one past the
    longest kept run after a refusal."""
    max_draft_length: int = 16
    """speculative: the largest k adaptive drafting reaches."""
    draft_window: int = 0
    """speculative: reply positions the drafter sees past its drafts (0: the whole reply
    canvas, as it was trained). Fewer is cheaper per drafter call; the verifier keeps the
    reply exact either way, so only the share of drafts kept can change."""
    seed: int | None = None
    """Seed for reproducible samples."""

    def __post_init__(self) -> None:
        # Each check says what is allowed (so NaN, which fails every comparison, is refused)
        # and names its field, which the server answers with as the error's `param`.
        checks = (
            ("decode", self.decode in DECODES,
             f"decode must be one of {', '.join(DECODES)}, got {self.decode!r}"),
            ("draft_length", self.draft_length >= 1,
             f"draft_length must be >= 1, got {self.draft_length}"),
            ("draft_steps", self.draft_steps >= 1,
             f"draft_steps must be >= 1, got {self.draft_steps}"),
            ("max_draft_length", self.max_draft_length >= self.draft_length,
             f"max_draft_length must be >= draft_length ({self.draft_length}), got "
             f"{self.max_draft_length}"),
            ("draft_window", self.draft_window >= 0,
             f"draft_window must be >= 0, got {self.draft_window}"),
            ("predictor", self.predictor is None or self.predictor in PREDICTORS,
             f"predictor must be tweedie or euler, got {self.predictor!r}"),
            ("repetition_penalty", self.repetition_penalty > 0,
             f"repetition_penalty must be > 0, got {self.repetition_penalty}"),
            ("no_repeat_ngram", self.no_repeat_ngram >= 0,
             f"no_repeat_ngram must be >= 0, got {self.no_repeat_ngram}"),
            ("length", self.length == "auto" or (isinstance(self.length, int)
                                                 and self.length >= 1),
             f"length must be a number of tokens >= 1 or 'auto', got {self.length!r}"),
            ("length_margin", self.length_margin >= 0,
             f"length_margin must be >= 0, got {self.length_margin}"),
            ("steps", self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            # finite: an infinite temperature turns the -inf of filtered logits into NaN
            ("temperature", 0 <= self.temperature < math.inf,
             f"temperature must be >= 0 and finite, got {self.temperature}"),
            ("top_p", 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            ("block_length", self.block_length >= 0,
             f"block_length must be >= 0, got {self.block_length}"),
            ("top_k", self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            ("rule", self.rule in COMMIT_RULES,
             f"unknown commit rule {self.rule!r}; choose one of {', '.join(COMMIT_RULES)}"),
            ("eos", self.eos in EOS_MODES,
             f"eos must be one of {', '.join(EOS_MODES)}, got {self.eos!r}"),
            ("threshold", 0 < self.threshold <= 1,
             f"threshold must be in (0, 1], got {self.threshold}"),
            ("remask", 0 <= self.remask < 1, f"remask must be in [0, 1), got {self.remask}"),
            ("cfg_scale", self.cfg_scale >= 0, f"cfg_scale must be >= 0, got {self.cfg_scale}"),
            ("cache", self.cache in ("none", "prefix", "dual"),
             f"cache must be one of none, prefix, dual, got {self.cache!r}"),
            # what torch.Generator.manual_seed takes (a larger one overflowed mid-request)
            ("seed", self.seed is None or -(2**63) <= self.seed < 2**64,
             f"seed must be a 64-bit integer (-2**63 to 2**64 - 1), got {self.seed}"),
        )
        for name, ok, message in checks:
            if not ok:
                raise ConfigError(message, name)
