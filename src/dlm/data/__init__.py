"""Data: readers for each file format, the embedded default corpus, splitting and batching."""

from dlm.data.dataset import (
    Batch,
    BatchSampler,
    EncodedSet,
    encode_examples,
    example_texts,
    iter_batches,
    make_batch,
    split_examples,
)
from dlm.data.readers import Example, ReadReport, read_chatterbot, read_file


def load_examples(paths: list[str] | None = None) -> tuple[list[Example], list[ReadReport]]:
    """Examples from `paths`, or from the embedded chatterbot-corpus when there are none."""
    if not paths:
        examples, report = read_chatterbot()
        return examples, [report]
    examples, reports = [], []
    for path in paths:
        ex, report = read_file(path)
        examples.extend(ex)
        reports.append(report)
    return examples, reports


__all__ = [
    "Batch",
    "BatchSampler",
    "EncodedSet",
    "Example",
    "ReadReport",
    "encode_examples",
    "example_texts",
    "iter_batches",
    "load_examples",
    "make_batch",
    "read_chatterbot",
    "read_file",
    "split_examples",
]
