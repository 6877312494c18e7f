"""`dlm data`: every source layout (fixtures written here), the cleaning, filters,
de-duplication, mixing, and the real DailyDialog and Dolly files when present."""

import json
import zipfile

import pytest

from dlm.config import DataConfig
from dlm.data.clean import clean_text
from dlm.data.example import Example, expand_turns
from dlm.data.prepare import parse_mix, prepare
from dlm.data.readers import read_dialogues, read_file
from dlm.data.rows import FieldMap, row_examples
from dlm.data.sources import parse_source, read_sources
from dlm.errors import DataError

from .conftest import SHARED_DATA

needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "dailydialog" / "train.zip").is_file(),
    reason=f"real corpora not found at {SHARED_DATA} (the ../shared/data folder)")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dailydialog_zip(path, dialogues, split="train"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{split}/dialogues_{split}.txt",
                   "".join(" __eou__ ".join(d) + " __eou__\n" for d in dialogues))
        z.writestr(f"{split}/dialogues_act_{split}.txt", "1 2 3\n" * len(dialogues))
    return path


def contents(ex: Example) -> list[str]:
    return [m["content"] for m in ex.messages]


# ------------------------------------------------------------------ row layouts
@pytest.mark.parametrize("row,expected", [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
     ["a", "b"]),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
     ["a", "b"]),
    ({"turns": [{"speaker": "user", "utterance": "a"},
                {"speaker": "system", "utterance": "b"}]}, ["a", "b"]),
    ({"dialog": ["a", "b", "c"]}, ["a", "b", "c"]),
    ({"instruction": "q", "context": "ctx", "response": "r", "category": "open_qa"},
     ["q\n\nctx", "r"]),
    ({"instruction": "q", "input": "", "output": "r"}, ["q", "r"]),
    ({"question": "q", "answer": "r"}, ["q", "r"]),
    ({"text": "### Human: q ### Assistant: r"}, ["q", "r"]),
])
def test_each_row_layout_becomes_a_dialogue(row, expected):
    [ex] = row_examples(row)
    assert contents(ex) == expected
    assert ex.messages[-1]["role"] == "assistant" or ex.symmetric


def test_self_instruct_rows_give_one_example_per_instance():
    row = {"instruction": "Add.", "instances": [{"input": "1+1", "output": "2"},
                                                {"input": "", "output": "none"}]}
    assert [contents(e) for e in row_examples(row)] == [["Add.\n\n1+1", "2"], ["Add.", "none"]]


def test_named_fields_and_plain_text():
    row = {"q": "hi", "a": "hello", "extra": 1}
    [ex] = row_examples(row, FieldMap(prompt_field="q", response_field="a"))
    assert contents(ex) == ["hi", "hello"]
    assert row_examples({"text": "once upon a time"})[0].text == "once upon a time"
    with pytest.raises(ValueError, match="no field 'a'"):
        row_examples({"q": "hi"}, FieldMap(prompt_field="q", response_field="a"))
    with pytest.raises(ValueError, match="unknown row layout"):
        row_examples({"foo": 1})


# ------------------------------------------------------------------------ turns
def test_turns_with_history_pairs_and_both_speakers_of_a_dialogue():
    d = row_examples({"dialog": ["u0", "u1", "u2"]})[0]
    full = list(expand_turns(d, "history"))
    assert [contents(e) for e in full] == [["u0", "u1"], ["u0", "u1", "u2"]]
    # each reply is the assistant's, the turn before it the user's
    assert [m["role"] for m in full[1].messages] == ["assistant", "user", "assistant"]
    assert [contents(e) for e in expand_turns(d, "pair")] == [["u0", "u1"], ["u1", "u2"]]
    chat = row_examples({"messages": [{"role": "user", "content": "a"},
                                      {"role": "assistant", "content": "b"},
                                      {"role": "user", "content": "c"},
                                      {"role": "assistant", "content": "d"}]})[0]
    assert [contents(e) for e in expand_turns(chat)] == [["a", "b"], ["a", "b", "c", "d"]]


def test_cleaning_undoes_tokenised_spacing_and_curly_quotes():
    assert clean_text("I ’ m fine , thanks .  Are you ?") == "I'm fine, thanks. Are you?"
    assert clean_text("That's too far.Can you ( maybe ) help ?") == \
        "That's too far. Can you (maybe) help?"
    assert clean_text("\u201cquoted\u201d  text") == '"quoted" text'


# ------------------------------------------------------------------------ files
def test_dailydialog_zip_reads_dialogues_and_ignores_label_files(tmp_path):
    path = dailydialog_zip(tmp_path / "train.zip", [["hi", "hello", "how are you"],
                                                    ["bye", "see you"]])
    dialogues, report = read_dialogues(path)
    assert [contents(d) for d in dialogues] == [["hi", "hello", "how are you"], ["bye", "see you"]]
    assert report.kept == 2
    examples, _ = read_file(path)
    assert len(examples) == 3


