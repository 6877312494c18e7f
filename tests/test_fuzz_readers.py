"""Data readers under generated input (hypothesis): random bytes, wrong encodings,
enormous lines, JSON of every wrong type and depth, zips that are not zips or hold
damaged members. Every file is read with a count of skipped rows, or refused with one
line that names the file; never a traceback."""

from __future__ import annotations

import collections
import io
import json
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlm.data.example import MAX_BAD_FRACTION
from dlm.data.readers import read_dialogues, read_file
from dlm.errors import DataError
from tests.strategies import ODD, SURROGATES, is_unicode

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def read_or_refuse(path) -> None:
    try:
        examples, report = read_file(path)
    except DataError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message.strip(), message
        return
    assert report.kept == len(examples) and report.skipped_rows >= len(report.skipped)
    assert all(line.startswith(str(path)) for line in report.skipped), report.skipped


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["prompt", "response", "messages", "role", "content", "text",
                         "instruction", "output", "context", "dialog", "x"]) | st.text(
            max_size=8), inner, max_size=5),
    max_leaves=15)
chat_like = st.fixed_dictionaries({}, optional={
    "messages": st.lists(st.fixed_dictionaries({}, optional={
        "role": st.sampled_from(["user", "assistant", "system", "bot", 3, None]),
        "content": st.text(max_size=20) | st.integers() | st.none()}), max_size=4),
    "prompt": st.text(max_size=20) | st.integers() | st.lists(st.text(max_size=5)),
    "response": st.text(max_size=20) | st.none() | st.floats(),
    "instruction": st.text(max_size=20), "output": st.text(max_size=20) | st.booleans()})
lines = st.one_of(
    json_values.map(json.dumps), chat_like.map(json.dumps), st.text(max_size=60),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),  # deep nesting
    st.integers(1, 200_000).map(lambda n: json.dumps({"prompt": "a" * n, "response": "b"})))


@SETTINGS
@given(rows=st.lists(lines, max_size=12), encoding=st.sampled_from(["utf-8", "utf-16",
                                                                     "latin-1"]))
def test_jsonl_files_of_any_rows(tmp_path_factory, rows, encoding):
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_bytes("\n".join(rows).encode(encoding, errors="replace"))
    read_or_refuse(path)


@SETTINGS
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".jsonl", ".tsv", ".txt",
                                                               ".zip"]))
