"""The data a training run reads: its token shards, the batch sampler over them and the
fixed validation set, from a `dlm data` directory or from files split for the run.

Which padding the replies get is the objective's (`Objective.padding`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dlm.config import TrainConfig
from dlm.data import (
    EncodedSet,
    Example,
    ReadReport,
    example_texts,
    load_examples,
    split_examples,
)
from dlm.data.batch_samplers import ChatSampler, PackedSampler, validation_set
from dlm.data.prepare import PREPARED, is_prepared, shard_dir, write_jsonl
from dlm.data.shard_cache import ensure_shards
from dlm.data.shards import ShardSet
from dlm.errors import DataError
from dlm.objectives import Objective
from dlm.tokenizer import DLMTokenizer


@dataclass
class PreparedData:
    tokenizer: DLMTokenizer
    sampler: ChatSampler | PackedSampler
    """Training batches, read from the token shards."""
    val: EncodedSet
    """The fixed validation examples (or text windows) as tensors."""
    reports: list[ReadReport]
    kind: str
    """chat or text (packed pretraining)."""
    folder: Path
    """Where the normalised JSONL and the token shards are."""


def _write_splits(cfg: TrainConfig, folder: Path) -> tuple[dict[str, Path], list[ReadReport],
                                                           list[Example]]:
    """Files (or the embedded corpus) -> seeded split -> `train.jsonl`, `validation.jsonl`."""
    examples, reports = load_examples(cfg.data, cfg.lowercase, cfg.dedupe, cfg.context)
    train_ex, val_ex = split_examples(examples, cfg.val_fraction, cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"train": folder / "train.jsonl", "validation": folder / "validation.jsonl"}
    write_jsonl(paths["train"], train_ex)
    write_jsonl(paths["validation"], val_ex)
    return paths, reports, train_ex


def prepare_data(cfg: TrainConfig, objective: Objective,
                 tokenizer: DLMTokenizer | None = None, say=lambda text: None,
                 reuse: bool = False) -> PreparedData:
    """Token shards for the run and the samplers over them.

    `objective`: the run's bound objective (how it pads replies). `cfg.data` is either
    one directory written by `dlm data` (its tokenizer is used unless one is given) or
    files, which are read, split (seeded) and written to `OUT_DIR/data/` first; a
    tokenizer is trained on the training split if none is given. Tokenizing happens
    once: the shards are reused while the tokenizer and the JSONL stay the same. `reuse`:
    the split files are already written (by process 0 of a multi-process run) and
    `tokenizer` is theirs; only read them.
    """
    prepared = [d for d in cfg.data if is_prepared(d)]
    reports: list[ReadReport] = []
    if prepared:
        if len(cfg.data) > 1:
            raise DataError(f"{prepared[0]} is a `dlm data` directory; train on it alone "
                            "(mix sources with `dlm data --mix`)")
        folder = Path(prepared[0])
        paths = {s: folder / f"{s}.jsonl" for s in ("train", "validation")
                 if (folder / f"{s}.jsonl").is_file()}
        tokenizer = tokenizer or DLMTokenizer.load(folder / "tokenizer.json")
        info = json.loads((folder / PREPARED).read_text())
        say(f"{folder} (from `dlm data`): " + ", ".join(
            f"{split} {info['examples'][split]:,} examples, {info['tokens'][split]:,} tokens"
            for split in info.get("tokens", {})))
        if info.get("config", {}).get("lowercase"):
            cfg.lowercase = True  # so prompts are lowercased at generation too
    elif reuse:
        folder = Path(cfg.out_dir) / "data"
        paths = {s: folder / f"{s}.jsonl" for s in ("train", "validation")}
    else:
        folder = Path(cfg.out_dir) / "data"
        paths, reports, train_ex = _write_splits(cfg, folder)
        if tokenizer is None:
            tokenizer = DLMTokenizer.train(example_texts(train_ex), cfg.vocab_size)
    padding = objective.padding(cfg)
    if padding == "rainbow":  # the pad tokens join the vocabulary
        tokenizer = tokenizer.with_rainbow(cfg.diffusion.rainbow_pads)
    cache = shard_dir(folder, tokenizer)
    ensure_shards(paths, tokenizer, cache, say)
    shards = ShardSet.open(cache)
    tok = tokenizer
    if shards.meta["kind"] == "text":
        sampler: ChatSampler | PackedSampler = PackedSampler(
            shards.train, cfg.batch_size, cfg.packed_len, cfg.short_seq_fraction, cfg.seed)
    else:
        sampler = ChatSampler(shards.train, cfg.batch_size, cfg.prompt_len, cfg.response_len,
                              tok.pad_id, tok.eos_id, cfg.drop_long, cfg.seed,
                              padding, pad_cycle(cfg, padding, tok))
    val = EncodedSet(torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long))
    if shards.validation is not None and len(shards.validation):
        val = validation_set(shards.validation, cfg.val_examples, cfg.prompt_len,
                             cfg.response_len, cfg.packed_len, tok.pad_id, tok.eos_id,
                             cfg.drop_long, padding, pad_cycle(cfg, padding, tok))
    return PreparedData(tok, sampler, val, reports, shards.meta["kind"], folder)


def pad_cycle(cfg: TrainConfig, padding: str, tok: DLMTokenizer) -> list[int]:
    """The rainbow pad ids a run pads with (none unless its padding is rainbow)."""
    return tok.pad_cycle[: cfg.diffusion.rainbow_pads] if padding == "rainbow" else []
