"""What readers produce: examples (dialogues or plain text) and a report of what was skipped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dlm.errors import DataError

# More bad rows than this share of a file means the file, not a row, is wrong.
MAX_BAD_FRACTION = 0.1


@dataclass
class Example:
    """A chat example (`messages`, the last one the assistant's) or plain text (`text`)."""

    messages: list[dict[str, str]] | None = None
    text: str | None = None
    symmetric: bool = False
    """Two speakers with no fixed assistant (DailyDialog): every turn after the first is a
    reply. Otherwise only the assistant's turns are."""


@dataclass
class ReadReport:
    """What a reader kept and what it skipped, and why."""

    source: str
    kept: int = 0
    skipped: list[str] = field(default_factory=list)
    """Where and why, one line per bad row (or per bad conversation)."""
    skipped_rows: int = 0
    duplicates: int = 0
    """Kept rows dropped later because an earlier row said the same."""

    def skip(self, where: str, why: str, rows: int = 1) -> None:
        self.skipped.append(f"{where}: {why}")
        self.skipped_rows += rows

    def check(self) -> None:
        total = self.kept + self.skipped_rows
        if self.kept == 0:
            first = f" (first problem: {self.skipped[0]})" if self.skipped else ""
            raise DataError(f"{self.source}: no usable examples{first}")
        if self.skipped_rows > MAX_BAD_FRACTION * total:
            raise DataError(
                f"{self.skipped[0]}; {self.skipped_rows} of {total} rows are bad "
                f"in {self.source}: check the file's format"
            )


def lowercased(ex: Example) -> Example:
    if ex.messages is not None:
        return Example(messages=[{**m, "content": m["content"].lower()} for m in ex.messages])
    return Example(text=(ex.text or "").lower())


def example_key(ex: Example) -> str:
    """What makes two examples the same: their text, case and spacing ignored."""
    parts = [m["content"] for m in ex.messages] if ex.messages is not None else [ex.text or ""]
    return "\x1e".join(" ".join(p.lower().split()) for p in parts)


def pair(prompt: str, response: str) -> Example:
    return Example(messages=[{"role": "user", "content": prompt},
                             {"role": "assistant", "content": response}])


CONTEXTS = ("history", "pair")


def expand_turns(dialogue: Example, context: str = "history") -> Iterator[Example]:
    """One example per reply in a dialogue.

    context="history": the whole earlier dialogue is the prompt; "pair": only the
    turn just before (the prototype's adjacent pairs). Plain text passes through.
    """
    if dialogue.messages is None:
        yield dialogue
        return
    if context not in CONTEXTS:
        raise DataError(f"unknown context {context!r}; choose one of {', '.join(CONTEXTS)}")
    messages = dialogue.messages
    for i in range(1, len(messages)):
        if not dialogue.symmetric and messages[i]["role"] != "assistant":
            continue
        first = 0 if context == "history" else i - 1
        turns = [m["content"] for m in messages[first : i + 1]]
        # roles counted back from the reply, so the turn before it is always the user's
        roles = ["assistant" if (i - j) % 2 == 0 else "user" for j in range(first, i + 1)]
        if dialogue.symmetric or context == "pair":
            yield Example(messages=[{"role": r, "content": t}
                                    for r, t in zip(roles, turns, strict=True)])
        else:
            yield Example(messages=messages[first : i + 1])
