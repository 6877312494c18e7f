"""One row of a dataset (a JSONL line or a hub dataset record) as a dialogue.

The same layouts appear in local JSONL files and on the Hugging Face hub, so both
readers share this module. A row layout is chosen by name (`--format`) or detected
from its keys:

- `messages`: `[{"role", "content"}, ...]` (OpenAI style; a `system` turn is dropped)
- `conversations`: `[{"from": "human"|"gpt", "value"}, ...]` (ShareGPT)
- `turns`: `[{"speaker": "user"|"system", "utterance"}, ...]` (ConvLab unified format)
- `dialog`: `["utterance", ...]`, two speakers taking turns (hub `daily_dialog`)
- `pairs`: a prompt field, a response field and an optional context field
  (`prompt/response`, `instruction/context/response` (Dolly), `instruction/input/output`
  (Alpaca), `question/answer`)
- `instances`: `instruction` + `instances: [{"input", "output"}]` (self-instruct seed tasks)
- `text`: `"### Human: ... ### Assistant: ..."` becomes a chat; any other text is plain text
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dlm.data.example import Example
from dlm.util.wellformed import first_invalid

ROLE_ALIASES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "system": "assistant",
}
# Keys that say which layout a row has, tried in this order.
PAIR_FIELDS = [("prompt", "response", None), ("instruction", "response", "context"),
               ("instruction", "output", "input"), ("question", "answer", None)]
HUMAN_ASSISTANT = re.compile(r"###\s*(Human|Assistant)\s*:", re.IGNORECASE)


@dataclass
class FieldMap:
    """Which fields hold what, for datasets whose names the detection does not know."""

    format: str = "auto"
    prompt_field: str | None = None
    response_field: str | None = None
    context_field: str | None = None


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string, got {type(value).__name__}")
    return value.strip()


def _chat(pairs: list[tuple[str, str]]) -> list[Example]:
    messages = [{"role": role, "content": content} for role, content in pairs]
    if not any(m["role"] == "assistant" for m in messages[1:]):
        raise ValueError("no assistant turn after a user turn")
    return [Example(messages=messages)]


def from_messages(row: dict, fields: FieldMap) -> list[Example]:
    value = row.get("messages")
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list")
    turns = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{j}] needs a string 'content'")
        role = m.get("role")
        if role == "system":
            continue  # no system role in the chat template: the model has no persona setting
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{j}].role is {role!r}; expected 'user' or 'assistant'")
        turns.append((role, m["content"].strip()))
    return _chat(turns)


def _speaker_list(row: dict, key: str, who: str, what: str) -> list[Example]:
    value = row.get(key)
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{key}' must be a non-empty list")
    turns = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get(what), str):
            raise ValueError(f"{key}[{j}] needs a string '{what}'")
        role = ROLE_ALIASES.get(str(m.get(who, "")).lower())
        if role is None:
            raise ValueError(f"{key}[{j}].{who} is {m.get(who)!r}; expected one of "
                             f"{', '.join(sorted(ROLE_ALIASES))}")
        turns.append((role, m[what].strip()))
    return _chat(turns)


def from_conversations(row: dict, fields: FieldMap) -> list[Example]:
    return _speaker_list(row, "conversations", "from", "value")


def from_turns(row: dict, fields: FieldMap) -> list[Example]:
    # ConvLab's unified format calls the assistant "system".
    return _speaker_list(row, "turns", "speaker", "utterance")


def from_dialog(row: dict, fields: FieldMap) -> list[Example]:
    value = row.get("dialog")
    if not isinstance(value, list) or len(value) < 2:
        raise ValueError("'dialog' must be a list of at least two utterances")
    utterances = [_text(u, f"dialog[{j}]") for j, u in enumerate(value)]
    return [dialogue(utterances)]


def dialogue(utterances: list[str]) -> Example:
    """Two speakers taking turns: every utterance after the first is a reply."""
    roles = ["user", "assistant"] * (len(utterances) // 2 + 1)
    return Example(messages=[{"role": r, "content": u}
                             for r, u in zip(roles, utterances, strict=False)], symmetric=True)


def from_pairs(row: dict, fields: FieldMap) -> list[Example]:
    if fields.prompt_field or fields.response_field:
        names = [(fields.prompt_field or "prompt", fields.response_field or "response",
                  fields.context_field)]
    else:
        names = [n for n in PAIR_FIELDS if n[0] in row and n[1] in row]
        if not names:
            raise ValueError("expected a prompt and a response field "
                             f"({', '.join(f'{p}/{r}' for p, r, _ in PAIR_FIELDS)})")
    prompt_key, response_key, context_key = names[0]
    for key in (prompt_key, response_key):
        if key not in row:
            raise ValueError(f"no field '{key}' (fields: {', '.join(sorted(row))})")
    prompt, response = _text(row[prompt_key], prompt_key), _text(row[response_key], response_key)
    context = _text(row.get(context_key) or "", context_key) if context_key else ""
    if context:
        prompt = f"{prompt}\n\n{context}"
    if not prompt or not response:
        raise ValueError(f"'{prompt_key}' and '{response_key}' must be non-empty")
    return _chat([("user", prompt), ("assistant", response)])


def from_instances(row: dict, fields: FieldMap) -> list[Example]:
    instruction = _text(row.get("instruction"), "instruction")
    instances = row.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ValueError("'instances' must be a non-empty list")
    out = []
    for j, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise ValueError(f"instances[{j}] must be an object")
        given = _text(inst.get("input") or "", f"instances[{j}].input")
        output = _text(inst.get("output"), f"instances[{j}].output")
        prompt = f"{instruction}\n\n{given}" if given else instruction
        out += _chat([("user", prompt), ("assistant", output)])
    return out


def from_text(row: dict, fields: FieldMap) -> list[Example]:
    key = fields.prompt_field or "text"
    text = _text(row.get(key), key)
    if not text:
        raise ValueError(f"'{key}' must be a non-empty string")
    parts = HUMAN_ASSISTANT.split(text)
    if len(parts) < 3:
        return [Example(text=text)]
    # ["", "Human", " q ", "Assistant", " a ", ...]: the text before the first marker is dropped
    turns = [("user" if parts[i].lower() == "human" else "assistant", parts[i + 1].strip())
             for i in range(1, len(parts) - 1, 2)]
    return _chat(turns)


ROW_FORMATS: dict[str, Callable[[dict, FieldMap], list[Example]]] = {
    "messages": from_messages,
    "conversations": from_conversations,
    "turns": from_turns,
    "dialog": from_dialog,
    "instances": from_instances,
    "pairs": from_pairs,
    "text": from_text,
}


def detect_format(row: dict, fields: FieldMap) -> str:
    if fields.format != "auto":
        return fields.format
    if fields.prompt_field or fields.response_field:
        return "pairs"
    for key in ("messages", "conversations", "turns", "dialog", "instances"):
        if key in row:
            return key
    if any(p in row and r in row for p, r, _ in PAIR_FIELDS):
        return "pairs"
    if "text" in row:
        return "text"
    raise ValueError("unknown row layout: expected one of 'messages', 'conversations', "
                     "'turns', 'dialog', 'instances', a prompt/response pair or 'text' "
                     f"(fields: {', '.join(sorted(row))}); name the fields with "
                     "--prompt-field/--response-field")


def row_examples(row: object, fields: FieldMap | None = None) -> list[Example]:
    """The dialogues (or plain text) of one row; ValueError says what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if (found := first_invalid(row)) is not None:  # JSON can escape a lone surrogate
        raise ValueError(f"{found[0]}: {found[1]}")
    fields = fields or FieldMap()
    name = detect_format(row, fields)
    if name not in ROW_FORMATS:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(ROW_FORMATS)}")
    return ROW_FORMATS[name](row, fields)
