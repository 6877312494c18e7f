"""The batches training reads from a token shard: shuffled chat batches (`ChatSampler`,
grouped by reply length under `batch` padding), windows of packed plain text
(`PackedSampler`), and the validation set, padded as training pads.
"""

from __future__ import annotations

import numpy as np
import torch

from dlm.data.dataset import Batch, EncodedSet, make_batch
from dlm.data.shards import TokenShard
from dlm.diffusion.padding import group_by_length, rainbow, trim_to_longest
from dlm.errors import DataError


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
