"""Reading a normalised JSONL file (what `dlm data` writes) back as examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from dlm.data.example import Example
from dlm.data.rows import row_examples
from dlm.errors import DataError


def read_jsonl_examples(path: Path) -> Iterator[Example]:
    """The examples of a normalised JSONL file (one chat or one text per line)."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                found = row_examples(json.loads(line))
            except (ValueError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}:{lineno}: {exc}") from None
            yield from found
