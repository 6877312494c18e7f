import json

import pytest

from dlm.data import (
    load_examples,
    make_batch,
    read_chatterbot,
    read_file,
    split_examples,
)
from dlm.data.batch_samplers import validation_set
from dlm.data.prepare import write_jsonl
from dlm.data.shard_cache import build_shards
from dlm.data.shards import TokenShard
from dlm.errors import DataError


def test_tsv_skips_comments_and_blank_lines(pairs_tsv):
    examples, report = read_file(pairs_tsv)
    assert len(examples) == 40 and report.kept == 40 and not report.skipped
    assert examples[0].messages == [{"role": "user", "content": "hello"},
                                    {"role": "assistant", "content": "hi there"}]


def test_a_bad_row_is_reported_with_file_and_line_and_counted(tmp_path):
    path = tmp_path / "p.tsv"
    rows = [f"prompt {i}\tresponse {i}" for i in range(30)]
    rows.insert(4, "no tab on this line")
    path.write_text("\n".join(rows) + "\n")
    examples, report = read_file(path)
    assert len(examples) == 30
    assert report.skipped == [f"{path}:5: expected 'prompt<TAB>response'"]


def test_a_mostly_bad_file_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("good\trow\nthis has no tab\nneither does this\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected 'prompt<TAB>response'"):
        read_file(path)


def test_jsonl_pairs_messages_and_text(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [
        {"prompt": "hello", "response": "hi"},
        {"messages": [{"role": "system", "content": "be nice"},
                      {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
        {"text": "once upon a time"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    examples, report = read_file(path)
    assert report.kept == 4
    # one example per assistant turn, with the whole earlier history
    assert [m["content"] for m in examples[1].messages] == ["a", "b"]
    assert [m["content"] for m in examples[2].messages] == ["a", "b", "c", "d"]
    assert examples[3].text == "once upon a time"


def test_jsonl_bad_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        read_file(path)


def test_text_file_gives_one_document_per_block(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first line\nstill first\n\n\nsecond\n")
    examples, _ = read_file(path)
    assert [e.text for e in examples] == ["first line\nstill first", "second"]


@pytest.mark.parametrize("name,match", [("x.csv", "unsupported file type"),
                                        ("missing.tsv", "data file not found")])
def test_unusable_files_are_errors(tmp_path, name, match):
    with pytest.raises(DataError, match=match):
        read_file(tmp_path / name)


def test_embedded_default_is_chatterbot_english():
    examples, report = read_chatterbot()
    assert len(examples) > 2000
    assert report.source == "chatterbot-corpus/english"
    prompts = {e.messages[0]["content"].lower() for e in examples}
    assert "hello" in prompts
    assert load_examples(None, dedupe=False)[0] == examples


def test_duplicates_are_dropped_case_insensitively_and_counted(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("Hello\tHi there\nhello\thi  there\nhello\tgreetings\n")
    examples, reports = load_examples([str(path)])
    assert [e.messages[1]["content"] for e in examples] == ["Hi there", "greetings"]
    assert reports[0].duplicates == 1
    lower, _ = load_examples([str(path)], lowercase=True)
    assert lower[0].messages[0]["content"] == "hello"


def test_split_is_deterministic_disjoint_and_five_percent(pairs_tsv):
    examples = [e for e, _ in zip(read_chatterbot()[0], range(1000), strict=False)]
    train1, val1 = split_examples(examples, 0.05, seed=3)
    train2, val2 = split_examples(examples, 0.05, seed=3)
    assert val1 == val2 and train1 == train2
    assert len(val1) == 50 and len(train1) == 950
    assert split_examples(examples, 0.05, seed=4)[1] != val1


def encode(examples, tok, tmp_path, prompt_len, response_len, drop_long=False):
    """Examples -> JSONL -> token shards -> tensors, the way training reads them."""
    tmp_path.mkdir(exist_ok=True)
    write_jsonl(tmp_path / "v.jsonl", examples)
    build_shards({"validation": tmp_path / "v.jsonl"}, tok, tmp_path / "tokens")
    shard = TokenShard(tmp_path / "tokens", "validation")
    return validation_set(shard, 10**6, prompt_len, response_len, prompt_len + response_len,
                          tok.pad_id, tok.eos_id, drop_long)


def test_responses_are_padded_with_eos_and_prompts_left_padded(tok, pairs_tsv, tmp_path):
    examples, _ = read_file(pairs_tsv)
    enc = encode(examples[:3], tok, tmp_path, prompt_len=12, response_len=10)
    first = enc.responses[0].tolist()
    n = len(tok.encode("hi there"))
    assert first[:n] == tok.encode("hi there")
    assert first[n:] == [tok.eos_id] * (10 - n)
    assert enc.prompts[0, 0] == tok.pad_id and enc.prompts[0, -1] == tok.assistant_id


def test_batch_trims_shared_left_padding_and_marks_response(tok, pairs_tsv, tmp_path):
    examples, _ = read_file(pairs_tsv)
    enc = encode(examples[:4], tok, tmp_path, prompt_len=20, response_len=8)
    batch = make_batch(enc.prompts, enc.responses, tok.pad_id)
    longest = max(int((p != tok.pad_id).sum()) for p in enc.prompts)
    assert batch.ids.shape == (4, longest + 8)
    assert batch.maskable[:, -8:].all() and not batch.maskable[:, :-8].any()


def test_long_responses_are_cut_or_left_out_and_counted(tok, tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("hi\thello\nlong\t" + "word " * 40 + "\n")
    examples, _ = read_file(path)
    cut = encode(examples, tok, tmp_path / "a", prompt_len=8, response_len=6)
    assert len(cut) == 2 and cut.truncated == 1 and cut.dropped == 0
    assert tok.eos_id not in cut.responses[1].tolist()  # a cut reply has no end
    kept = encode(examples, tok, tmp_path / "b", prompt_len=8, response_len=6, drop_long=True)
    assert len(kept) == 1 and kept.dropped == 1
    nothing = encode(examples[1:], tok, tmp_path / "c", prompt_len=8, response_len=6,
                     drop_long=True)
    assert len(nothing) == 0 and nothing.responses.shape == (0, 6)  # empty, not an error
