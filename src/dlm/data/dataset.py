"""The train/validation split, fixed-shape tensors of examples, and batches.

An example is a left-padded prompt of `prompt_len` ids and a response canvas of
`response_len` ids padded with eos (plain text: an empty prompt and a window of
the token stream). `dlm.data.batch_samplers` builds these from the token shards.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from dlm.data.readers import Example
from dlm.errors import DataError


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
    trim_eos: int | None = None
    """`batch` padding: each batch's canvas is cut to its longest reply (ending in this eos)."""

    def __len__(self) -> int:
        return self.prompts.shape[0]


@dataclass
class Batch:
    """Model input and which positions may be masked.

    ids: (B, T) prompt ids then response ids. maskable: (B, T) True on response
    positions. key_padding: (B, T) True where a token is real (None if all are).
    """

    ids: torch.Tensor
    maskable: torch.Tensor
    key_padding: torch.Tensor | None

    def rows(self, lo: int, hi: int) -> Batch:
        kp = None if self.key_padding is None else self.key_padding[lo:hi]
        return Batch(self.ids[lo:hi], self.maskable[lo:hi], kp)

    def pin_memory(self) -> Batch:
        """Page-locked host copies, so `.to(cuda)` runs asynchronously."""
        kp = None if self.key_padding is None else self.key_padding.pin_memory()
        return Batch(self.ids.pin_memory(), self.maskable.pin_memory(), kp)

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


def iter_batches(data: EncodedSet, batch_size: int, pad_id: int):
    """Every example once, in order (for validation)."""
    from dlm.diffusion.padding import trim_to_longest

    for i in range(0, len(data), batch_size):
        responses = data.responses[i : i + batch_size]
        if data.trim_eos is not None:
            responses = trim_to_longest(responses, data.trim_eos)
        yield make_batch(data.prompts[i : i + batch_size], responses, pad_id)