def test_random_bytes_under_every_extension(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(data)
    read_or_refuse(path)


tsv_lines = st.one_of(
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map("\t".join),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
    st.integers(0, 5).map(lambda n: "\t" * n),
    st.integers(1, 300_000).map(lambda n: "p\t" + "r" * n))


@SETTINGS
@given(rows=st.lists(tsv_lines, max_size=20), crlf=st.booleans())
def test_tsv_files_of_any_lines(tmp_path_factory, rows, crlf):
    path = tmp_path_factory.mktemp("tsv") / "pairs.tsv"
    path.write_bytes(("\r\n" if crlf else "\n").join(rows).encode("utf-8", "surrogatepass"))
    read_or_refuse(path)


@SETTINGS
@given(members=st.lists(st.tuples(
    st.sampled_from(["dialogues_train.txt", "x/dialogues_text.txt", "dialogues_act.txt",
                     "readme.txt"]),
    st.one_of(st.lists(st.text(max_size=30), max_size=5).map(" __eou__ ".join),
              st.binary(max_size=200))), max_size=3),
    damage=st.sampled_from(["none", "truncate", "flip"]))
def test_zips_with_any_members_whole_or_damaged(tmp_path_factory, members, damage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content if isinstance(content, bytes)
                             else content.encode("utf-8", "surrogatepass"))
    data = bytearray(buffer.getvalue())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip" and len(data) > 40:
        for i in range(30, min(len(data) - 30, 90)):
            data[i] ^= 0x5A
    path = tmp_path_factory.mktemp("zip") / "dailydialog.zip"
    path.write_bytes(bytes(data))
    read_or_refuse(path)


# ---------------------------------------------------------------- text at the readers
READ_SEEN: collections.Counter = collections.Counter()  # (reader, rows, kind) -> count
NOT_A_SEPARATOR = st.characters(exclude_characters="\t\n\r", exclude_categories=["Cs"])


def good_text() -> st.SearchStrategy[str]:
    """Valid door text without the readers' own separators (tab, line ends, `#` at the
    start, `__eou__`), not blank. A text that starts with a BOM is left out: at a file's
    start the BOM is dropped (`test_a_byte_order_mark_starts_a_file_and_is_kept_inside_text`)."""
    plain = st.text(NOT_A_SEPARATOR, min_size=1, max_size=6)
    odd = ODD.filter(lambda c: "\n" not in c and "\r" not in c)
    return st.lists(st.one_of(plain, odd), min_size=1, max_size=4).map("".join).filter(
        lambda t: t.strip() and not t.lstrip().startswith(("#", "\ufeff"))
        and "__eou__" not in t)


def bad_rows(good: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    """A row with an unpaired surrogate in its prompt, its reply or both."""
    return st.tuples(good, SURROGATES, st.sampled_from([0, 1, 2])).map(
        lambda b: (b[0][0] + (b[1] if b[2] != 1 else ""),
                   b[0][1] + (b[1] if b[2] != 0 else "")))


GOOD_ROWS = st.tuples(good_text(), good_text())
# 10 to 30 good rows with 0 to 3 bad ones put among them: a file is refused whole once
# more than a tenth of its rows are bad (`MAX_BAD_FRACTION`), so both outcomes occur
FILES = st.tuples(st.lists(GOOD_ROWS, min_size=10, max_size=30),
                  st.lists(st.tuples(bad_rows(GOOD_ROWS), st.integers(0, 30)), max_size=3))


def with_bad_rows(spec) -> list[tuple[str, str]]:
    rows, bad = spec
    rows = list(rows)
    for row, at in bad:
        rows.insert(min(at, len(rows)), row)
    return rows


def write_rows(folder, reader: str, rows: list[tuple[str, str]]):
    """The rows as a file of `reader`'s format; surrogates as JSON escapes in JSON, as
    the bytes that would encode them (ED A0 80) elsewhere."""
    raw = "surrogatepass"
    if reader == "jsonl":
        path = folder / "data.jsonl"
        path.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in rows))
    elif reader == "tsv":
        path = folder / "pairs.tsv"
        path.write_bytes("\n".join(f"{p}\t{r}" for p, r in rows).encode("utf-8", raw))
    elif reader == "txt":
        path = folder / "corpus.txt"
        path.write_bytes("\n\n".join(f"{p}\n{r}" for p, r in rows).encode("utf-8", raw))
    elif reader == "zip":
        path = folder / "dailydialog.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("dialogues_text.txt", "\n".join(
                f"{p} __eou__ {r} __eou__" for p, r in rows).encode("utf-8", raw))
    elif reader == "hub-convlab":
        path = folder / "data.zip"
        dialogues = [{"data_split": "train", "turns": [
            {"speaker": "user", "utterance": p}, {"speaker": "system", "utterance": r}]}
            for p, r in rows]
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data/dialogues.json", json.dumps(dialogues))
    else:  # hub-json: read by `datasets` (Arrow holds only UTF-8: any bad row fails all)
        path = folder / "rows.json"
        path.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in rows))
    return path


def read_any(reader: str, path):
    if reader.startswith("hub"):
        from dlm.data.hub import load_hub_splits
        from dlm.data.rows import FieldMap

        examples, report = load_hub_splits(str(path), FieldMap())["train"]
        return examples, report
    return read_dialogues(path)


@pytest.mark.parametrize("reader", ["jsonl", "tsv", "txt", "zip", "hub-convlab",
                                    "hub-json"])
