"""Checkpoints: a directory with config.json, model.safetensors, tokenizer.json, train_state.pt.

Saving writes a new directory beside the old one and swaps them by rename, so a
crash mid-save leaves the previous checkpoint whole. Loading never unpickles
arbitrary objects: weights come from safetensors, the training state through
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dlm.config import ModelConfig, from_dict
from dlm.errors import CheckpointError, first_line
from dlm.layouts.load import import_folder, is_imported
from dlm.layouts.tokenizer import HFTokenizer
from dlm.lora import add_lora, check_base, trained_state
from dlm.model import Transformer
from dlm.tokenizer import DLMTokenizer
from dlm.util.failpoints import passage

FORMAT_VERSION = 1
__version__ = version("dlm")  # the dlm that writes a checkpoint, recorded in it
CONFIG, WEIGHTS, TOKENIZER, TRAIN_STATE = (
    "config.json", "model.safetensors", "tokenizer.json", "train_state.pt",
)


@dataclass
class Checkpoint:
    path: Path
    model: Transformer
    tokenizer: DLMTokenizer
    meta: dict[str, Any]
    """The whole config.json: model, objective, training config, sampling defaults."""

    def train_state(self) -> dict[str, Any] | None:
        file = self.path / TRAIN_STATE
        if not file.is_file():
            return None
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or not a torch file: pickle, zip, EOF errors
            # torch's own messages here are long and about pickling, not about the file
            raise CheckpointError(f"{file}: cannot read the training state (truncated, or "
                                  f"not a torch file: {type(exc).__name__}); the file is "
                                  "damaged — resume from another checkpoint or start the run "
                                  "again") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path, model: Transformer, tokenizer: DLMTokenizer,
    meta: dict[str, Any] | None = None, train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: temp directory, fsync, then rename over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    passage("checkpoint.started")
    try:
        config = {
            "format_version": FORMAT_VERSION,
            "dlm_version": __version__,
            "objective": "diffusion",
            **(meta or {}),
            "model": {**vars(model.config)},
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        # The output head is tied to the embedding, so every tensor is stored once; a LoRA
        # run stores what trains (its adapters), its base being named in the config.
        state = (trained_state(model) if (meta or {}).get("lora") else
                 {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        passage("checkpoint.weights")
        tokenizer.save(tmp / TOKENIZER)
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
    except OSError as exc:  # a full disk, a quota, a read-only folder
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"; the previous checkpoint in {path} is intact" if path.exists() else ""
        raise CheckpointError(f"{path}: cannot write the checkpoint "
                              f"({exc.strerror or first_line(exc)}){kept}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    passage("checkpoint.written")
    # Swap: the old checkpoint stays complete (as `old`) until the new one is in place.
    if path.exists():
        os.rename(path, old)
    passage("checkpoint.renamed")
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    passage("checkpoint.in_place")
    # The new checkpoint is in place: what an earlier, killed save left beside it (its
    # half-written temp, or the old copy it had moved aside) is no longer needed.
    for stale in (old, *path.parent.glob(f".{path.name}.tmp-*"),
                  *path.parent.glob(f".{path.name}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)
    passage("checkpoint.saved")
    return path


def _step_of(folder: Path) -> int:
    try:
        return int(json.loads((folder / CONFIG).read_text(encoding="utf-8")).get("step", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


def _newest(folders: list[Path]) -> Path:
    """The copy of the highest step (ties: the latest written)."""
    return max(folders, key=lambda p: (_step_of(p), (p / CONFIG).stat().st_mtime))


def finish_interrupted_save(path: str | Path) -> str | None:
    """Complete or undo what a killed `save_checkpoint(path)` left beside `path`, so no
    copy is left behind whichever moment the kill came (run by the one process that
    writes the run, before it reads or saves). Returns what was done, or None.

    - `path` whole: every `.NAME.tmp-*` and `.NAME.old-*` beside it is stale: removed.
    - `path` missing (killed between the two renames): the interrupted save's new copy
      (`.NAME.tmp-PID`) is whole, since the old one (`.NAME.old-PID`) is only moved aside
      once the new one is written and synced: it is moved into place; without it, the
      whole old copy of the highest step is put back. Then the rest is removed.

    A `path` that exists without config.json (damaged by hand) is left alone, and so is
    everything beside it: cleanup never deletes the only whole copy.
    """
    path = Path(path)
    parent, name = path.parent, path.name
    done = None
    if not path.exists():
        olds = [p for p in parent.glob(f".{name}.old-*") if (p / CONFIG).is_file()]
        finished = [new for old in olds
                    if ((new := parent / f".{name}.tmp-{old.name.rsplit('-', 1)[1]}")
                        / CONFIG).is_file()]
        candidates = finished or olds
        if candidates:
            source = _newest(candidates)
            os.rename(source, path)
            _fsync_dir(parent)
            done = (f"{path}: a save was interrupted between its renames; "
                    f"{'finished it' if finished else 'put the previous copy back'} "
                    f"(step {_step_of(path)})")
    if not (path / CONFIG).is_file():
        return done
    stale = [*parent.glob(f".{name}.tmp-*"), *parent.glob(f".{name}.old-*")]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale and done is None:
        done = f"{path}: removed {len(stale)} copies an interrupted save left beside it"
    return done


def finish_interrupted_saves(run: str | Path) -> list[str]:
    """`finish_interrupted_save` for a run directory's `last/` and `best/`, or for `run`
    itself when it is a checkpoint directory."""
    run = Path(run)
    said = [finish_interrupted_save(p) for p in (run, run / "last", run / "best")]
    return [s for s in said if s]


def resolve(path: str | Path, best: bool = False) -> Path:
    """The checkpoint directory for `path`: itself, or a run directory's `last/` (with
    `best`: its `best/`, the lowest validation NELBO, when there is one).

    If a crash hit between the two renames of a save, the previous checkpoint
    is found under its `.old` name.
    """
    path = Path(path)
    inside = ["best", "last"] if best else ["last"]
    for candidate in (path, *(path / name for name in inside)):
        if (candidate / CONFIG).is_file():
            return candidate
        olds = [p for p in candidate.parent.glob(f".{candidate.name}.old-*")
                if (p / CONFIG).is_file()]
        if olds:
            return _newest(olds)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint here; train one with `dlm train "
                              f"--out-dir {path}` or pass the directory that holds config.json")
    raise CheckpointError(f"{path}: not a dlm checkpoint (no {CONFIG}); pass a directory "
                          "written by `dlm train`")


def lora_model(path: Path, meta: dict[str, Any], config: ModelConfig,
               device: str | torch.device, dtype: torch.dtype) -> Transformer:
    """A LoRA checkpoint's model: its base's weights (checked against the recorded hash),
    the run's shape, the adapters and the layers the run added put back."""
    lora = meta["lora"]
    check_base(lora["base"], lora["base_sha256"], path)
    base = load_checkpoint(lora["base"], device, dtype=dtype).model
    model = Transformer(config)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if set(missing) - set(lora["new_weights"]) or unexpected:
        raise CheckpointError(f"{path}: its base {lora['base']} does not match the run's "
                              f"model (missing {missing[:2]}, unexpected {unexpected[:2]})")
    model = add_lora(model, lora, tuple(lora["new_weights"]))
    try:
        trained = load_file(str(path / WEIGHTS))
    except Exception as exc:
        raise CheckpointError(f"{path / WEIGHTS}: cannot read the adapters "
                              f"({first_line(exc)})") from None
    missing, unexpected = model.load_state_dict(trained, strict=False)
    lost = [k for k in missing if "lora_" in k or k in lora["new_weights"]]
    if lost or unexpected:
        raise CheckpointError(f"{path / WEIGHTS}: adapters do not match config.json "
                              f"(missing {lost[:2]}, unexpected {unexpected[:2]})")
    return model


