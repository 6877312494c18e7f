"""Data readers under generated input (hypothesis): random bytes, wrong encodings,
enormous lines, JSON of every wrong type and depth, zips that are not zips or hold
damaged members. Every file is read with a count of skipped rows, or refused with one
line that names the file; never a traceback."""

from __future__ import annotations

import io
import json
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlm.data.readers import read_file
from dlm.errors import DataError

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
