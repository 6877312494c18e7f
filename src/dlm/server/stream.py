"""What a streaming client may be told, and when.

A diffusion reply is not written left to right, so a token may only be streamed once
nothing will change it: every position before the first mask is final when no
remasking is on (a committed token is never revised), and with remasking only the
blocks before the one being denoised are (revision stays inside the current block;
the full block just before the first mask may still be the current one).
`FinishedText` turns each step into the newly final text.
"""

from __future__ import annotations

import json
from typing import Any

from dlm.sampling import Step


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event (`data: ...` and a blank line)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


class FinishedText:
    """The final prefix of one reply row, as text deltas."""

    def __init__(self, tokenizer, block_length: int = 0, remask: float = 0.0):
        self.tok = tokenizer
        self.block_length, self.remask = block_length, remask
        self.sent = ""
        self.final = 0  # tokens final at the last call: decode again only when it grows
        self.ended = False  # an eos is final: nothing after it is part of the reply

    def final_length(self, ids: list[int]) -> int:
        tok = self.tok
        first_mask = next((i for i, t in enumerate(ids) if t == tok.mask_id), len(ids))
        eos = next((i for i, t in enumerate(ids[:first_mask]) if t == tok.eos_id), None)
        if self.remask > 0:  # only blocks before the current one are settled
            if self.block_length <= 0:
                return 0
            # If the block holding the first mask has not begun, the sampler may still be
            # revising the full block before it: hold that one back too.
            L, k = self.block_length, first_mask // self.block_length
            begun = any(t != tok.mask_id for t in ids[k * L : (k + 1) * L])
            settled = (k if begun else max(0, k - 1)) * L
            if eos is not None and eos < settled:
                self.ended = True
                return eos
            return settled
        if eos is not None:
            self.ended = True
            return eos
        return first_mask

    def restart(self) -> None:
        """The reply is being denoised again from the start: what was sent stays sent
        (greedy decoding reaches it again), the final prefix is found anew."""
        self.final, self.ended = 0, False

    def delta(self, ids: list[int]) -> str:
        """The text that became final since the last call."""
        if self.ended:
            return ""
        final = self.final_length(ids)
        if final <= self.final:
            return ""
        self.final = final
        return self._advance(self.tok.decode_response(ids[:final]))

    def finish(self, text: str) -> str:
        """The rest of the reply, given its whole final text."""
        return self._advance(text, final=True)

    def _advance(self, text: str, final: bool = False) -> str:
        # A byte-level token can end inside a multi-byte character; wait for the rest.
        if not final and text.endswith("\ufffd"):
            return ""
        if not text.startswith(self.sent):
            return ""  # the decoded prefix changed its spacing: catch up at the end
        new, self.sent = text[len(self.sent):], text
        return new


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to (not including) the earliest stop string, and whether one was found."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopCutter:
    """A stream's text deltas, cut before the first stop string (OpenAI's `stop`), so that
    the deltas add up to exactly `cut_at_stop` of the whole text.

    A stop string can arrive split over deltas, and a longer one may begin before a
    shorter one that has already arrived; so text from the earliest position where a
    stop could still begin is held back until later deltas (or the end) decide."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.text = ""  # everything fed so far (a reply: at most max_tokens of text)
        self.sent = 0  # how much of it has been returned
        self.stopped = False

    def pending(self, end: int) -> int:
        """The earliest position in [sent, end) where the text so far is a proper prefix
        of a stop string (one that may still complete there), else `end`."""
        longest = max(len(s) for s in self.stops)
        for j in range(max(self.sent, len(self.text) - longest + 1), end):
            tail = self.text[j:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self.stops):
                return j
        return end

    def feed(self, text: str) -> str:
        """The part of what has come that is safe to send now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        self.text += text
        cut, found = cut_at_stop(self.text, self.stops)
        safe = self.pending(len(cut))
        self.stopped = found and safe == len(cut)  # no earlier stop can still complete
        out, self.sent = self.text[self.sent:safe], safe
        return out

    def flush(self) -> str:
        """At the end of the reply: what was held back, up to a stop string if one is
        there after all."""
        if self.stopped or not self.stops:
            return ""
        cut, self.stopped = cut_at_stop(self.text, self.stops)
        out, self.sent = cut[self.sent:], len(cut)
        return out


def finish_reason(ids: list[int], eos_id: int) -> str:
    """"stop" when the model ended its reply inside the canvas, "length" when it ran out."""
    return "stop" if eos_id in ids else "length"


def frame(step: Step, row: int, tok, start: int = 0) -> dict[str, Any]:
    """One step of one row for `/v1/denoise`: per token its text, whether it is a mask,
    whether this step committed it and at what confidence; in speculative decoding
    whether it is an unverified draft, and whether the verifier refused the draft there
    (a committed token that is not refused is an accepted draft or the free token)."""
    ids = step.tokens[row, start:].tolist()
    new = step.newly_committed[row, start:].tolist()
    conf = step.confidences[row, start:].tolist()

    def flags(x):
        return x[row, start:].tolist() if x is not None else [False] * len(ids)

    remasked, drafted, rejected = flags(step.remasked), flags(step.drafted), flags(step.rejected)
    tokens = []
    for i, t in enumerate(ids):
        if t == tok.eos_id:
            break
        masked = t == tok.mask_id
        tokens.append({"text": "" if masked else tok.decode([t], whole=False),
                       "mask": masked, "new": bool(new[i]), "remasked": bool(remasked[i]),
                       "drafted": bool(drafted[i]), "rejected": bool(rejected[i]),
                       "confidence": round(conf[i], 4)})
    out = {"type": "step", "step": step.step_index, "steps": step.steps, "nfe": step.nfe,
           "masks": sum(t["mask"] for t in tokens), "tokens": tokens}
    if step.drafted is not None or step.rejected is not None:
        out["verifier_calls"] = step.verifier_calls
        out["phase"] = "draft" if step.drafted is not None else "verify"
    return out
