"""A training run's settings (`TrainConfig`) and its forward process (`DiffusionConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlm.config.names import PADDINGS
from dlm.errors import ConfigError


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
    lora_rank: int = 0
    """LoRA adapters of this rank on `init_from`'s frozen weights (peft); 0 = full
    fine-tuning. Checkpoints then hold the adapters and the base's path and hash."""
    lora_alpha: float = 16.0
    """LoRA's scale numerator: the update is (alpha / rank) B A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input."""
    lora_targets: list[str] = field(default_factory=lambda: ["qkv", "proj", "gate_up",
                                                             "down"])
    """The linear layers adapted, by name (with separate projections: q, k, v, gate, up)."""
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
    vocab_size: int = 8192
    """Target BPE vocabulary size (special tokens included), when the run trains its own
    tokenizer (data files rather than a `dlm data` directory). One value with `dlm data`'s
    (`DataConfig.vocab_size` is this field), so the same files give the same tokenizer by
    either door; 8,192 is what the shipped model's data were prepared with. BPE stops
    early on a small corpus (the embedded chatterbot corpus reaches about 4,400)."""
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
