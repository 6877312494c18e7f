"""The one-line errors for a full disk, damaged checkpoint files and token shards, and a
NaN step, as `dlm` prints them (what tests/test_faults.py asserts).

    python benchmarks/hardening/damaged.py   # writes damaged.txt beside it
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import dlm.checkpoint as ckpt_mod  # noqa: E402
from dlm.cli.app import app  # noqa: E402
from dlm.training.train import Trainer  # noqa: E402
from tests.conftest import PAIRS, tiny_train_config  # noqa: E402
from tests.test_faults import damage  # noqa: E402

runner = CliRunner()


def error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    lines = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return f"exit {result.exit_code}: " + (lines[-1] if lines else result.output[-300:])


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "pairs.tsv"
    data.write_text("\n".join(f"{p}\t{r}" for p, r in PAIRS * 4) + "\n")

    def config(out: str, **kw) -> str:
        path = tmp / f"{out}.json"
        path.write_text(json.dumps(asdict(tiny_train_config(tmp / out, data, **{
            "tensorboard": False, **kw}))))
        return str(path)

    out = []
    real = ckpt_mod.save_file
    calls = []

    def fills_up(*a, **k):
        calls.append(1)
        if len(calls) >= 3:  # the third: last/ at step 4 (after best/ at step 4)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    ckpt_mod.save_file = fills_up
    out.append(("full disk while last/ is rewritten at step 4",
                error_line(["train", "--config", config("disk", max_steps=4, save_every=2)])))
    ckpt_mod.save_file = real
    assert runner.invoke(app, ["train", "--config", config("ok", max_steps=2)]).exit_code == 0
    for name in ("model.safetensors", "tokenizer.json", "config.json", "train_state.pt"):
        for how in ("truncated", "garbage"):
            run = tmp / f"{name}-{how}"
            shutil.copytree(tmp / "ok", run)
            damage(run / "last" / name, how)
            args = (["train", "--resume", str(run)] if name == "train_state.pt" else
                    ["generate", "--ckpt", str(run / "last"), "--prompt", "hello"])
            out.append((f"{name} {how}", error_line(args)))
    real_loss = Trainer.loss

    def poisoned(self, *a, **k):
        result = real_loss(self, *a, **k)
        if self.step == 5:
            result.loss = result.loss * float("nan")
        return result

    Trainer.loss = poisoned
    out.append(("NaN loss at the sixth step", error_line(
        ["train", "--config", config("nan", max_steps=8, save_every=2)])))
    Trainer.loss = real_loss
    text = "\n".join(f"{what}:\n  {line}" for what, line in out).replace(str(tmp), "$TMP")
    Path(__file__).with_name("damaged.txt").write_text(text + "\n")
    print(text)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
