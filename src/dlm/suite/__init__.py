"""The fixed evaluation suite: prompts written for this project (no corpus text).

`eval_suite.jsonl` holds one prompt per line with its `category`: greeting, mood,
arithmetic (with an exact `answer`), instruction and diversity (with `samples`, the
number of replies drawn at temperature 1 to measure how much they differ). Held-out
dialogue turns, the sixth part of the suite, come from the validation split at run time.

Imports nothing of dlm.
"""

from __future__ import annotations

import json
from importlib import resources

CATEGORIES = ("greeting", "mood", "arithmetic", "instruction", "diversity")


def load_suite() -> list[dict]:
    text = resources.files(__package__).joinpath("eval_suite.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
