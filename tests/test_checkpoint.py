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


def step_of(path) -> int:
    return json.loads((path / "config.json").read_text())["step"]


def leftovers(run) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith("."))


@pytest.fixture
def saved(tiny_model, tok, tmp_path):
    """A run folder with `last/` at step 3, and whole copies at steps 2 and 4 to place
    beside it as a killed save would leave them."""
    run = tmp_path / "run"
    for step in (2, 3, 4):
        save_checkpoint(run / f"step{step}", tiny_model, tok, {"step": step})
    (run / "step3").rename(run / "last")
    return run


def test_whole_last_and_stale_copies_beside_it_are_removed(saved):
    from dlm.checkpoint import finish_interrupted_saves

    (saved / "step2").rename(saved / ".last.old-7067")  # killed after the new one moved in
    (saved / "step4").rename(saved / ".last.tmp-99")  # killed while writing
    said = finish_interrupted_saves(saved)
    assert leftovers(saved) == [] and step_of(saved / "last") == 3
    assert said and "removed 2" in said[0]


def test_a_save_killed_between_its_renames_is_finished(saved):
    """The old copy moved aside proves the new one (same pid) was written whole."""
    from dlm.checkpoint import finish_interrupted_save

    (saved / "last").rename(saved / ".last.old-5")
    (saved / "step4").rename(saved / ".last.tmp-5")
    (saved / "step2").rename(saved / ".last.tmp-6")  # another save's half-made folder
    said = finish_interrupted_save(saved / "last")
    assert step_of(saved / "last") == 4 and leftovers(saved) == []
    assert "finished it" in said


def test_without_the_new_copy_the_old_one_is_put_back(saved):
    from dlm.checkpoint import finish_interrupted_save

    (saved / "last").rename(saved / ".last.old-5")
    (saved / "step2").rename(saved / ".last.old-1234")  # an older leftover, lower step
    said = finish_interrupted_save(saved / "last")
    assert step_of(saved / "last") == 3 and leftovers(saved) == []
    assert "put the previous copy back" in said


def test_cleanup_never_deletes_the_only_whole_copy(saved):
    """No whole checkpoint in place (damaged by hand, or only a temp folder that may be
    half-written): nothing beside it is touched, and loading still finds the old copy."""
    from dlm.checkpoint import finish_interrupted_save, resolve

    (saved / "last" / "config.json").unlink()  # damaged in place
    (saved / "step2").rename(saved / ".last.old-8")
    assert finish_interrupted_save(saved / "last") is None
    assert ".last.old-8" in leftovers(saved)
    (saved / "last").rename(saved / "damaged")
    (saved / "step4").rename(saved / ".last.tmp-9")  # no old copy of pid 9: not proven whole
    assert resolve(saved) == saved / ".last.old-8"  # readers fall back to the old copy
    finish_interrupted_save(saved / "last")
    assert step_of(saved / "last") == 2 and leftovers(saved) == []


def test_resolve_picks_the_old_copy_of_the_highest_step(saved):
    from dlm.checkpoint import resolve

    (saved / "last").rename(saved / ".last.old-10")  # step 3; pid 10 sorts before 9
    (saved / "step2").rename(saved / ".last.old-9")
    assert step_of(resolve(saved)) == 3
