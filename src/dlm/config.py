"""Typed configuration: model presets, diffusion, sampling and training settings.

Every config is a frozen-free dataclass with a JSON round trip, so a checkpoint's
`config.json` rebuilds exactly the model that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from dlm.errors import ConfigError
from dlm.util.wellformed import first_invalid

T = TypeVar("T")

# Names the checks below accept; the modules that implement them import them from here,
# so config.py imports nothing of dlm above it.
EOS_MODES = ("allow", "defer", "ban")
COMMIT_RULES = ("low_confidence", "margin", "entropy", "random", "threshold")
"""The commit rules' names; `dlm.sampling.rules.RULES` implements each (a test checks)."""
PREDICTORS = ("tweedie", "euler")
DECODES = ("diffusion", "speculative")  # speculative: a diffusion drafter, an AR verifier
PADDINGS = ("eos", "rainbow", "eos_weight", "batch")
"""How replies are padded (`dlm.diffusion.padding` implements each)."""


@dataclass
class ModelConfig:
    """Shape of the Transformer denoiser (also the autoregressive baseline when `causal`)."""

    vocab_size: int = 2048
    """Number of token ids, special tokens included (set from the tokenizer)."""
    d_model: int = 128
    """Width of the residual stream."""
    n_layers: int = 4
    """Number of Transformer blocks."""
    n_heads: int = 4
    """Attention heads; `d_model` must be divisible by it."""
    d_ff: int = 352
    """Hidden width of the SwiGLU MLP."""
    max_seq_len: int = 256
    """Longest sequence the rotary tables are built for."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding."""
    causal: bool = False
    """True turns the denoiser into the autoregressive baseline (causal attention)."""
    dropout: float = 0.0
    """Dropout on attention and MLP outputs."""
    shift: bool = False
    """The logits at position i predict token i + 1, as in AR (a diffusion model adapted
    from an AR checkpoint keeps its head's meaning): a masked position j reads the
    logits at j - 1."""
    length_classes: int = 0
    """A length head: predicts the reply's token length (1..length_classes) from the
    prompt (0 = none)."""
    time_conditioning: bool = False
    """adaLN: every block's norms are shifted, scaled and gated by an embedding of the
    noise level (SEDD's and MDLM's DiT). Set by objectives whose input does not tell the
    noise level (score entropy, Gaussian diffusion); masked diffusion stays time-free."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("head dimension must be even for rotary embeddings")


# Named sizes. Parameter counts (printed by `dlm train --dry-run`) depend on the
# vocabulary; the figures below are for the default vocabularies.
PRESETS: dict[str, dict[str, Any]] = {
    # ~1.2M parameters with a 2k vocabulary: the CPU demo.
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, d_ff=352, max_seq_len=256),
    # ~25M parameters (+ embeddings): a real small model.
    "small": dict(d_model=512, n_layers=8, n_heads=8, d_ff=1376, max_seq_len=512),
    # ~110M parameters with a 32k vocabulary: the MDLM / GPT-2 small size.
    "base": dict(d_model=768, n_layers=12, n_heads=12, d_ff=2048, max_seq_len=1024),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset (`tiny`, `small`, `base`), with overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


@dataclass
class DiffusionConfig:
    """The forward (masking) process and its loss."""

    schedule: str = "linear"
    """Noise schedule name: `linear` (alpha = 1 - t), `loglinear` (MDLM) or `cosine`."""
    eps: float = 1e-3
    """Smallest time drawn, so the 1/t weight stays finite."""
    antithetic: bool = True
    """Stratify t over the batch (u_i = (r + i/n) mod 1): same expectation, lower variance."""
    padding: str = "rainbow"
    """How chat replies fill the canvas in masked diffusion (see `dlm.diffusion.padding`;
    the AR baseline and block diffusion pad with eos). The default, rainbow, measured
    best (benchmarks/reply-quality/padding). eos (LLaDA: eos to
    the canvas, in the loss; bounds -log p(reply + padding)); rainbow (one eos, then a
    cycle of `rainbow_pads` distinct pad tokens; bounds -log p(reply + its cycle));
    eos_weight (eos padding that weighs one token in all in the training loss, which
    is then not a bound; validation scores it unweighted); batch (padded only to the
    longest reply of a length-grouped batch; bounds -log p(reply + that padding)). In
    every mode the canvas NELBO per reply token bounds -log p(reply) per token."""
    rainbow_pads: int = 7
    """rainbow: distinct pad tokens in the cycle (Rainbow Padding: 7 suffice)."""

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ConfigError(f"diffusion.padding must be one of {', '.join(PADDINGS)}, "
                              f"got {self.padding!r}")
        if self.rainbow_pads < 1:
            raise ConfigError(f"diffusion.rainbow_pads must be at least 1, got "
                              f"{self.rainbow_pads}")




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
    predictor: str = "tweedie"
    """Score-entropy models (sedd-*): the reverse step, tweedie (tau-leaping with the
    Tweedie denoiser, exact for one step of the learned score) or euler (first order)."""
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
            ("predictor", self.predictor in PREDICTORS,
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


@dataclass
class TrainConfig:
    """One training run: data, model size, optimisation, logging and checkpoints."""

    out_dir: str = "runs/dlm"
    """Run directory: checkpoints (`final/`, `last/`) and `metrics.jsonl`."""
    data: list[str] = field(default_factory=list)
    """Training files (TSV, JSONL, TXT, DailyDialog zip), or one directory written by
    `dlm data`; empty = the embedded chatterbot-corpus English."""
    init_from: str | None = None
    """Start from this checkpoint's weights and tokenizer (fine-tuning); its model shape
    replaces `preset`. The optimiser and step count start fresh."""
    context: str = "history"
    """For dialogue files: a reply's prompt is the whole earlier dialogue, or `pair`."""
    preset: str = "tiny"
    """Model size preset: tiny, small or base."""
    objective: str = "diffusion"
    """What the run trains (`dlm.objectives`): diffusion (masked diffusion, bidirectional),
    block (BD3-LM: masked diffusion within blocks of `block_size`, blocks left to right),
    uniform (uniform-noise diffusion), sedd-absorbing / sedd-uniform (score entropy),
    continuous (Gaussian diffusion over embeddings), dual (AR + block diffusion in one
    model, decoding by drafting and verifying itself) or ar (the autoregressive baseline:
    the same Transformer with a causal mask and next-token loss on the same tokens)."""
    block_size: int = 4
    """objective block and dual: tokens per block (L'); must divide prompt_len and
    response_len (chat data) or the packed length (text). Smaller blocks are closer to AR,
    larger to MDLM; dual drafts block_size - 1 tokens per forward."""
    vocab_size: int = 2048
    """Target BPE vocabulary size (special tokens included)."""
    prompt_len: int = 32
    """Longest prompt in tokens (longer prompts keep their last tokens)."""
    response_len: int = 32
    """Response canvas in tokens; shorter replies are padded with eos (in the loss)."""
    drop_long: bool = False
    """Leave out chat examples whose response does not fit the canvas (default: cut them)."""
    seq_len: int = 0
    """Plain-text pretraining: packed sequence length (0 = prompt_len + response_len)."""
    short_seq_fraction: float = 0.01
    """Plain-text pretraining: share of batches with a random shorter length (LLaDA: 1%)."""
    cfg_dropout: float = 0.1
    """Chat diffusion training: share of examples whose prompt is replaced by masks, so the
    model also learns replies without a prompt (classifier-free guidance at sampling)."""
    val_examples: int = 2000
    """Validation uses at most this many examples (or text windows), the same ones each time."""
    max_steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 64
    """Examples per step."""
    lr: float = 3e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio."""
    warmup_steps: int = 50
    """Linear warmup steps."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not applied to norms and biases)."""
    dropout: float | None = None
    """Dropout on attention and MLP outputs (None: the preset's or the checkpoint's)."""
    length_head: bool = False
    """Chat diffusion: train a length head jointly (predicts the reply's token length from
    the prompt; `--length auto` then sizes the canvas from it)."""
    length_weight: float = 0.1
    """Weight of the length head's cross-entropy in the loss."""
    anneal_steps: int = 0
    """Diffusion from an AR checkpoint (`init_from`): attention goes from causal to full
    over these steps (the causal mask OR a Bernoulli(step / anneal_steps) mask)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    grad_accum: int = 1
    """Micro-batches per optimiser step: `batch_size` is the global batch of one step,
    split over grad_accum micro-batches and over the processes (torchrun)."""
    parallel: str = "ddp"
    """Several processes: ddp (each holds the whole model) or fsdp (parameters, gradients
    and optimiser state sharded over the processes, for models that do not fit one)."""
    compile: str = "auto"
    """torch.compile the model: auto (on CUDA), on, off."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: less memory, ~1/3 more
    compute."""
    log_every: int = 0
    """Read the loss back and write a metrics row every this many steps (0 = auto: every
    step on CPU, every 10 on GPU, where a read-back stalls the device)."""
    lowercase: bool = False
    """Lowercase all text (and prompts at generation): fewer, denser tokens for tiny corpora."""
    dedupe: bool = True
    """Drop repeated examples (compared case-insensitively) before the split."""
    val_fraction: float = 0.05
    """Share of examples held out for validation."""
    eval_every: int = 250
    """Validation NELBO and sample replies every this many steps (0 = only at the end)."""
    save_every: int = 500
    """Checkpoint every this many steps (0 = only at the end)."""
    tensorboard: bool = True
    """Also log every metric to OUT_DIR/tensorboard when the `tensorboard` package is installed."""
    seed: int = 0
    """Seed for the split, the initialisation, batches and masking."""
    device: str = "auto"
    """auto, cpu or cuda."""
    bf16: str = "auto"
    """bf16 autocast: auto (CUDA, or a CPU with bf16 matrix instructions), on, off."""
    val_prompts: list[str] = field(default_factory=lambda: ["hello", "how are you"])
    """Prompts whose replies are shown with their denoising at each evaluation."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """The masking process and its loss."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields of ModelConfig that replace the preset's."""

    @property
    def packed_len(self) -> int:
        return self.seq_len or self.prompt_len + self.response_len


