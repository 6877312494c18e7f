"""Building token shards from normalised JSONL, and reusing them while they match.

The cache key is (tokenizer fingerprint, source hashes): `ensure_shards` rebuilds a
shard directory whose tokenizer or source changed and says which and why. The layout
of a shard directory is described in `shards`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dlm.data.example import Example
from dlm.data.jsonl_examples import read_jsonl_examples
from dlm.data.shards import SHARD_FORMAT, TokenShard
from dlm.errors import DataError
from dlm.tokenizer import DLMTokenizer

CHUNK = 4096  # examples tokenized per batched call


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
