"""`dlm data`'s settings (`DataConfig`): which sources, how they are cleaned, split and
mixed, and the tokenizer trained on them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Settings of `dlm data` (each is a flag of the command)."""

    sources: list[str] = field(default_factory=list)
    """`[NAME=]LOCATION[@SPLIT]`: a file, a folder in a hub layout, or a hub id."""
    out_dir: str = "data/prepared"
    format: str = "auto"
    """Row layout of JSONL and hub rows (see dlm.data.rows); auto = detect per row."""
    prompt_field: str | None = None
    response_field: str | None = None
    context_field: str | None = None
    hub_split: str | None = None
    """The hub split to read as training data (default: train, plus validation if any)."""
    context: str = "history"
    """history: each reply's prompt is the whole earlier dialogue; pair: only the turn before."""
    lowercase: bool = False
    min_chars: int = 1
    """Replies shorter than this (after cleaning) are dropped."""
    max_response_chars: int = 1000
    """Replies longer than this are dropped (long answers would only be cut at training)."""
    max_prompt_chars: int = 2000
    """Prompts longer than this are dropped."""
    val_fraction: float = 0.05
    """Share of dialogues held out from sources that have no validation split."""
    mix: dict[str, float] = field(default_factory=dict)
    """Source name -> share of the training examples (sources left out are not used)."""
    vocab_size: int = 8192
    tokenizer: str | None = None
    """A tokenizer.json or checkpoint directory to use instead of training a new one."""
    seed: int = 0
