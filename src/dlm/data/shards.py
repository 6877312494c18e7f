"""Token shards: a corpus tokenized once into memory-mapped arrays, read by training.

A shard directory holds, per split, `SPLIT.bin` (every token id back to back,
`uint16` when the vocabulary fits, else `uint32`) and `SPLIT.idx.npy` (int64 rows
`start, response_start, end`: where each example's tokens lie and where its response
begins; plain text is all response), plus `meta.json` (format, kind, tokenizer
fingerprint, source hashes, counts). Training reads batches straight from the
memory maps, so its memory does not grow with the corpus.

This module opens a shard directory and checks it; `shard_cache` builds one (and
rebuilds it when stale), `batch_samplers` draws the training batches from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlm.errors import DataError

SHARD_FORMAT = 1


def read_shard_meta(folder: Path) -> dict:
    """A shard directory's meta.json, or a one-line DataError naming what is wrong."""
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the shard metadata ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: damaged ({str(exc)[:120]}); delete {folder} and run "
                        "`dlm data` again") from None
    splits = meta.get("splits") if isinstance(meta, dict) else None
    if not isinstance(splits, dict) or not splits or not all(
            isinstance(v, dict) and {"tokens", "dtype"} <= set(v) for v in splits.values()):
        raise DataError(f"{path}: not dlm shard metadata (no splits with tokens and dtype); "
                        f"delete {folder} and run `dlm data` again")
    return meta


class TokenShard:
    """One split as memory maps: `example(i)` gives its prompt and response ids."""

    def __init__(self, folder: Path, split: str, meta: dict | None = None):
        meta = meta or read_shard_meta(folder)
        info = meta["splits"][split]
        self.kind: str = meta["kind"]
        self.n_tokens: int = int(info["tokens"])
        bin_path, idx_path = folder / f"{split}.bin", folder / f"{split}.idx.npy"
        rebuild = f"; delete {folder} and run `dlm data` (or `dlm train`) again to rebuild it"
        dtype = np.dtype(info["dtype"])
        size = bin_path.stat().st_size if bin_path.is_file() else -1
        if size != self.n_tokens * dtype.itemsize:
            raise DataError(f"{bin_path}: {max(size, 0)} bytes where meta.json says "
                            f"{self.n_tokens} {dtype.name} tokens ("
                            f"{self.n_tokens * dtype.itemsize} bytes): the shard is truncated "
                            f"or damaged{rebuild}")
        self.tokens = (np.memmap(bin_path, dtype=dtype, mode="r")
                       if self.n_tokens else np.zeros(0, dtype=dtype))
        vocab = int(meta.get("vocab_size", 0))
        if vocab and self.n_tokens and int(self.tokens.max()) >= vocab:  # one pass, cheap
            raise DataError(f"{bin_path}: holds token id {int(self.tokens.max())}, outside the "
                            f"vocabulary of {vocab}: the shard is damaged{rebuild}")
        try:
            self.index = np.load(idx_path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{idx_path}: cannot read the index ({str(exc)[:120]}){rebuild}") \
                from None
        rows = int(info.get("examples", self.index.shape[0] if self.index.ndim else -1))
        if (self.index.ndim != 2 or self.index.shape != (rows, 3)
                or (rows and int(self.index[:, 2].max()) > self.n_tokens)):
            raise DataError(f"{idx_path}: shape {self.index.shape} or offsets do not match "
                            f"meta.json ({rows} examples, {self.n_tokens} tokens){rebuild}")

    def __len__(self) -> int:
        return self.index.shape[0]

    def response_lengths(self) -> np.ndarray:
        return np.asarray(self.index[:, 2] - self.index[:, 1])

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, response_start, end = (int(v) for v in self.index[i])
        return self.tokens[start:response_start], self.tokens[response_start:end]


@dataclass
class ShardSet:
    """A shard directory opened for training."""

    folder: Path
    meta: dict
    train: TokenShard
    validation: TokenShard | None

    @classmethod
    def open(cls, folder: Path) -> ShardSet:
        meta = read_shard_meta(folder)
        if "train" not in meta["splits"]:
            raise DataError(f"{folder / 'meta.json'}: no train split to train on")
        val = TokenShard(folder, "validation", meta) if "validation" in meta["splits"] else None
        return cls(folder, meta, TokenShard(folder, "train", meta), val)
