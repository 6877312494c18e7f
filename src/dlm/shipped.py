"""The models shipped inside the package, each with its model card (`README.md` beside
the weights: data, licences, limits), written here by `export`:

- the chat model (`models/chat-small`, `recipes/chat-small/recipe.sh`): what `dlm chat`,
  `generate` and `serve` (and the web page) use without `--ckpt`. A dual model (TiDAR:
  AR and block diffusion in one backbone) from an AR teacher, chosen by measurement
  (benchmarks/chat-budget/); it writes left to right in blocks, so it cannot fill masks
  anywhere;
- the fill model (`models/chat-tiny`, `recipes/chat-tiny/recipe.sh`): masked diffusion
  with full attention, what `dlm infill` and `edit` use without `--ckpt`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dlm.errors import CheckpointError

SHIPPED_DIR = Path(__file__).parent / "models" / "chat-small"
FILL_DIR = Path(__file__).parent / "models" / "chat-tiny"


def shipped_checkpoint(fill: bool = False) -> Path:
    """The shipped chat model's checkpoint directory, or with `fill` the shipped model that
    fills masks anywhere (an error if this install has none)."""
    where, recipe = ((FILL_DIR, "recipes/chat-tiny/recipe.sh") if fill
                     else (SHIPPED_DIR, "recipes/chat-small/recipe.sh"))
    if not (where / "config.json").is_file():
        kind = "fill" if fill else "chat"
        raise CheckpointError(f"{where}: this install has no shipped {kind} model; pass "
                              f"--ckpt RUN, or train one with {recipe}")
    return where


def export(run: str | Path, card: str | Path, out: str | Path = SHIPPED_DIR) -> Path:
    """Write a run's kept checkpoint (`best/`, else `last/`) as a shipped model: weights,
    config and tokenizer without the training state, and the model card `card`."""
    from dlm.checkpoint import resolve

    source = resolve(run, best=True)
    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy2(source / name, tmp / name)
    shutil.copy2(card, tmp / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