def test_a_zip_without_dialogues_is_a_clear_error(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "nothing")
    with pytest.raises(DataError, match="no dialogues_"):
        read_dialogues(path)


def test_source_names_and_splits_come_from_the_path(tmp_path):
    folder = tmp_path / "dailydialog"
    folder.mkdir()
    dailydialog_zip(folder / "train.zip", [["a", "b"]])
    dailydialog_zip(folder / "validation.zip", [["c", "d"]], "validation")
    src = parse_source(str(folder / "validation.zip"))
    assert (src.name, src.split) == ("dailydialog", None)
    [data] = read_sources([str(folder / "train.zip"), str(folder / "validation.zip")], FieldMap())
    assert data.name == "dailydialog" and set(data.splits) == {"train", "validation"}
    named = parse_source(f"chat={folder / 'train.zip'}@validation")
    assert (named.name, named.split) == ("chat", "validation")
    with pytest.raises(DataError, match="not a hub id"):
        parse_source("nothing-here")  # parses; reading it fails
        read_sources(["nothing-here"], FieldMap())


# --------------------------------------------------------------- hub layouts
def test_hub_layout_folder_with_splits_loads_with_datasets(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "dolly-like"
    (folder / "data").mkdir(parents=True)
    rows = [{"instruction": f"question {i}?", "context": "", "response": f"answer {i}.",
             "category": "open_qa"} for i in range(20)]
    write_jsonl(folder / "data" / "train.jsonl", rows[:16])
    write_jsonl(folder / "data" / "validation.jsonl", rows[16:])
    [data] = read_sources([str(folder)], FieldMap())
    assert len(data.splits["train"]) == 16 and len(data.splits["validation"]) == 4
    assert contents(data.splits["validation"][0]) == ["question 16?", "answer 16."]


def test_hub_parquet_file_in_convlab_turns_layout(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"dialogue_id": f"d{i}", "turns": [
        {"speaker": "user", "utterance": f"hello {i}"},
        {"speaker": "system", "utterance": f"hi {i}"}]} for i in range(5)]
    path = tmp_path / "convlab.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    [data] = read_sources([str(path)], FieldMap())
    assert [contents(d) for d in data.splits["train"]][:2] == [["hello 0", "hi 0"],
                                                               ["hello 1", "hi 1"]]


def convlab_snapshot(folder):
    """A ConvLab unified-format hub repository as files: data.zip with data/dialogues.json."""
    folder.mkdir(parents=True)
    dialogues = [{"dataset": "dailydialog", "data_split": split,
                  "dialogue_id": f"dailydialog-{split}-{i}",
                  "turns": [{"speaker": "user", "utterance": f"hello {split} {i}", "utt_idx": 0},
                            {"speaker": "system", "utterance": f"hi {i}", "utt_idx": 1},
                            {"speaker": "user", "utterance": "bye", "utt_idx": 2},
                            {"speaker": "system", "utterance": "see you", "utt_idx": 3}]}
                 for split, n in (("train", 6), ("validation", 2), ("test", 2)) for i in range(n)]
    with zipfile.ZipFile(folder / "data.zip", "w") as z:
        z.writestr("data/dialogues.json", json.dumps(dialogues))
        z.writestr("data/ontology.json", "{}")
    (folder / "dailydialog.py").write_text("# the loading script current `datasets` won't run\n")
    return folder


def test_convlab_unified_snapshot_reads_its_zip_by_data_split(tmp_path):
    folder = convlab_snapshot(tmp_path / "dailydialog")
    [data] = read_sources([str(folder)], FieldMap())
    assert data.name == "dailydialog"
    assert len(data.splits["train"]) == 6 and len(data.splits["validation"]) == 2  # no test
    first = data.splits["train"][0]
    assert [m["role"] for m in first.messages] == ["user", "assistant", "user", "assistant"]
    assert len(list(expand_turns(first))) == 2  # the system's two replies
    [direct] = read_sources([str(folder / "data.zip")], FieldMap())
    assert len(direct.splits["train"]) == 6


def test_hub_split_that_does_not_exist_names_the_splits(tmp_path):
    pytest.importorskip("datasets")
    path = write_jsonl(tmp_path / "rows.json", [{"prompt": "a", "response": "b"}])
    with pytest.raises(DataError, match="no split 'dev'"):
        read_sources([str(path)], FieldMap(), hub_split="dev")


