"""Multi-process training on CPU (gloo) equals one process with the same global batch;
gradient accumulation equals one big batch; activation checkpointing changes nothing."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlm.config import load_train_config
from dlm.training.train import Trainer, train

from .conftest import tiny_train_config

WALL_FILE = Path(os.environ.get("DLM_GLOO_WALL_FILE", "/dev/null"))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last" / "model.safetensors"))


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def assert_same_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=1e-4, msg=name)


def config_file(tmp_path: Path, pairs_tsv: Path, name: str, **overrides) -> Path:
    cfg = tiny_train_config(tmp_path / name, pairs_tsv, max_steps=4, batch_size=8,
                            tensorboard=False, **overrides)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(dataclasses.asdict(cfg)))
    return path


def torchrun(*args, procs: int = 2) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={procs}", "-m", "dlm", "train", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return time.perf_counter() - start


def resume_in_two_processes(tmp_path: Path, pairs_tsv: Path, parallel: str) -> None:
    """One process trains two of the four steps and saves; two processes finish the run
    from that checkpoint and must end where `single` (one process, four steps) did."""
    half = Trainer(load_train_config(config_file(tmp_path, pairs_tsv, "half",
                                                 parallel=parallel)))
    for _ in range(2):
        half.train_step()
    half.out_dir.mkdir(parents=True, exist_ok=True)
    half.save()
    torchrun("--resume", tmp_path / "half" / "last")
    assert_same_weights(tmp_path / "single", tmp_path / "half")


def test_gradient_accumulation_equals_one_big_batch(tmp_path, pairs_tsv):
    one = train(tiny_train_config(tmp_path / "one", pairs_tsv, max_steps=3, batch_size=8))
    two = train(tiny_train_config(tmp_path / "two", pairs_tsv, max_steps=3, batch_size=8,
                                  grad_accum=2))
    assert losses(one.out_dir) == pytest.approx(losses(two.out_dir), rel=1e-5)
    assert_same_weights(one.out_dir, two.out_dir)


def test_activation_checkpointing_changes_no_gradient(tmp_path, pairs_tsv):
    plain = Trainer(tiny_train_config(tmp_path / "a", pairs_tsv))
    ckpt = Trainer(tiny_train_config(tmp_path / "b", pairs_tsv, activation_checkpointing=True))
    assert ckpt.model.checkpointing
    for t in (plain, ckpt):
        t.train_step()
    for (name, p), q in zip(plain.model.named_parameters(), ckpt.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_a_batch_that_does_not_split_is_refused(tmp_path, pairs_tsv):
    from dlm.errors import ConfigError

    with pytest.raises(ConfigError, match="grad_accum=3"):
        Trainer(tiny_train_config(tmp_path / "x", pairs_tsv, batch_size=8, grad_accum=3))


def test_two_gloo_processes_equal_one_and_resume_across_process_counts(tmp_path, pairs_tsv):
    """2 processes x 4 rows == 1 process x 8 rows: same losses, same weights. Then a run
    saved by 1 process after 2 steps continues in 2 processes to the same end."""
    single = config_file(tmp_path, pairs_tsv, "single")
    train(load_train_config(single))
    wall = torchrun("--config", config_file(tmp_path, pairs_tsv, "double"))
    WALL_FILE.write_text(f"two gloo processes, 4 steps: {wall:.1f} s\n")
    print(f"\n2-process gloo run: {wall:.1f} s wall")
    assert losses(tmp_path / "double") == pytest.approx(losses(tmp_path / "single"),
                                                        rel=1e-4)
    assert_same_weights(tmp_path / "single", tmp_path / "double")
    # one process for two steps, saved; two processes finish the run from there
    resume_in_two_processes(tmp_path, pairs_tsv, parallel="ddp")


def test_fsdp_over_two_gloo_processes_equals_one(tmp_path, pairs_tsv):
    """Sharded parameters and optimiser state, gathered into one checkpoint."""
    train(load_train_config(config_file(tmp_path, pairs_tsv, "single")))
    torchrun("--config", config_file(tmp_path, pairs_tsv, "sharded", parallel="fsdp"))
    assert losses(tmp_path / "sharded") == pytest.approx(losses(tmp_path / "single"),
                                                         rel=1e-4)
    assert_same_weights(tmp_path / "single", tmp_path / "sharded")
    # resumed from a one-process checkpoint, the shards take their part of its full state
    resume_in_two_processes(tmp_path, pairs_tsv, parallel="fsdp")
