"""Faults injected into training and data: kill -9 at random moments and at each
failpoint (mid-step, mid-checkpoint-write, between the renames), a full disk, damaged
files, NaN. Each time: nothing lost, the last checkpoint loads, a resumed run reaches
the same weights bit for bit, and the user reads one line that names the file."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import dlm.checkpoint as ckpt_mod
from dlm.checkpoint import load_checkpoint
from dlm.cli.app import app
from dlm.errors import CheckpointError
from dlm.pipeline import DiffusionLM
from dlm.util.failpoints import POINTS
from tests.conftest import tiny_train_config

STEPS = 10
runner = CliRunner()


def config_file(tmp_path: Path, data: Path, out: Path, **overrides) -> Path:
    cfg = tiny_train_config(out, data, **{"max_steps": STEPS, "save_every": 1,
                                          "tensorboard": False, **overrides})
    path = tmp_path / f"{out.name}.json"
    path.write_text(json.dumps(asdict(cfg)))
    return path


def dlm(*args, failpoint: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DLM_FAILPOINT"}
    if failpoint:
        env["DLM_FAILPOINT"] = failpoint
    return subprocess.Popen([sys.executable, "-m", "dlm", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout: float = 180) -> int:
    proc.wait(timeout=timeout)
    return proc.returncode


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last" / "model.safetensors"))


def steps_logged(run: Path) -> int:
    try:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    except (OSError, json.JSONDecodeError):
        return 0
    return max((r["step"] for r in rows if "loss" in r), default=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, request):
    """One uninterrupted run, in its own process like the killed ones."""
    tmp = tmp_path_factory.mktemp("reference")
    from tests.conftest import PAIRS

    data = tmp / "pairs.tsv"
    data.write_text("\n".join(f"{p}\t{r}" for p, r in PAIRS * 4) + "\n")
    run = tmp / "run"
    proc = dlm("train", "--config", config_file(tmp, data, run))
    assert finished(proc) == 0, proc.stderr.read()
    return data, weights(run)


def kill_moments() -> list[tuple[str, int]]:
    """Every distinct failpoint passage of the reference run, in the order it passes them:
    each step passes `train.step`, then each save its checkpoint points (`last/` every
    step; `best/` too at the last step, where the final evaluation is the best)."""
    saves = [*range(1, STEPS), STEPS, STEPS + 1]  # the last step saves best/, then last/
    save_points = [p for p in POINTS if p.startswith("checkpoint.")]
    moments = []
    for step in range(1, STEPS + 1):
        moments.append(("train.step", step))
        for n in saves[step - 1: step + (step == STEPS)]:
            moments += [(p, n) for p in save_points]
    return moments


def spread(moments: list, count: int) -> list:
    """`count` of `moments` spread evenly from the first to the last (all of them when
    `count` reaches their number)."""
    if count >= len(moments):
        return moments
    if count <= 1:
        return moments[-1:][:count]
    return [moments[round(i * (len(moments) - 1) / (count - 1))] for i in range(count)]


# Always tried: the moments of the final saves, where a resume finds the run at max_steps
# and saves nothing more (an old copy left there once stayed for good), and between the
# renames of best/ and of last/.
SHARP = [("checkpoint.renamed", STEPS), ("checkpoint.renamed", STEPS + 1),
         ("checkpoint.in_place", STEPS + 1)]


def pytest_generate_tests_for_moments(metafunc) -> None:
    """`--fault-moments N`: the failpoint passages the kill test is run at (conftest)."""
    moments = kill_moments()
    count = metafunc.config.getoption("--fault-moments")
    chosen = set(spread(moments, count)) | set(SHARP)
    chosen = [m for m in moments if m in chosen]
    metafunc.parametrize("moment", chosen, ids=[f"{p}:{n}" for p, n in chosen])


def left_behind(run: Path) -> list[str]:
    """What a save left beside the run's checkpoints: temp folders and old copies."""
    return sorted(p.name for p in run.iterdir() if p.name.startswith((".last.", ".best.")))


def recovers(run: Path, expected: dict[str, torch.Tensor], label: str) -> None:
    """The killed run's checkpoint loads and generates; a resume reaches the reference's
    weights bit for bit and leaves no temp folder or old copy behind."""
    lm = DiffusionLM.load(run, "cpu")  # the last checkpoint is whole
    assert isinstance(lm.generate("hello")[0], str)
    step = lm.meta["step"]
    assert 0 < step <= STEPS
    resumed = dlm("train", "--resume", run)
    assert finished(resumed) == 0, resumed.stderr.read()
    got = weights(run)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got), label
    assert not left_behind(run), (label, left_behind(run))


