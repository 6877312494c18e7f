"""The default chat model, shipped inside the package: what `dlm chat`, `generate`,
`infill`, `edit` and `serve` use without `--ckpt`, and the web page with them.

It is trained on a CPU by the committed recipe `recipes/chat-tiny/recipe.sh` (text
pretraining, then chat fine-tuning) and written here by `export`; its model card
(`README.md` beside the weights) names the data and their licences.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dlm.errors import CheckpointError

SHIPPED_DIR = Path(__file__).parent / "models" / "chat-tiny"


def shipped_checkpoint() -> Path:
    """The shipped model's checkpoint directory (an error if this install has none)."""
    if not (SHIPPED_DIR / "config.json").is_file():
        raise CheckpointError(f"{SHIPPED_DIR}: this install has no shipped chat model; pass "
                              "--ckpt RUN, or train one with recipes/chat-tiny/recipe.sh")
    return SHIPPED_DIR


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
