"""From examples to fixed-shape tensors, the train/validation split, and batches.

Every example becomes a left-padded prompt of `prompt_len` ids and a response
canvas of `response_len` ids padded with eos. Plain text gets `<bos>` as its prompt
and its tokens (in windows) as the response, so one layout serves both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from dlm.data.readers import Example
from dlm.errors import DataError
from dlm.tokenizer import DLMTokenizer


def split_examples(
    examples: list[Example], val_fraction: float = 0.05, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Deterministic shuffle-then-cut: the same seed always holds out the same examples."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = round(len(examples) * val_fraction)
    if val_fraction > 0 and len(examples) >= 2:
        n_val = max(1, n_val)
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    return train, val


def example_texts(examples: list[Example]) -> list[str]:
    """All text of the examples, to train the tokenizer on."""
    out = []
    for ex in examples:
        if ex.messages is not None:
            out.extend(m["content"] for m in ex.messages)
        elif ex.text is not None:
            out.append(ex.text)
    return out


@dataclass
class EncodedSet:
    """A dataset as two tensors: prompts (N, P), left-padded with pad; responses (N, R)."""

    prompts: torch.Tensor
    responses: torch.Tensor
    truncated: int = 0
    """Chat responses longer than the canvas that were cut to fit."""
    dropped: int = 0
    """Chat responses longer than the canvas that were left out (`drop_long`)."""

    def __len__(self) -> int:
        return self.prompts.shape[0]


def encode_examples(
    examples: list[Example], tok: DLMTokenizer, prompt_len: int, response_len: int,
    drop_long: bool = False,
) -> EncodedSet:
    """Render chats with the template; cut plain text into response-sized windows.

    A chat response longer than the canvas is cut (it then has no eos), or left
    out with `drop_long`; either way it is counted.
    """
    prompts, responses, truncated, dropped = [], [], 0, 0
    for ex in examples:
        if ex.messages is not None:
            enc = tok.encode_chat(ex.messages)
            if drop_long and len(enc.response_ids) > response_len:
                dropped += 1
                continue
            pieces = [(enc.prompt_ids, enc.response_ids)]
        else:
            ids = tok.encode(ex.text or "") + [tok.eos_id]
            step = response_len
            pieces = [([tok.bos_id], ids[i : i + step]) for i in range(0, len(ids), step)]
        for prompt, response in pieces:
            if len(prompt) > prompt_len:
                prompt = prompt[-prompt_len:]  # keep the turn being answered
            if len(response) > response_len:
                response = response[:response_len]
                truncated += 1
            prompts.append([tok.pad_id] * (prompt_len - len(prompt)) + prompt)
            responses.append(response + [tok.eos_id] * (response_len - len(response)))
    # explicit shapes, so an empty set (every reply left out) still has P and R columns
    return EncodedSet(torch.tensor(prompts, dtype=torch.long).view(-1, prompt_len),
                      torch.tensor(responses, dtype=torch.long).view(-1, response_len),
                      truncated, dropped)


@dataclass
class Batch:
    """Model input and which positions may be masked.

    ids: (B, T) prompt ids then response ids. maskable: (B, T) True on response
    positions. key_padding: (B, T) True where a token is real (None if all are).
    """

    ids: torch.Tensor
    maskable: torch.Tensor
    key_padding: torch.Tensor | None

    def to(self, device: torch.device | str) -> Batch:
        kp = None if self.key_padding is None else self.key_padding.to(device, non_blocking=True)
        return Batch(self.ids.to(device, non_blocking=True),
                     self.maskable.to(device, non_blocking=True), kp)


def make_batch(prompts: torch.Tensor, responses: torch.Tensor, pad_id: int) -> Batch:
    """Join prompts and responses, dropping the left-pad columns no row in the batch needs."""
    real = prompts != pad_id  # (B, P)
    first = int(real.any(0).float().argmax()) if real.any() else prompts.shape[1]
    prompts, real = prompts[:, first:], real[:, first:]
    ids = torch.cat([prompts, responses], dim=1)  # (B, T)
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, prompts.shape[1]:] = True
    key_padding = None
    if not bool(real.all()):
        key_padding = torch.cat([real, torch.ones_like(responses, dtype=torch.bool)], dim=1)
    return Batch(ids, maskable, key_padding)


class BatchSampler:
    """Shuffled batches, epoch after epoch; its whole state is (epoch, cursor).

    The permutation of epoch e comes from seed + e, so a resumed run sees exactly
    the batches the uninterrupted run would have seen.
    """

    def __init__(self, data: EncodedSet, batch_size: int, pad_id: int, seed: int = 0):
        self.data, self.batch_size, self.pad_id, self.seed = data, batch_size, pad_id, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.data), generator=g)

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
        index = torch.cat(picked)
        return make_batch(self.data.prompts[index], self.data.responses[index], self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation(self.epoch)


def iter_batches(data: EncodedSet, batch_size: int, pad_id: int):
    """Every example once, in order (for validation)."""
    for i in range(0, len(data), batch_size):
        yield make_batch(data.prompts[i : i + batch_size], data.responses[i : i + batch_size],
                         pad_id)
