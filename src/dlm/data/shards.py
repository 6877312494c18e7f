"""Token shards: a corpus tokenized once into memory-mapped arrays, read by training.

A shard directory holds, per split, `SPLIT.bin` (every token id back to back,
`uint16` when the vocabulary fits, else `uint32`) and `SPLIT.idx.npy` (int64 rows
`start, response_start, end`: where each example's tokens lie and where its response
begins; plain text is all response), plus `meta.json` (format, kind, tokenizer
fingerprint, source hashes, counts). Training reads batches straight from the
memory maps, so its memory does not grow with the corpus.

The cache key is (tokenizer fingerprint, source hashes): `ensure_shards` rebuilds a
shard directory whose tokenizer or source changed and says which and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlm.data.dataset import Batch, EncodedSet, make_batch
from dlm.data.example import Example
from dlm.data.rows import row_examples
from dlm.diffusion.padding import group_by_length, rainbow, trim_to_longest
from dlm.errors import DataError
from dlm.tokenizer import DLMTokenizer

SHARD_FORMAT = 1
CHUNK = 4096  # examples tokenized per batched call


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_jsonl_examples(path: Path) -> Iterator[Example]:
    """The examples of a normalised JSONL file (one chat or one text per line)."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                found = row_examples(json.loads(line))
            except (ValueError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}:{lineno}: {exc}") from None
            yield from found


def _encode_chunk(chunk: list[Example], tok: DLMTokenizer) -> list[tuple[list[int], int]]:
    """(ids, response_start) per example, all texts of the chunk in one batched call."""
    texts: list[str] = []
    spans = []
    for ex in chunk:
        parts = [m["content"] for m in ex.messages] if ex.messages is not None else [ex.text or ""]
        spans.append((len(texts), len(parts)))
        texts.extend(parts)
    encoded = tok.encode_many(texts)
    out = []
    for ex, (k, n) in zip(chunk, spans, strict=True):
        if ex.messages is not None:
            enc = tok.encode_chat(ex.messages, encoded[k : k + n])
            out.append((enc.ids, len(enc.prompt_ids)))
        else:  # plain text: all response, the eos marks where the next document starts
            out.append((encoded[k] + [tok.eos_id], 0))
    return out


def write_split(examples: Iterator[Example], tok: DLMTokenizer, out: Path, split: str,
                ) -> dict[str, int | str]:
    """Tokenize `examples` into `out/SPLIT.bin` and `out/SPLIT.idx.npy`; returns counts."""
    dtype = np.uint16 if tok.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    index: list[tuple[int, int, int]] = []
    kinds: set[str] = set()
    position, response_tokens = 0, 0
    with (out / f"{split}.bin").open("wb") as f:
        chunk: list[Example] = []

        def flush() -> None:
            nonlocal position, response_tokens
            for ids, response_start in _encode_chunk(chunk, tok):
                np.asarray(ids, dtype=dtype).tofile(f)
                index.append((position, position + response_start, position + len(ids)))
                response_tokens += len(ids) - response_start
                position += len(ids)
            chunk.clear()

        for ex in examples:
            kinds.add("chat" if ex.messages is not None else "text")
            chunk.append(ex)
            if len(chunk) == CHUNK:
                flush()
        flush()
    if len(kinds) > 1:
        raise DataError(f"{split}: mixes chat and plain text; pretrain on text first, then "
                        "fine-tune on chat with `dlm train --init-from`")
    np.save(out / f"{split}.idx.npy", np.asarray(index, dtype=np.int64).reshape(-1, 3))
    return {"examples": len(index), "tokens": position, "response_tokens": response_tokens,
            "kind": kinds.pop() if kinds else "chat", "dtype": np.dtype(dtype).name}