def test_a_kill_at_any_moment_of_the_save_path_recovers(tmp_path, reference, moment):
    """SIGKILL at one failpoint passage (`--fault-moments N` spreads N of them over every
    step and every moment of every save, `best/` included)."""
    data, expected = reference
    point, n = moment
    run = tmp_path / "run"
    proc = dlm("train", "--config", config_file(tmp_path, data, run), failpoint=f"{point}:{n}")
    assert finished(proc) == -signal.SIGKILL, proc.stderr.read()
    if not (run / "last").is_dir() and not list(run.glob(".last.old-*")):
        # killed before its first checkpoint was in place: nothing to resume, say so; the
        # same run started again gets the same weights and clears the half-made save
        with pytest.raises(CheckpointError, match="no checkpoint|no config.json"):
            load_checkpoint(run)
        again = dlm("train", "--config", config_file(tmp_path, data, run))
        assert finished(again) == 0, again.stderr.read()
        got = weights(run)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        assert not left_behind(run), left_behind(run)
        return
    recovers(run, expected, f"{point}:{n}")


def random_kill(tmp_path: Path, data: Path, expected, after: int, label: str) -> None:
    """SIGKILL at a random instant after step `after` (timing, not a chosen moment)."""
    run = tmp_path / "run"
    proc = dlm("train", "--config", config_file(tmp_path, data, run))
    deadline = time.monotonic() + 120
    # a kill before the first checkpoint has nothing to recover: wait for one
    while ((steps_logged(run) < after or not (run / "last").is_dir())
           and proc.poll() is None and time.monotonic() < deadline):
        time.sleep(0.01)
    time.sleep(random.Random(after).uniform(0, 0.3))  # anywhere in the next steps
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    recovers(run, expected, label)


@pytest.mark.parametrize("seed", range(8))
def test_a_kill_at_a_random_instant_recovers(tmp_path, reference, seed, request):
    if seed >= request.config.getoption("--fault-trials"):
        pytest.skip("over the --fault-trials budget (raise it for a longer run)")
    after = random.Random(100 + seed).randint(1, STEPS - 2)
    random_kill(tmp_path, reference[0], reference[1], after, f"seed {seed}")


def one_line_error(result) -> str:
    """The command failed with exit code 2 and one `error:` line, its last, no traceback
    (the lines before it are the run's own progress)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    return errors[0]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(
        tmp_path, pairs_tsv, monkeypatch):
    real, calls = ckpt_mod.save_file, []

    def fills_up(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 3:  # the disk fills during the third save
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt_mod, "save_file", fills_up)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(config_file(
        tmp_path, pairs_tsv, run, save_every=2))])
    text = one_line_error(result)
    assert "No space left on device" in text and "intact" in text and str(run) in text
    assert load_checkpoint(run).meta["step"] == 4  # the second save's, whole
    assert not list(run.glob(".last.*"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(len(data))))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from tests.conftest import PAIRS

    tmp = tmp_path_factory.mktemp("small")
    data = tmp / "pairs.tsv"
    data.write_text("\n".join(f"{p}\t{r}" for p, r in PAIRS * 4) + "\n")
    result = runner.invoke(app, ["train", "--config", str(config_file(
        tmp, data, tmp / "run", max_steps=2, save_every=0))])
    assert result.exit_code == 0, result.output
    return tmp / "run"


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json",
                                  "train_state.pt"])
def test_a_damaged_checkpoint_file_is_one_line_naming_it(small_run, tmp_path, name, how):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    damage(run / "last" / name, how)
    if name == "train_state.pt":
        result = runner.invoke(app, ["train", "--resume", str(run)])
    else:
        result = runner.invoke(app, ["generate", "--ckpt", str(run / "last"), "--prompt",
                                     "hello"])
    assert name in one_line_error(result)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", ["train.bin", "train.idx.npy", "meta.json"])
def test_damaged_token_shards_are_rebuilt_or_refused_in_one_line(tmp_path, pairs_tsv, name,
                                                                  how):
    """The shards are a cache of the prepared JSONL: `dlm train` finds the damage, says
    so and rebuilds them; reading them directly is a one-line error naming the file."""
    from dlm.data.shards import ShardSet
    from dlm.errors import DataError

    data = tmp_path / "data"
    result = runner.invoke(app, ["data", str(pairs_tsv), "--out", str(data),
                                 "--vocab-size", "300"])
    assert result.exit_code == 0, result.output
    shard = next(data.rglob(name))
    damage(shard, how)
    with pytest.raises(DataError, match=name) as caught:
        ShardSet.open(shard.parent)
    assert "\n" not in str(caught.value)
    from dlm.data.shard_cache import ensure_shards
    from dlm.tokenizer import DLMTokenizer

    said: list[str] = []  # what training does before it reads the shards
    ensure_shards({split: data / f"{split}.jsonl" for split in ("train", "validation")},
                  DLMTokenizer.load(data / "tokenizer.json"), shard.parent, said.append)
    assert said and ("damaged" in said[0] or "no token cache" in said[0]), said
    ShardSet.open(shard.parent)  # whole again


def test_nan_in_the_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path, pairs_tsv, monkeypatch):
    from dlm.training.train import Trainer

    real = Trainer.loss

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if self.step == 5:  # the sixth step
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Trainer, "loss", poisoned)
    run = tmp_path / "run"
    text = one_line_error(runner.invoke(app, ["train", "--config", str(config_file(
        tmp_path, pairs_tsv, run, save_every=2))]))
    assert text.startswith("error: step 6:") and "nan" in text and "step 4" in text
    kept = load_checkpoint(run)
    assert kept.meta["step"] == 4
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())