# ------------------------------------------------------------------- pipeline
def make_sources(tmp_path):
    dd = tmp_path / "dailydialog"
    dd.mkdir(parents=True)
    train = [[f"Hello , friend {i} .", f"Hi ! I ' m number {i} .", "Good ."] for i in range(40)]
    train.append(train[0])  # a repeated dialogue
    dailydialog_zip(dd / "train.zip", train)
    # one validation dialogue that is also in train (other spacing), one new
    dailydialog_zip(dd / "validation.zip", [["Hello, friend 3.", "Hi! I'm number 3.", "Good."],
                                            ["new one", "reply"]], "validation")
    rows = [{"text": f"### Human: what is {i}? ### Assistant: it is {i}."} for i in range(30)]
    rows.append({"text": "### Human: long ### Assistant: " + "x" * 50})
    qa = write_jsonl(tmp_path / "qa.jsonl", rows)
    return [str(dd / "train.zip"), str(dd / "validation.zip"), f"qa={qa}"]


def test_prepare_counts_every_step_and_writes_chat_jsonl_and_shards(tmp_path):
    cfg = DataConfig(sources=make_sources(tmp_path), out_dir=str(tmp_path / "out"),
                     vocab_size=300, max_response_chars=40, val_fraction=0.1)
    result = prepare(cfg, say=lambda _: None)
    steps = {(s.step, s.source, s.split): s for s in result.steps}
    assert steps[("turns", "dailydialog", "train")].kept == 41 * 2
    assert steps[("dedupe", "dailydialog", "train")].dropped == {"duplicate": 2}
    assert steps[("val vs train", "dailydialog", "validation")].dropped == {"also in train": 2}
    assert steps[("length", "qa", "train")].dropped.get("reply over 40 chars", 0) + \
        steps[("length", "qa", "validation")].dropped.get("reply over 40 chars", 0) == 1
    assert steps[("clean", "dailydialog", "train")].notes == {"text changed": 41}
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    assert len(lines) == result.examples["train"] == 80 + 27
    first = json.loads(lines[0])
    assert first["messages"][1]["content"] == "Hi! I'm number 0."
    assert result.tokens["train"] > 0 and result.tokens["validation"] > 0
    saved = json.loads((tmp_path / "out" / "data.json").read_text())
    assert saved["kind"] == "chat" and saved["examples"] == result.examples


def test_mix_resamples_training_examples_to_the_weights(tmp_path):
    cfg = DataConfig(sources=make_sources(tmp_path), out_dir=str(tmp_path / "out"),
                     vocab_size=300, mix=parse_mix("dailydialog=0.5,qa=0.5"))
    result = prepare(cfg, say=lambda _: None)
    mixed = {s.source: s for s in result.steps if s.step == "mix"}
    total = mixed["dailydialog"].kept + mixed["qa"].kept
    assert abs(mixed["dailydialog"].kept - mixed["qa"].kept) <= 1
    assert mixed["dailydialog"].dropped["sampled out"] > 0
    assert any(k.startswith("extra copies") for k in mixed["qa"].notes)
    assert result.examples["train"] == total
    with pytest.raises(DataError, match="'nope' matches no source"):
        prepare(DataConfig(sources=make_sources(tmp_path / "x"), out_dir=str(tmp_path / "o2"),
                           mix={"nope": 1.0}), say=lambda _: None)
    with pytest.raises(DataError, match="not NAME=WEIGHT"):
        parse_mix("dailydialog")


def test_plain_text_source_is_kept_as_documents(tmp_path):
    (tmp_path / "stories.txt").write_text("\n\n".join(f"story number {i} ends." for i in range(20)))
    result = prepare(DataConfig(sources=[str(tmp_path / "stories.txt")],
                                out_dir=str(tmp_path / "out"), vocab_size=300),
                     say=lambda _: None)
    row = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert set(row) == {"text"}
    assert json.loads((tmp_path / "out" / "data.json").read_text())["kind"] == "text"
    assert result.examples["train"] + result.examples["validation"] == 20


# ------------------------------------------------------------------- real data
@needs_shared
def test_real_dailydialog_zip_has_the_documented_dialogue_counts():
    dialogues, _ = read_dialogues(SHARED_DATA / "dailydialog" / "train.zip")
    assert len(dialogues) == 11118
    assert sum(len(d.messages) for d in dialogues) == 87171  # utterances, as its README says
    val, _ = read_dialogues(SHARED_DATA / "dailydialog" / "validation.zip")
    assert len(val) == 1000


@needs_shared
def test_real_dolly_open_qa_reads_every_line_as_a_chat():
    examples, report = read_file(SHARED_DATA / "dolly_open_qa" / "open_qa.jsonl")
    assert len(examples) == 3742 and not report.skipped
    assert all(e.messages[0]["role"] == "user" and e.messages[-1]["content"] for e in examples)
