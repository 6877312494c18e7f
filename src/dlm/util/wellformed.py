"""Well-formed Unicode at every door: text that cannot be written as UTF-8 is refused
where it enters, naming the field, argument or row it came in.

A Python `str` can hold an unpaired surrogate (U+D800-U+DFFF) that no UTF-8 text can:
JSON's `"\\ud800"` escape, argv bytes that are not UTF-8 (`os.fsdecode` turns them into
surrogates), a data file whose bytes encode a surrogate. Such a string reaches the
tokenizer as a `TypeError` from Rust, or fails later when a reply, a trace or a report
is written. Every other string is accepted as given: NUL and control characters, a
byte-order mark inside the text, the largest code points, and text that Unicode
normalisation would change (nothing here normalises).

`check_text` is for one argument (the Python API, the CLI); `first_invalid` walks a
parsed JSON value (a request body, a data row), keys included, and names the path.
"""

from __future__ import annotations

import re

from dlm.errors import TextError

SURROGATE = re.compile("[\ud800-\udfff]")


def problem(text: str) -> str | None:
    """What makes `text` not well-formed Unicode, or None when it is."""
    found = SURROGATE.search(text)
    if found is None:
        return None
    point = ord(found.group())
    # Python decodes a byte that is not UTF-8 (argv, file names) as U+DC80 + byte
    escaped = f" (byte 0x{point - 0xDC00:02X} of input that is not UTF-8)" \
        if 0xDC80 <= point <= 0xDCFF else ""
    return (f"not valid Unicode text: an unpaired surrogate U+{point:04X}{escaped} at "
            f"character {found.start()}; send UTF-8 text")


def check_text(value: object, name: str) -> None:
    """Raise `TextError` naming `name` when `value` (a string, or a list or dict of them)
    holds text that is not well-formed Unicode."""
    found = first_invalid(value, name)
    if found is not None:
        raise TextError(f"{found[0]}: {found[1]}", found[0])


def first_invalid(value: object, path: str = "") -> tuple[str, str] | None:
    """(path, problem) of the first string in `value` that is not well-formed Unicode:
    a string, a dict's keys and values, a list's or tuple's items; None when all are."""
    if isinstance(value, str):
        said = problem(value)
        return None if said is None else (path or "text", said)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (said := problem(key)) is not None:
                return (_join(path, printable(key)), f"the field name is {said}")
            if (found := first_invalid(item, _join(path, str(key)))) is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := first_invalid(item, f"{path}[{i}]" if path else str(i))) is not None:
                return found
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def printable(text: str) -> str:
    """`text` with each unpaired surrogate written as its escape (`\\ud800`), so a message
    that quotes refused input can itself be written as UTF-8."""
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