@dataclass
class ServeConfig:
    """`dlm serve`: where it listens, who may call it, and how much one request may ask."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback only unless you mean to expose it."""
    port: int = 8000
    """Port to listen on."""
    api_key: str | None = None
    """When set, every /v1 route needs `Authorization: Bearer <key>` (or DLM_API_KEY)."""
    cors_origins: list[str] = field(default_factory=list)
    """Origins allowed to call the API from a browser (empty: CORS off)."""
    max_prompt_tokens: int = 512
    """Longest prompt, in tokens, after the chat template."""
    max_tokens: int = 512
    """Longest reply canvas (`max_tokens`)."""
    max_steps: int = 512
    """Most denoising steps per request."""
    max_n: int = 8
    """Most replies per request (`n`)."""
    max_request_bytes: int = 65_536
    """Largest request body."""
    max_json_depth: int = 16
    """Deepest nesting of arrays and objects in a request body (checked before parsing)."""
    max_pattern_chars: int = 256
    """Longest edit `span` pattern (run by RE2, in time linear in the text)."""
    shutdown_timeout_s: float = 5.0
    """On SIGTERM or Ctrl-C: open requests get this long, then are cut and the server exits."""
    max_cfg_scale: float = 5.0
    """Classifier-free guidance scales above this are clamped to it."""
    max_batch: int = 16
    """Dynamic batching: most rows denoised in one forward pass."""
    max_wait_ms: float = 20.0
    """Dynamic batching: how long the first request waits for company."""
    max_queue: int = 256
    """Requests waiting or running; beyond it the server answers 503 with Retry-After."""

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_tokens", "max_steps", "max_n",
                     "max_request_bytes", "max_json_depth", "max_pattern_chars",
                     "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a dataclass from a dict, naming any unknown field and where it came from."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    kwargs = dict(data)
    if cls is TrainConfig and isinstance(kwargs.get("diffusion"), dict):
        kwargs["diffusion"] = from_dict(DiffusionConfig, kwargs["diffusion"], f"{source}.diffusion")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from a JSON file (fields as in `TrainConfig`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a leading BOM is dropped
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of TrainConfig fields")
    if (found := first_invalid(data)) is not None:  # a JSON escape of a lone surrogate
        raise ConfigError(f"{path}: {found[0]}: {found[1]}", found[0])
    return from_dict(TrainConfig, data, str(path))
