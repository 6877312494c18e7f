"""Where given text sits in a canvas: a reply to a prompt (chat layout) or plain text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dlm.sampling import Canvas


@dataclass
class Layout:
    """A one-row canvas. ids: the whole sequence; start: where the edited text begins;
    prompt_len: the prompt's tokens (what guidance drops), 0 for plain text."""

    ids: list[int]
    start: int
    prompt_len: int

    def canvas(self, mask_id: int, eos_id: int, no_eos: Sequence[bool] | None = None,
               rows: int = 1, device: torch.device | str = "cpu",
               banned: tuple[int, ...] = ()) -> Canvas:
        tokens = torch.tensor([self.ids] * rows, device=device)
        prompt = torch.zeros_like(tokens, dtype=torch.bool)
        prompt[:, : self.prompt_len] = True
        no_eos_mask = None
        if no_eos is not None:
            no_eos_mask = torch.zeros_like(prompt)
            no_eos_mask[:, self.start : self.start + len(no_eos)] = torch.tensor(list(no_eos))
        return Canvas(tokens, mask_id, eos_id, None, self.start,
                      prompt if self.prompt_len else None, no_eos_mask, banned)


def text_layout(lm, body: list[int], prompt_ids: list[int] | None) -> Layout:
    """`body` as the assistant's reply to `prompt_ids` (ids from `encode_prompt`), closed by
    eos as in training; or, with no prompt, as plain text (as in pretraining)."""
    if prompt_ids is None:
        return Layout(list(body), 0, 0)
    return Layout([*prompt_ids, *body, lm.tokenizer.eos_id], len(prompt_ids), len(prompt_ids))
