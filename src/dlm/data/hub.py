"""Datasets in the Hugging Face hub's layouts, loaded with the `datasets` library.

A hub id (`databricks/databricks-dolly-15k`) is downloaded (or read from the local
`datasets` cache); a local folder or a `.parquet`/`.arrow`/`.json`/`.csv` file in
a hub dataset's layout is read the same way, with no network. Each split's rows go
through `dlm.data.rows`, so every row layout the JSONL reader knows works here.

ConvLab's unified datasets (`ConvLab/dailydialog`, `ConvLab/multiwoz21`, ...) keep their
data in a `data.zip` holding `data/dialogues.json` (each dialogue with its `data_split`
and `turns`) and a loading script that current `datasets` no longer runs; a hub id
that `datasets` cannot load is therefore downloaded as files and read from that zip.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from dlm.data.example import Example, ReadReport
from dlm.data.rows import FieldMap, row_examples
from dlm.errors import DataError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".csv": "csv"}
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")


def is_hub_id(location: str) -> bool:
    return bool(HUB_ID.match(location)) and not Path(location).exists()


def convlab_zip(path: Path) -> Path | None:
    """The ConvLab unified-format zip at `path` (a zip, or a snapshot folder with `data.zip`)."""
    candidate = path / "data.zip" if path.is_dir() else path
    if candidate.suffix.lower() != ".zip" or not candidate.is_file():
        return None
    try:
        with zipfile.ZipFile(candidate) as z:
            found = any(Path(n).name == "dialogues.json" for n in z.namelist())
    except zipfile.BadZipFile:
        return None
    return candidate if found else None


def read_convlab(path: Path, split: str | None = None,
                 ) -> dict[str, tuple[list[Example], ReadReport]]:
    """Dialogues of a ConvLab unified zip by their `data_split` (test is left out).

    Each dialogue's `turns` alternate `user` and `system`; the system's turns are the replies.
    """
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if Path(n).name == "dialogues.json")
        try:
            dialogues = json.loads(z.read(name))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{name}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(dialogues, list):
        raise DataError(f"{path}:{name}: expected a list of dialogues")
    wanted = {split: "train"} if split else {"train": "train", "validation": "validation"}
    out = {role: ([], ReadReport(f"{path}[{name}]")) for role in wanted.values()}
    for i, dialogue in enumerate(dialogues):
        role = wanted.get(dialogue.get("data_split") if isinstance(dialogue, dict) else None)
        if role is None:
            continue
        found, report = out[role]
        try:
            found.extend(row_examples(dialogue, FieldMap(format="turns")))
        except ValueError as exc:
            report.skip(f"{path}:{name}: dialogue {i}", str(exc))
    for found, report in out.values():
        report.kept = len(found)
    out = {role: v for role, v in out.items() if v[0] or v[1].skipped}
    if "train" not in out:
        raise DataError(f"{path}: no dialogues with data_split {split or 'train'!r}")
    for _, report in out.values():
        report.check()
    return out


def root_cause(exc: BaseException) -> str:
    """The first line of the first specific error in `exc`'s chain: `datasets` wraps the
    parser's own word (Arrow's "Invalid UTF8 sequence ... in row 5") in a generic one."""
    generic = ("An error occurred while generating the dataset",)
    while exc is not None:
        text = str(exc).strip()
        if text and not text.startswith(generic):
            return text.splitlines()[0][:300]
        exc = exc.__cause__ or exc.__context__
    return "no message"


def _download(location: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=location, repo_type="dataset"))


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
    local_zip = convlab_zip(path) if path.exists() else None
    if local_zip is not None:
        return read_convlab(local_zip, split)
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
        first = root_cause(exc)
        if is_hub_id(location):  # perhaps a ConvLab-style repository: its files, then its zip
            try:
                snapshot = convlab_zip(_download(location))
            except Exception:  # offline, or no such repository: the first error says more
                snapshot = None
            if snapshot is not None:
                return read_convlab(snapshot, split)
        hint = ("; without network, pass a local copy (a folder in the hub layout)"
                if is_hub_id(location) else "")
        raise DataError(f"{location}: could not load with `datasets` ({first}){hint}") from None
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
