"""Data: readers for each file format, the embedded default corpus, splitting and batching.

May import diffusion (padding), tokenizer, config, errors and util.
"""

from dlm.data.dataset import (
    Batch,
    EncodedSet,
    example_texts,
    iter_batches,
    make_batch,
    split_examples,
)
from dlm.data.example import Example, ReadReport, example_key, expand_turns, lowercased
from dlm.data.readers import read_chatterbot, read_dialogues, read_file


def load_examples(
    paths: list[str] | None = None, lowercase: bool = False, dedupe: bool = True,
    context: str = "history",
) -> tuple[list[Example], list[ReadReport]]:
    """Examples from `paths`, or from the embedded chatterbot-corpus when there are none.

    Each file's report records the duplicates dropped from it.
    """
    sources = [read_chatterbot()] if not paths else [read_file(p, context) for p in paths]
    examples: list[Example] = []
    seen: set[str] = set()
    for found, report in sources:
        for ex in found:
            if lowercase:
                ex = lowercased(ex)
            key = example_key(ex)
            if dedupe and key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            examples.append(ex)
    return examples, [report for _, report in sources]


__all__ = [
    "Batch",
    "EncodedSet",
    "Example",
    "ReadReport",
    "example_texts",
    "iter_batches",
    "load_examples",
    "make_batch",
    "expand_turns",
    "read_chatterbot",
    "read_dialogues",
    "read_file",
    "split_examples",
]
