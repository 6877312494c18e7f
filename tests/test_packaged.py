"""Corpora read from installed packages: chitchat-dataset's conversations as dialogues."""

import json

import pytest

from dlm.data.example import expand_turns
from dlm.data.packaged import chitchat_file, read_chitchat, speaker_turns
from dlm.data.sources import parse_source, read_source
from dlm.errors import DataError


def message(text, sender):
    return {"text": text, "timestamp": "2018-05-02T19:38:15Z", "sender": sender}


def test_a_speakers_consecutive_messages_are_one_turn_even_across_groups():
    groups = [[message("Hello", "a"), message("How are you?", "a")],
              [message("fine", "b")], [message("and you?", "b"), message(" ", "b")],
              [message("good", "a")]]
    assert speaker_turns(groups) == ["Hello How are you?", "fine and you?", "good"]


def test_conversations_of_the_installed_package_are_read_as_dialogues():
    pytest.importorskip("chitchat_dataset", reason="chitchat-dataset is not installed")
    raw = json.loads(chitchat_file().read_text(encoding="utf-8"))
    dialogues, report = read_chitchat()
    # every conversation is kept, or told as unanswered (one speaker only): none lost
    unanswered = sum(1 for c in raw.values() if len({m["sender"] for g in c["messages"]
                                                     for m in g if m["text"].strip()}) < 2)
    assert len(dialogues) + unanswered == len(raw) > 7000
    assert report.kept == len(dialogues) and report.skipped_rows == unanswered
    answered = [c for c in raw.values() if len({g[0]["sender"] for g in c["messages"]}) > 1]
    for conversation, got in zip(answered[:5], dialogues[:5], strict=True):
        said = [" ".join(m["text"].strip() for m in group) for group in conversation["messages"]]
        assert [m["content"] for m in got.messages] == said
        roles = [m["role"] for m in got.messages]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))  # speakers alternate
    # each turn after the first is a reply to the dialogue before it
    replies = list(expand_turns(dialogues[0], "history"))
    assert len(replies) == len(dialogues[0].messages) - 1


def test_chitchat_is_a_named_source_of_dlm_data():
    pytest.importorskip("chitchat_dataset", reason="chitchat-dataset is not installed")
    source = parse_source("chitchat")
    assert source.name == "chitchat"
    data = read_source(source, fields=None)
    assert list(data.splits) == ["train"] and len(data.splits["train"]) > 4000


def test_a_file_that_is_not_the_datasets_layout_is_refused_by_name(tmp_path):
    bad = tmp_path / "dataset.json"
    bad.write_text(json.dumps({str(i): {"messages": "oops"} for i in range(5)}))
    with pytest.raises(DataError, match="dataset.json: conversation 0: expected 'messages'"):
        read_chitchat(bad)