def build_shards(sources: dict[str, Path], tok: DLMTokenizer, out: Path) -> dict:
    """Tokenize each split's JSONL into `out` (written beside it, then renamed into place)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        splits = {split: write_split(read_jsonl_examples(path), tok, tmp, split)
                  for split, path in sources.items()}
        kinds = {s["kind"] for s in splits.values() if s["examples"]}
        if len(kinds) > 1:
            raise DataError("the splits mix chat and plain text")
        meta = {"format": SHARD_FORMAT, "kind": kinds.pop() if kinds else "chat",
                "tokenizer": tok.fingerprint(), "vocab_size": tok.vocab_size,
                "sources": {split: {"path": str(path), "sha256": file_hash(path)}
                            for split, path in sources.items()},
                "splits": splits}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return meta


def stale_reason(out: Path, sources: dict[str, Path], tok: DLMTokenizer) -> str | None:
    """Why the shards in `out` cannot be used for these sources and tokenizer (None: they can)."""
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no token cache yet"
    except (OSError, ValueError) as exc:  # JSON and UTF-8 errors are ValueErrors
        return f"the cache's meta.json is damaged ({str(exc)[:80]})"
    if not isinstance(meta, dict):
        return "the cache's meta.json is damaged (not a JSON object)"
    if meta.get("format") != SHARD_FORMAT:
        return f"the cache is format {meta.get('format')}, this dlm writes {SHARD_FORMAT}"
    if meta.get("tokenizer") != tok.fingerprint():
        return (f"the tokenizer changed (cache {str(meta.get('tokenizer'))[:12]}, now "
                f"{tok.fingerprint()[:12]})")
    for split, path in sources.items():
        cached = meta.get("sources", {}).get(split, {})
        if cached.get("sha256") != file_hash(path):
            return f"{path} changed since it was tokenized"
    try:
        for split in meta.get("splits", {}):
            TokenShard(out, split, meta)
    except (DataError, KeyError, TypeError, ValueError) as exc:
        return f"the cache is damaged ({str(exc).split(': ', 1)[-1][:100]})"
    return None


def ensure_shards(sources: dict[str, Path], tok: DLMTokenizer, out: Path,
                  say=print) -> dict:
    """Reuse the shards in `out` if they match, else (re)build them, saying why."""
    reason = stale_reason(out, sources, tok)
    if reason is None:
        return json.loads((out / "meta.json").read_text())
    say(f"tokenizing into {out}: {reason}")
    return build_shards(sources, tok, out)


# ------------------------------------------------------------------- reading
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


def gather_chats(shard: TokenShard, rows: np.ndarray | list[int], prompt_len: int,
                 response_len: int, pad_id: int, eos_id: int,
                 pad_cycle: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded to `prompt_len` (keeping their last tokens) and responses cut
    or padded with eos to `response_len` (`pad_cycle`: rainbow padding after the eos)."""
    prompts = np.full((len(rows), prompt_len), pad_id, dtype=np.int64)
    responses = np.full((len(rows), response_len), eos_id, dtype=np.int64)
    for j, i in enumerate(rows):
        prompt, response = shard.example(int(i))
        prompt, response = prompt[len(prompt) - min(len(prompt), prompt_len):], \
            response[:response_len]
        if len(prompt):
            prompts[j, prompt_len - len(prompt):] = prompt
        responses[j, : len(response)] = response
    responses_t = torch.from_numpy(responses)
    if pad_cycle:
        responses_t = rainbow(responses_t, eos_id, pad_cycle)
    return torch.from_numpy(prompts), responses_t


