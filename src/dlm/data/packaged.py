"""Corpora that ship inside installed PyPI packages, named as `dlm data` sources.

`dlm data chitchat` reads the `chitchat-dataset` package (MIT; BYU PCC lab's Chit-Chat
Challenge) where pip put it: the text is never copied into this repository.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dlm.data.example import Example, ReadReport
from dlm.data.rows import dialogue
from dlm.errors import DataError
from dlm.util.wellformed import problem


def chitchat_file() -> Path:
    try:
        import chitchat_dataset
    except ImportError:
        raise DataError("chitchat: the chitchat-dataset package is not installed "
                        "(pip install chitchat-dataset)") from None
    return Path(chitchat_dataset.__file__).parent / "dataset.json"


def speaker_turns(messages: list[list[dict]]) -> list[str]:
    """One turn per run of one speaker: the package keeps a speaker's consecutive messages
    in one inner list, and two inner lists in a row can still share a sender; both are
    joined with a space, so every turn answers the other speaker."""
    turns: list[tuple[str, list[str]]] = []
    for group in messages:
        for message in group:
            text = str(message.get("text") or "").strip()
            if not text:
                continue
            sender = message.get("sender")
            if turns and turns[-1][0] == sender:
                turns[-1][1].append(text)
            else:
                turns.append((sender, [text]))
    return [" ".join(parts) for _, parts in turns]


def read_chitchat(path: Path | None = None) -> tuple[list[Example], ReadReport]:
    """Every conversation of the Chit-Chat Challenge as a two-speaker dialogue (each turn
    after the first is a reply), in the file's order."""
    path = path or chitchat_file()
    report = ReadReport(f"chitchat ({path})")
    try:
        conversations = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not the chitchat-dataset file ({exc})") from None
    dialogues: list[Example] = []
    unanswered = 0
    for key, conversation in conversations.items():
        where = f"{path.name}: conversation {key}"
        try:
            turns = speaker_turns(conversation["messages"])
        except (KeyError, TypeError, AttributeError):
            report.skip(where, "expected 'messages': lists of {text, sender}")
            continue
        if (said := next((p for t in turns if (p := problem(t))), None)) is not None:
            report.skip(where, said)
            continue
        if len(turns) < 2:  # nobody answered: a well-formed row with no reply in it
            unanswered += 1
            continue
        dialogues.append(dialogue(turns))
    report.kept = len(dialogues)
    report.check()  # the share of bad rows, before the unanswered ones are told
    if unanswered:
        report.skip(path.name, f"{unanswered} conversations of one speaker only (no reply)",
                    rows=unanswered)
    return dialogues, report


PACKAGED: dict[str, Callable[[], tuple[list[Example], ReadReport]]] = {
    "chitchat": read_chitchat,
}
"""Source names that read an installed package's corpus (`dlm data chitchat`)."""
