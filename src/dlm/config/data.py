"""`dlm data`'s settings (`DataConfig`): which sources, how they are cleaned, split and
mixed, and the tokenizer trained on them."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlm.config.train import TrainConfig


@dataclass
class DataConfig:
    """Settings of `dlm data` (each is a flag of the command, `sources` its arguments)."""

    sources: list[str] = field(default_factory=list)
    """NAME=LOCATION@SPLIT, NAME= and @SPLIT optional (a name for `mix`, a hub split):
    a file (.tsv .jsonl .txt, DailyDialog .zip), a folder or .parquet/.json/.csv in a hub
    dataset's layout, or a hub id (owner/name)."""
    out_dir: str = "data/prepared"
    """Output directory: the cleaned splits, the tokenizer and the token shards."""
    format: str = "auto"
    """Row layout of JSONL and hub rows: auto (detect per row), messages, conversations,
    turns, dialog, pairs, instances, text (see dlm.data.rows)."""
    prompt_field: str | None = None
    """Field holding the prompt (none: the layout's own name for it)."""
    response_field: str | None = None
    """Field holding the reply (none: the layout's own name for it)."""
    context_field: str | None = None
    """Field appended to the prompt (Dolly's context)."""
    hub_split: str | None = None
    """The hub split to read as training data (none: train, plus validation if any)."""
    context: str = "history"
    """history: each reply's prompt is the whole earlier dialogue; pair: only the turn before."""
    lowercase: bool = False
    """Lowercase all text."""
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
    vocab_size: int = TrainConfig.vocab_size
    """BPE vocabulary to train: `dlm train`'s (`TrainConfig.vocab_size`, where the value
    and its reason are written), so a tokenizer does not depend on the door the files
    came in by."""
    tokenizer: str | None = None
    """A tokenizer.json or checkpoint directory to use instead of training a new one."""
    seed: int = 0
    """Seed of the split and the mix."""