def _config_json(path: Path) -> Any:
    try:
        return json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / CONFIG}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path / CONFIG}: not UTF-8 text; the file is damaged") from None


def read_meta(path: Path) -> dict[str, Any]:
    meta = _config_json(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / CONFIG}: not a dlm checkpoint config (not a JSON "
                              "object); the file is damaged")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} (written by dlm "
            f"{meta.get('dlm_version', '?')}) is not format {FORMAT_VERSION} of dlm "
            f"{__version__}; retrain it with this version or install the dlm that wrote it"
        )
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path / CONFIG}: not a dlm checkpoint config (no `model` "
                              "object); the file is damaged")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    best: bool = False, dtype: torch.dtype = torch.float32) -> Checkpoint:
    """Load model, tokenizer and metadata; checks the format version and the vocabulary.
    `best`: a run directory gives its `best/` when it has one (else `last/`). A folder of
    the field's (LLaDA, Dream, Llama, Qwen2/3: a `config.json` with a `model_type`) is
    imported by `dlm.layouts.load`, straight into `dtype`."""
    path = resolve(path, best)
    raw = _config_json(path)
    if is_imported(raw):
        model, tokenizer, meta = import_folder(path, torch.device(device), dtype)
        return Checkpoint(path, model, tokenizer, meta)
    meta = read_meta(path)
    config = from_dict(ModelConfig, meta["model"], f"{path / CONFIG} model")
    tokenizer = (HFTokenizer.load_folder(path) if (path / "tokenizer_config.json").is_file()
                 else DLMTokenizer.load(path / TOKENIZER))
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model "
                              f"only {config.vocab_size}; the files come from different runs")
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path}: {WEIGHTS} is missing; the checkpoint is incomplete")
    if meta.get("lora"):
        model = lora_model(path, meta, config, device, dtype)
        return Checkpoint(path, model.to(device).eval(), tokenizer, meta)
    model = Transformer(config)
    try:
        weights = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors' own error: truncated header, bad offsets
        raise CheckpointError(f"{path / WEIGHTS}: cannot read the weights ({first_line(exc)}); "
                              "the file is damaged or incomplete") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path / WEIGHTS}: weights do not match config.json "
                              f"({first_line(exc)})") from None
    return Checkpoint(path, model.to(device).eval(), tokenizer, meta)
