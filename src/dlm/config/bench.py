"""`dlm bench`'s settings (`BenchConfig`): what is timed, on which models, and where the
figures go."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BenchConfig:
    """`dlm bench`: training tokens/s, MFU and peak memory per preset, then generation
    speed of diffusion against the AR baseline. `loader`, `serve` or `peer` measure that
    instead; `accuracy`, `speculative` and `self_speculative` add their tables."""

    preset: list[str] = field(default_factory=lambda: ["tiny", "small"])
    """Presets to time training for (repeat; 'none' for no training)."""
    generate: str = "small"
    """Preset whose diffusion and AR models generate ('none': skip)."""
    ckpt: str | None = None
    """Generate with this trained diffusion checkpoint (with --ar-ckpt)."""
    ar_ckpt: str | None = None
    """The AR baseline checkpoint to compare --ckpt with."""
    length: list[int] = field(default_factory=lambda: [32, 128, 512])
    """Reply lengths to generate (repeat)."""
    batch: list[int] = field(default_factory=list)
    """Generation batches (repeat; empty: 1 and 8 on CPU, 1 and 64 on GPU)."""
    judge: str | None = None
    """With trained --ckpt and --ar-ckpt: an AR checkpoint (trained apart from both) that
    scores each sampler's replies, so speed stands beside quality."""
    accuracy: list[str] = field(default_factory=list)
    """Also compare this checkpoint in float32 and bf16 autocast: held-out likelihood and
    greedy replies (repeat)."""
    speculative: list[int] = field(default_factory=list)
    """Also: speculative decoding with --ckpt drafting and --ar-ckpt verifying, at this
    draft length k (repeat; adaptive k is added), against AR at identical output."""
    draft_steps: list[int] = field(default_factory=lambda: [1])
    """--speculative: drafter calls per draft (repeat)."""
    draft_window: list[int] = field(default_factory=lambda: [0])
    """--speculative: reply positions the drafter sees past its drafts (repeat; 0: the
    whole canvas)."""
    draft_cache: list[str] = field(default_factory=lambda: ["none"])
    """--speculative: the drafter's cache (repeat): none, or prefix (the committed
    prefix's keys kept across rounds)."""
    speculative_prompts: int | None = None
    """--speculative: held-out prompts every cell replies to (none: the largest
    --batch)."""
    speculative_dtype: str = "float32"
    """--speculative: the drafter's and verifier's weights (float32 or bfloat16); AR
    decoding is timed in the same precision (and in float32 too, each ratio then also
    given against the faster AR)."""
    self_speculative: bool = False
    """Also: a dual --ckpt (--objective dual) drafting and verifying itself, against AR
    decoding of its own AR half at identical output (--speculative-prompts and
    --speculative-dtype apply)."""
    loader: str | None = None
    """Instead: time the training loader on this `dlm data` directory's tokens, cut or
    repeated to each --loader-tokens size, and record its memory."""
    loader_tokens: list[int] = field(default_factory=lambda: [1_000_000, 50_000_000])
    """Corpus sizes for --loader (repeat)."""
    serve: list[str] = field(default_factory=list)
    """Instead: load-test `dlm serve` with this checkpoint (repeat): --serve-requests
    streaming chats at once, then one at a time."""
    serve_requests: int = 64
    """--serve: requests per pass."""
    serve_max_batch: int = 16
    """--serve: the server's --max-batch."""
    peer: str | None = None
    """Instead: a checkout of nathan-barry/tiny-diffusion, run side by side with dlm at
    its size (training tokens/s; with --peer-minutes or --peer-steps, also 240-token
    samples)."""
    peer_minutes: float = 0.0
    """--peer: then train both this many minutes each and compare 240-token samples (0:
    throughput only)."""
    peer_steps: int = 0
    """--peer: or train both this many optimiser steps each (equal tokens seen;
    unaffected by other load) and compare 240-token samples."""
    peer_text: str | None = None
    """--peer: the training text (none: ../shared/data/tiny_shakespeare)."""
    repeats: int = 3
    """Timed runs per figure (at most)."""
    batch_size: int = 8
    """Training (and loader) batch."""
    seq_len: int = 256
    """Training sequence length."""
    bf16: bool = False
    """bf16 autocast for training and generation."""
    activation_checkpointing: bool = False
    """Train with activation checkpointing."""
    out_dir: str = "benchmarks"
    """Where the JSON and Markdown go."""
    name: str = "bench"
    """File name stem of the results."""
