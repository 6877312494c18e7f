"""Datasets in the Hugging Face hub's layouts, loaded with the `datasets` library.

A hub id (`databricks/databricks-dolly-15k`) is downloaded (or read from the local
`datasets` cache); a local folder or a `.parquet`/`.arrow`/`.json`/`.csv` file in
a hub dataset's layout is read the same way, with no network. Each split's rows go
through `dlm.data.rows`, so every row layout the JSONL reader knows works here.
"""

from __future__ import annotations

import re
from pathlib import Path

from dlm.data.example import Example, ReadReport
from dlm.data.rows import FieldMap, row_examples
from dlm.errors import DataError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".csv": "csv"}
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")


def is_hub_id(location: str) -> bool:
    return bool(HUB_ID.match(location)) and not Path(location).exists()


def load_hub_splits(location: str, fields: FieldMap, split: str | None = None,
                    ) -> dict[str, tuple[list[Example], ReadReport]]:
    """{"train": (dialogues, report), "validation": ...} for the splits the dataset has.

    `split` names the one split to read as training data (then no validation split
    is read); by default `train` and the first of validation/valid/val/dev.
    """
    try:
        import datasets
    except ImportError:
        raise DataError("reading hub datasets needs the `datasets` package: "
                        "pip install datasets") from None
    path = Path(location)
    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"{path}: not a hub dataset file (use one of "
                                f"{', '.join(FILE_BUILDERS)})")
            loaded = datasets.load_dataset(builder, data_files={"train": str(path)})
        else:
            loaded = datasets.load_dataset(location)
    except DataError:
        raise
    except Exception as exc:  # the library raises many types; the message is what matters
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{location}: could not load with `datasets` ({first})") from None
    wanted = {"train": split or "train"}
    if split is None:
        found = [s for s in VALIDATION_SPLITS if s in loaded]
        if found:
            wanted["validation"] = found[0]
    if wanted["train"] not in loaded:
        raise DataError(f"{location}: no split {wanted['train']!r} (splits: "
                        f"{', '.join(loaded)}); choose one with --split")
    out = {}
    for role, name in wanted.items():
        report = ReadReport(f"{location}[{name}]")
        dialogues = []
        for i, row in enumerate(loaded[name]):
            try:
                dialogues.extend(row_examples(row, fields))
            except ValueError as exc:
                report.skip(f"{location}[{name}] row {i}", str(exc))
        report.kept = len(dialogues)
        report.check()
        out[role] = (dialogues, report)
    return out
