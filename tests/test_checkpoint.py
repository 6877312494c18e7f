import errno
import json
import os

import pytest
import torch

import dlm.checkpoint as ckpt_mod
from dlm.checkpoint import load_checkpoint, save_checkpoint
from dlm.errors import CheckpointError


def logits_of(model, tok):
    ids = torch.tensor([tok.encode("hello how are you")])
    with torch.no_grad():
        return model(ids)


def test_round_trip_gives_identical_logits(tiny_model, tok, tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model, tok, {"train": {"response_len": 16}})
    loaded = load_checkpoint(tmp_path / "ck")
    assert torch.equal(logits_of(loaded.model, tok), logits_of(tiny_model, tok))
    assert loaded.tokenizer.encode("hello") == tok.encode("hello")
    assert loaded.meta["train"] == {"response_len": 16}
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {
        "config.json", "model.safetensors", "tokenizer.json"}


def test_a_run_directory_resolves_to_its_last_checkpoint(tiny_model, tok, tmp_path):
    save_checkpoint(tmp_path / "run" / "last", tiny_model, tok)
    assert load_checkpoint(tmp_path / "run").path == tmp_path / "run" / "last"


def test_crash_mid_save_leaves_the_previous_checkpoint_intact(tiny_model, tok, tmp_path,
                                                              monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model, tok)
    before = logits_of(load_checkpoint(path).model, tok)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(1.0)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_mod, "save_file", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*is intact") as caught:
        save_checkpoint(path, tiny_model, tok)
    assert "\n" not in str(caught.value)
    assert torch.equal(logits_of(load_checkpoint(path).model, tok), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp left behind


def test_crash_between_renames_still_finds_the_old_checkpoint(tiny_model, tok, tmp_path):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model, tok)
    path.rename(tmp_path / ".ck.old-123")  # as if the process died right after this rename
    assert load_checkpoint(path).path == tmp_path / ".ck.old-123"


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint here; train one"):
        load_checkpoint(tmp_path / "nope")


def test_checkpoint_from_another_version_is_refused(tiny_model, tok, tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model, tok)
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    config["format_version"] = 99
    config["dlm_version"] = "9.9.9"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"format 99 \(written by dlm 9.9.9\)"):
        load_checkpoint(tmp_path / "ck")


def test_weights_that_do_not_match_the_config_are_refused(tiny_model, tok, tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model, tok)
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    config["model"]["d_ff"] = 96
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        load_checkpoint(tmp_path / "ck")
