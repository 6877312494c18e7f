"""Readers that turn data files into dialogues or plain-text documents.

Each reader yields `Example`s (a whole dialogue, or one document) and records the
rows it skipped (with file and line) in a `ReadReport`; `read_file` then makes one
example per reply. A file whose rows are mostly bad is an error, not a warning:
it is more likely the wrong file or format than a few dirty rows.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from dlm.data.example import Example, ReadReport, expand_turns, pair
from dlm.data.rows import FieldMap, dialogue, row_examples
from dlm.errors import DataError
from dlm.util.wellformed import problem

# A byte-order mark starts some UTF-8 files (it is dropped there, and kept as text
# anywhere else). Bytes that encode a surrogate (ED A0 80) are read as the surrogate, so
# that row is refused with its line, as any bad row; other bytes that are not UTF-8 refuse
# the whole file (it is more likely in another encoding than damaged in one row).
ENCODING = dict(encoding="utf-8-sig", errors="surrogatepass")


# ----------------------------------------------------------------- file formats
def read_tsv(path: Path, report: ReadReport) -> Iterator[Example]:
    """`prompt<TAB>response` per line; blank lines and `#` comments are ignored."""
    with path.open(**ENCODING) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if (said := problem(line)) is not None:
                report.skip(f"{path}:{lineno}", said)
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                report.skip(f"{path}:{lineno}", "expected 'prompt<TAB>response'")
                continue
            yield pair(parts[0].strip(), parts[1].strip())


def read_jsonl(path: Path, report: ReadReport, fields: FieldMap | None = None,
               ) -> Iterator[Example]:
    """One JSON object per line, in any layout of `dlm.data.rows` (detected per line)."""
    with path.open(**ENCODING) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                report.skip(where, f"invalid JSON ({exc.msg})")
                continue
            except RecursionError:  # the parser recurses once per level of nesting
                report.skip(where, "JSON nested too deeply")
                continue
            try:
                yield from row_examples(row, fields)
            except ValueError as exc:
                report.skip(where, str(exc))


def read_text(path: Path, report: ReadReport) -> Iterator[Example]:
    """Plain text for unconditional training: one document per blank-line-separated block
    (a block with a line that is not well-formed Unicode is skipped, naming the line)."""
    block: list[str] = []
    bad: tuple[str, str] | None = None
    with path.open(**ENCODING) as f:
        for lineno, line in enumerate([*f, ""], 1):
            if line.strip():
                block.append(line.rstrip("\n"))
                if bad is None and (said := problem(line)) is not None:
                    bad = f"{path}:{lineno}", said
            elif block:
                if bad is None:
                    yield Example(text="\n".join(block))
                else:
                    report.skip(*bad)
                block, bad = [], None


def read_dailydialog_zip(path: Path, report: ReadReport) -> Iterator[Example]:
    """The original DailyDialog release: `dialogues_*.txt` in the zip, one dialogue per line,
    utterances separated by `__eou__` (the act and emotion label files are ignored)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
        raise DataError(f"{path}: not a zip file, or a damaged one") from None
    with archive:
        names = [n for n in archive.namelist()
                 if Path(n).name.startswith("dialogues_") and n.endswith(".txt")
                 and "_act" not in n and "_emotion" not in n]
        if not names:
            raise DataError(f"{path}: no dialogues_*.txt inside; is this the DailyDialog zip?")
        for name in names:
            try:
                yield from _dailydialog_member(archive, name, path, report)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise DataError(f"{path}:{name}: the zip is damaged ({exc})") from None


def _dailydialog_member(archive: zipfile.ZipFile, name: str, path: Path,
                        report: ReadReport) -> Iterator[Example]:
    with archive.open(name) as raw:
        text = io.TextIOWrapper(raw, **ENCODING)
        for lineno, line in enumerate(text, 1):
            if not line.strip():
                continue
            if (said := problem(line)) is not None:
                report.skip(f"{path}:{name}:{lineno}", said)
                continue
            utterances = [u.strip() for u in line.split("__eou__") if u.strip()]
            if len(utterances) < 2:
                report.skip(f"{path}:{name}:{lineno}", "fewer than two utterances")
                continue
            yield dialogue(utterances)


READERS: dict[str, Callable[..., Iterator[Example]]] = {
    ".tsv": read_tsv,
    ".jsonl": read_jsonl,
    ".txt": read_text,
    ".zip": read_dailydialog_zip,
}


def read_dialogues(path: str | Path, fields: FieldMap | None = None,
                   ) -> tuple[list[Example], ReadReport]:
    """Whole dialogues (and documents) of one file, chosen by its extension."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; "
                        f"use one of {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    report = ReadReport(str(path))
    try:
        if reader is read_jsonl:
            dialogues = list(read_jsonl(path, report, fields))
        else:
            dialogues = list(reader(path, report))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    report.kept = len(dialogues)
    report.check()
    return dialogues, report


def read_file(path: str | Path, context: str = "history", fields: FieldMap | None = None,
              ) -> tuple[list[Example], ReadReport]:
    """All examples of one file: one per reply (see `expand_turns`), plain text as is."""
    dialogues, report = read_dialogues(path, fields)
    examples = [ex for d in dialogues for ex in expand_turns(d, context)]
    report.kept = len(examples)
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
