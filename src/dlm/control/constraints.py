"""Constraints on a reply: words at fixed token positions (`--force 3:sorry`), words
anywhere (`--require sorry`), and an exact length (`SampleConfig(eos="ban")`).

Forced words become given tokens of the canvas, so the sampler writes around them.
A required word goes where the model finds it most likely: one model call on the
canvas scores every place it fits, and the best is forced. No eos may come before a
placed word, or it would be cut from the reply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from dlm.errors import ConfigError
from dlm.sampling import Canvas


@dataclass
class Constraints:
    force: dict[int, str] = field(default_factory=dict)
    """Reply token position -> word (its tokens start there)."""
    require: list[str] = field(default_factory=list)
    """Words that must appear somewhere in the reply."""

    @classmethod
    def parse(cls, force: list[str] | None = None, require: list[str] | None = None,
              ) -> Constraints:
        """From CLI strings: `POSITION:WORD` for force, a word for require."""
        forced: dict[int, str] = {}
        for item in force or []:
            pos, sep, word = item.partition(":")
            if not sep or not pos.strip().isdigit() or not word.strip():
                raise ConfigError(f"--force {item!r}: write POSITION:WORD, e.g. 3:sorry")
            if int(pos) in forced:
                raise ConfigError(f"--force {item!r}: position {int(pos)} is forced twice")
            forced[int(pos)] = word.strip()
        words = [w.strip() for w in require or []]
        if any(not w for w in words):
            raise ConfigError("--require needs a word")
        return cls(forced, words)

    def __bool__(self) -> bool:
        return bool(self.force or self.require)


def _word_ids(tok, word: str, lowercase: bool) -> list[int]:
    return tok.encode(word.lower() if lowercase else word)


@torch.inference_mode()
def apply_constraints(model, canvas: Canvas, constraints: Constraints, tok,
                      lowercase: bool = False) -> Canvas:
    """The canvas with forced and required words written in as given tokens."""
    tokens = canvas.tokens.clone()  # (B, T)
    B, T = tokens.shape
    start, length = canvas.start, T - canvas.start
    no_eos = (canvas.no_eos.clone() if canvas.no_eos is not None
              else torch.zeros_like(tokens, dtype=torch.bool))
    for pos, word in sorted(constraints.force.items()):
        ids = _word_ids(tok, word, lowercase)
        if pos + len(ids) > length:
            raise ConfigError(f"--force {pos}:{word}: its {len(ids)} token(s) from position "
                              f"{pos} do not fit the {length}-token reply")
        span = slice(start + pos, start + pos + len(ids))
        if bool((tokens[:, span] != canvas.mask_id).any()):
            raise ConfigError(f"--force {pos}:{word} overlaps another forced word")
        tokens[:, span] = torch.tensor(ids, dtype=tokens.dtype, device=tokens.device)
        no_eos[:, start: span.stop] = True
    for word in constraints.require:
        ids = _word_ids(tok, word, lowercase)
        if len(ids) > length:
            raise ConfigError(f"--require {word!r}: {len(ids)} tokens do not fit the "
                              f"{length}-token reply")
        logits = model(tokens, canvas.key_padding).float()[:, start:]  # (B, L, V)
        logp = logits.log_softmax(-1)
        n = len(ids)
        places = length - n + 1
        score = torch.zeros(B, places, device=tokens.device)  # (B, places)
        for i, t in enumerate(ids):
            score += logp[:, i: i + places, t]
        free = tokens[:, start:] == canvas.mask_id  # (B, L)
        for i in range(n):  # a place must not overlap given tokens
            score = score.masked_fill(~free[:, i: i + places], float("-inf"))
        if bool(torch.isinf(score).all(1).any()):
            raise ConfigError(f"--require {word!r}: no free place of {n} token(s) is left")
        best = score.argmax(1)  # (B,)
        for b in range(B):
            p = start + int(best[b])
            tokens[b, p: p + n] = torch.tensor(ids, dtype=tokens.dtype, device=tokens.device)
            no_eos[b, start: p + n] = True
    return dataclasses.replace(canvas, tokens=tokens, no_eos=no_eos)
