"""Where given text sits in a canvas: a reply to a prompt (chat layout) or plain text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dlm.sampling import Canvas


@dataclass
class Layout:
    """A one-row canvas. ids: the whole sequence; start: where the edited text begins,
    which is also the prompt's length (what guidance drops; 0 for plain text)."""

    ids: list[int]
    start: int

    def canvas(self, tok, no_eos: Sequence[bool], device: torch.device | str = "cpu",
               ) -> Canvas:
        """no_eos: per position of `ids`, whether eos is banned there."""
        tokens = torch.tensor([self.ids], device=device)
        prompt = torch.zeros_like(tokens, dtype=torch.bool)
        prompt[:, : self.start] = True
        banned = torch.tensor([list(no_eos)], dtype=torch.bool, device=device)
        return Canvas(tokens, tok.mask_id, tok.eos_id, None, self.start,
                      prompt if self.start else None, banned, tok.never_generated,
                      tuple(tok.pad_cycle))


def text_layout(lm, body: list[int], prompt_ids: list[int] | None) -> Layout:
    """`body` as the assistant's reply to `prompt_ids` (ids from `encode_prompt`), closed by
    eos as in training; or, with no prompt, as plain text (as in pretraining)."""
    if prompt_ids is None:
        return Layout(list(body), 0)
    return Layout([*prompt_ids, *body, lm.tokenizer.eos_id], len(prompt_ids))