class ChatSampler:
    """Shuffled chat batches, epoch after epoch; its whole state is (epoch, cursor).

    The permutation of epoch e comes from seed + e, so a resumed run sees exactly
    the batches the uninterrupted run would have seen. Memory: one int64 per example
    for the permutation; the tokens stay on disk.
    """

    def __init__(self, shard: TokenShard, batch_size: int, prompt_len: int, response_len: int,
                 pad_id: int, eos_id: int, drop_long: bool = False, seed: int = 0,
                 padding: str = "eos", pad_cycle: list[int] | None = None):
        self.shard, self.batch_size, self.seed = shard, batch_size, seed
        # "batch": batches of similar reply lengths, each padded to its longest only
        self.padding, self.pad_cycle = padding, pad_cycle if padding == "rainbow" else None
        self.prompt_len, self.response_len, self.pad_id, self.eos_id = (
            prompt_len, response_len, pad_id, eos_id)
        too_long = shard.response_lengths() > response_len
        self.rows = np.flatnonzero(~too_long) if drop_long else None
        self.dropped = int(too_long.sum()) if drop_long else 0
        self.truncated = 0 if drop_long else int(too_long.sum())
        if len(self) == 0:
            raise DataError("no training examples left: every reply is longer than the "
                            "canvas; raise --response-len or turn drop_long off")
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.shard)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self), generator=g)
        if self.padding == "batch":
            lengths = torch.from_numpy(self.shard.response_lengths())
            if self.rows is not None:
                lengths = lengths[torch.from_numpy(self.rows)]
            order = group_by_length(order, lengths, self.batch_size, g)
        return order

    @property
    def epochs(self) -> float:
        """Passes over the training examples so far (fractional)."""
        return self.epoch + self.cursor / max(len(self), 1)

    def next(self) -> Batch:
        picked: list[torch.Tensor] = []
        need = self.batch_size
        while need > 0:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = self._order[self.cursor : self.cursor + need]
            picked.append(take)
            self.cursor += len(take)
            need -= len(take)
        order = torch.cat(picked).numpy()
        rows = self.rows[order] if self.rows is not None else order
        prompts, responses = gather_chats(self.shard, rows, self.prompt_len, self.response_len,
                                          self.pad_id, self.eos_id, self.pad_cycle)
        if self.padding == "batch":
            responses = trim_to_longest(responses, self.eos_id)
        return make_batch(prompts, responses, self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation(self.epoch)


class PackedSampler:
    """Plain-text pretraining: windows of `seq_len` tokens at random offsets of the token
    stream, documents joined by eos. A `short_fraction` of batches (LLaDA: 1%) use a
    random shorter length, so the model also sees short inputs.

    Batch k depends only on (seed, k): the state is one number and memory is O(1).
    """

    def __init__(self, shard: TokenShard, batch_size: int, seq_len: int,
                 short_fraction: float = 0.01, seed: int = 0):
        if shard.n_tokens < seq_len + 1:
            raise DataError(f"the text has {shard.n_tokens} tokens, fewer than one sequence "
                            f"of {seq_len}; lower --seq-len or add text")
        self.shard, self.batch_size, self.seq_len = shard, batch_size, seq_len
        self.short_fraction, self.seed, self.drawn = short_fraction, seed, 0
        self.truncated = self.dropped = 0

    def __len__(self) -> int:
        return self.shard.n_tokens // self.seq_len

    def next(self) -> Batch:
        rng = np.random.default_rng([self.seed, self.drawn])
        self.drawn += 1
        length = self.seq_len
        if rng.random() < self.short_fraction:
            length = int(rng.integers(1, self.seq_len + 1))
        starts = rng.integers(0, self.shard.n_tokens - length + 1, size=self.batch_size)
        ids = np.stack([self.shard.tokens[s : s + length] for s in starts]).astype(np.int64)
        ids = torch.from_numpy(ids)
        return Batch(ids, torch.ones_like(ids, dtype=torch.bool), None)

    @property
    def epochs(self) -> float:
        """Tokens drawn so far over the stream's tokens (windows overlap at random)."""
        return self.drawn * self.batch_size * self.seq_len / max(self.shard.n_tokens, 1)

    def state_dict(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.drawn = int(state["drawn"])


def validation_set(shard: TokenShard, limit: int, prompt_len: int, response_len: int,
                   seq_len: int, pad_id: int, eos_id: int, drop_long: bool,
                   padding: str = "eos", pad_cycle: list[int] | None = None) -> EncodedSet:
    """The first `limit` validation examples (chat) or `seq_len` windows (text) as tensors,
    padded as training pads them (`batch`: sorted by reply length, each batch cut to its
    longest reply)."""
    if shard.kind == "text":
        n = min(limit, shard.n_tokens // seq_len)
        windows = np.asarray(shard.tokens[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
        return EncodedSet(torch.zeros(n, 0, dtype=torch.long), torch.from_numpy(windows))
    lengths = shard.response_lengths()
    rows = np.flatnonzero(lengths <= response_len) if drop_long else np.arange(len(shard))
    rows = rows[:limit]
    if padding == "batch":
        rows = rows[np.argsort(lengths[rows], kind="stable")]
    prompts, responses = gather_chats(shard, rows, prompt_len, response_len, pad_id, eos_id,
                                      pad_cycle if padding == "rainbow" else None)
    too_long = int((lengths[rows] > response_len).sum())
    return EncodedSet(prompts, responses, truncated=too_long,
                      dropped=int((lengths > response_len).sum()) if drop_long else 0,
                      trim_eos=eos_id if padding == "batch" else None)


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
