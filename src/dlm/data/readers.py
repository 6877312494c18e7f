"""Readers that turn data files into chat or plain-text examples.

Each reader yields `Example`s and records the rows it skipped (with file and line)
in a `ReadReport`. A file whose rows are mostly bad is an error, not a warning:
it is more likely the wrong file or format than a few dirty rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dlm.errors import DataError

# More bad rows than this share of a file means the file, not a row, is wrong.
MAX_BAD_FRACTION = 0.1


@dataclass
class Example:
    """A chat example (`messages`, the last one the assistant's) or plain text (`text`)."""

    messages: list[dict[str, str]] | None = None
    text: str | None = None


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


def chat_turns(messages: list[dict[str, str]]) -> Iterator[Example]:
    """One example per assistant turn, with the whole earlier history as its prompt."""
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and i > 0:
            yield Example(messages=messages[: i + 1])


# ----------------------------------------------------------------- file formats
def read_tsv(path: Path, report: ReadReport) -> Iterator[Example]:
    """`prompt<TAB>response` per line; blank lines and `#` comments are ignored."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                report.skip(f"{path}:{lineno}", "expected 'prompt<TAB>response'")
                continue
            report.kept += 1
            yield pair(parts[0].strip(), parts[1].strip())


def _messages(value: object, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{j}] needs a string 'content'")
        role = m.get("role")
        if role == "system":
            continue  # no system role in the chat template: the model has no persona setting
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{j}].role is {role!r}; expected 'user' or 'assistant'")
        out.append({"role": role, "content": m["content"].strip()})
    return out


def read_jsonl(path: Path, report: ReadReport) -> Iterator[Example]:
    """One JSON object per line: `{"prompt", "response"}`, `{"messages": [...]}` or `{"text"}`."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                report.skip(where, f"invalid JSON ({exc.msg})")
                continue
            try:
                examples = list(_jsonl_row(row))
            except ValueError as exc:
                report.skip(where, str(exc))
                continue
            if not examples:
                report.skip(where, "no assistant turn after a user turn")
                continue
            report.kept += len(examples)
            yield from examples


def _jsonl_row(row: object) -> Iterator[Example]:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if "messages" in row:
        yield from chat_turns(_messages(row["messages"], ""))
    elif "prompt" in row or "response" in row:
        p, r = row.get("prompt"), row.get("response")
        if not isinstance(p, str) or not isinstance(r, str) or not p.strip() or not r.strip():
            raise ValueError("'prompt' and 'response' must be non-empty strings")
        yield pair(p.strip(), r.strip())
    elif "text" in row:
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise ValueError("'text' must be a non-empty string")
        yield Example(text=row["text"].strip())
    else:
        raise ValueError("expected keys 'prompt'/'response', 'messages' or 'text'")


def read_text(path: Path, report: ReadReport) -> Iterator[Example]:
    """Plain text for unconditional training: one document per blank-line-separated block."""
    block: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in [*f, ""]:
            if line.strip():
                block.append(line.rstrip("\n"))
            elif block:
                report.kept += 1
                yield Example(text="\n".join(block))
                block = []


READERS: dict[str, Callable[[Path, ReadReport], Iterator[Example]]] = {
    ".tsv": read_tsv,
    ".jsonl": read_jsonl,
    ".txt": read_text,
}


def read_file(path: str | Path) -> tuple[list[Example], ReadReport]:
    """All examples of one file, chosen by its extension (.tsv, .jsonl, .txt)."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; "
                        f"use one of {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    report = ReadReport(str(path))
    try:
        examples = list(reader(path, report))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    report.check()
    return examples, report


# ------------------------------------------------------------ embedded default
def read_chatterbot(language: str = "english") -> tuple[list[Example], ReadReport]:
    """The conversations of the installed `chatterbot-corpus` package as adjacent pairs.

    Each conversation is a list of utterances, each a reply to the one before,
    so every adjacent pair (a, b) becomes prompt a, response b.
    """
    from chatterbot_corpus.corpus import DATA_DIRECTORY

    folder = Path(DATA_DIRECTORY) / language
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise DataError(f"{folder}: no chatterbot-corpus files; reinstall chatterbot-corpus")
    report = ReadReport(f"chatterbot-corpus/{language}")
    examples: list[Example] = []
    for file in files:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for k, conv in enumerate(data.get("conversations", [])):
            # YAML reads answers such as 1969 as numbers; they are text here.
            conv = [str(u) if isinstance(u, int | float) else u for u in conv]
            bad = 0
            for a, b in zip(conv, conv[1:], strict=False):
                if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip():
                    examples.append(pair(a.strip(), b.strip()))
                    report.kept += 1
                else:
                    bad += 1
            if bad:  # one line per conversation, however many of its pairs it spoils
                report.skip(f"{file.name}: conversation {k}", f"{bad} pairs with an "
                            "utterance that is not text", rows=bad)
    return examples, report