def test_text_that_is_not_unicode_is_a_bad_row_in_every_reader(tmp_path_factory, reader,
                                                                request):
    """Each reader, given rows of door text: a row holding an unpaired surrogate is a
    skipped row named by file and line (more than a tenth of them: a one-line refusal
    naming the file; `datasets`, whose Arrow holds only UTF-8, refuses the file at the
    first); every other row is kept exactly as given (stripped, never normalised)."""

    @given(spec=FILES)
    @settings(max_examples=request.config.getoption("--fuzz-examples") * 3, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    def run(spec):
        one_file(tmp_path_factory, reader, with_bad_rows(spec))

    run()


def one_file(tmp_path_factory, reader: str, rows: list[tuple[str, str]]) -> None:
    path = write_rows(tmp_path_factory.mktemp(reader), reader, rows)
    invalid = [not (is_unicode(p) and is_unicode(r)) for p, r in rows]
    READ_SEEN[(reader, "files")] += 1
    READ_SEEN[(reader, "rows")] += len(rows)
    READ_SEEN[(reader, "invalid rows")] += sum(invalid)
    try:
        examples, report = read_any(reader, path)
    except DataError as exc:
        READ_SEEN[(reader, "files refused")] += 1
        assert str(path) in str(exc) and "\n" not in str(exc).strip(), exc
        limit = 0 if reader == "hub-json" else MAX_BAD_FRACTION * len(rows)
        assert sum(invalid) > limit, exc
        return
    except Exception:
        READ_SEEN[(reader, "tracebacks")] += 1
        raise
    READ_SEEN[(reader, "rows skipped")] += report.skipped_rows
    READ_SEEN[(reader, "rows kept")] += len(examples)
    texts = [m["content"] for ex in examples for m in (ex.messages or [])] + [
        ex.text for ex in examples if ex.text is not None]
    assert all(is_unicode(t) for t in texts)
    assert report.skipped_rows == sum(invalid), (report.skipped, invalid)
    assert sum(invalid) <= (0 if reader == "hub-json" else MAX_BAD_FRACTION * len(rows))
    assert all(str(path) in line for line in report.skipped)
    if reader == "txt":
        kept = [tuple(ex.text.split("\n")) for ex in examples]
        assert kept == [(p, r) for (p, r), bad in zip(rows, invalid, strict=True) if not bad]
    else:
        kept = [tuple(m["content"] for m in ex.messages) for ex in examples]
        assert kept == [(p.strip(), r.strip()) for (p, r), bad in
                        zip(rows, invalid, strict=True) if not bad]


def test_a_byte_order_mark_starts_a_file_and_is_kept_inside_text(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"\xef\xbb\xbfhello\thi \xef\xbb\xbf there\n")
    examples, _ = read_dialogues(path)
    assert [m["content"] for m in examples[0].messages] == ["hello", "hi \ufeff there"]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"prompt": "a\\u0000b", "response": "e\\u0301"}\n')
    examples, report = read_dialogues(jsonl)
    assert report.skipped_rows == 0
    assert [m["content"] for m in examples[0].messages] == ["a\x00b", "e\u0301"]


def test_the_readers_fuzz_counts(request):
    """Writes the counts of the text fuzz above beside the API's (`--fuzz-report FILE`
    writes FILE with `-readers` before its suffix)."""
    assert READ_SEEN[("jsonl", "tracebacks")] == 0 if READ_SEEN else True
    out = request.config.getoption("--fuzz-report")
    if out and READ_SEEN:
        from pathlib import Path

        per_reader: dict = collections.defaultdict(dict)
        for (reader, kind), n in sorted(READ_SEEN.items()):
            per_reader[reader][kind] = n
        for counts in per_reader.values():
            counts.setdefault("tracebacks", 0)
        target = Path(out)
        target.with_name(f"{target.stem}-readers{target.suffix}").write_text(
            json.dumps(per_reader, indent=1))
