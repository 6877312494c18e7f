"""Where data comes from: a source spec names a file, a folder or a hub id, and a split.

Spec syntax: `[NAME=]LOCATION[@SPLIT]`; LOCATION may also name a corpus that an installed
package ships (`chitchat`, see `dlm.data.packaged`). The name (used by `--mix`) defaults to the
file's stem, or its folder's name when the stem says nothing (`train.zip` in
`dailydialog/` is `dailydialog`); the split (train or validation) defaults to what
the file name says. Sources with the same name are one source: DailyDialog's
`train.zip` and `validation.zip` give the train and validation splits of `dailydialog`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dlm.data.example import Example, ReadReport
from dlm.data.hub import (
    FILE_BUILDERS,
    VALIDATION_SPLITS,
    convlab_zip,
    is_hub_id,
    load_hub_splits,
)
from dlm.data.packaged import PACKAGED
from dlm.data.readers import read_dialogues
from dlm.data.rows import FieldMap
from dlm.errors import DataError

SPLITS = ("train", "validation")
# Stems that name a split or nothing in particular, so the folder names the source.
GENERIC_STEMS = {"train", "test", "data", "input", "dialogues", "all", *VALIDATION_SPLITS}


@dataclass
class Source:
    name: str
    location: str
    split: str | None = None
    """train or validation; None = the file's name says, or (hub) both."""


@dataclass
class SourceData:
    """Dialogues of one named source, per split, with a report per file or hub split."""

    name: str
    splits: dict[str, list[Example]] = field(default_factory=dict)
    reports: list[ReadReport] = field(default_factory=list)


def _split_of(path: Path) -> str:
    words = set(re.split(r"[\W_]+", path.stem.lower()))
    if words & set(VALIDATION_SPLITS):
        return "validation"
    if "test" in words:
        return "test"
    return "train"


def parse_source(spec: str) -> Source:
    name, location, split = None, spec, None
    if "=" in spec and not Path(spec).exists():
        name, location = spec.split("=", 1)
    if "@" in location and not Path(location).exists():
        location, split = location.rsplit("@", 1)
        if split not in SPLITS:
            raise DataError(f"{spec}: unknown split {split!r}; use @train or @validation")
    if not location:
        raise DataError(f"{spec}: empty source")
    path = Path(location)
    if name is None:
        if path.exists():
            stem = path.stem.lower()
            is_generic = stem in GENERIC_STEMS or _split_of(path) != "train"
            name = path.resolve().parent.name if is_generic and path.is_file() else stem
            name = name.lower() if name else stem
        else:
            name = location.rstrip("/").split("/")[-1].lower()
    return Source(name, location, split)


def read_source(source: Source, fields: FieldMap, hub_split: str | None = None) -> SourceData:
    """The dialogues of one source, by split; local files by extension, the rest by `datasets`."""
    out = SourceData(source.name)
    path = Path(source.location)
    if not path.exists() and source.location in PACKAGED:  # an installed package's corpus
        dialogues, report = PACKAGED[source.location]()
        out.splits[source.split or "train"] = dialogues
        out.reports.append(report)
        return out
    hub_layout = (path.is_dir() or path.suffix.lower() in FILE_BUILDERS
                  or (path.exists() and convlab_zip(path) is not None))
    if path.exists() and not hub_layout:
        split = source.split or _split_of(path)
        if split == "test":
            raise DataError(f"{path}: a test split; dlm data uses train and validation only "
                            f"(write {source.location}@validation to use it as validation)")
        dialogues, report = read_dialogues(path, fields)
        out.splits[split] = dialogues
        out.reports.append(report)
        return out
    if not path.exists() and not is_hub_id(source.location):
        raise DataError(f"{source.location}: no such file or folder, not a hub id "
                        f"(owner/name), and not a packaged corpus ({', '.join(PACKAGED)})")
    for role, (dialogues, report) in load_hub_splits(source.location, fields, hub_split).items():
        if role == "train" and source.split:  # `@validation` relabels a hub's train split
            role = source.split
        out.splits[role] = out.splits.get(role, []) + dialogues
        out.reports.append(report)
    return out


def read_sources(specs: list[str], fields: FieldMap, hub_split: str | None = None,
                 ) -> list[SourceData]:
    """Every source, the files of one name merged into one source."""
    merged: dict[str, SourceData] = {}
    for spec in specs:
        data = read_source(parse_source(spec), fields, hub_split)
        into = merged.setdefault(data.name, SourceData(data.name))
        for split, dialogues in data.splits.items():
            into.splits[split] = into.splits.get(split, []) + dialogues
        into.reports += data.reports
    return list(merged.values())
