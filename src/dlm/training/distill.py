"""Sequence-level distillation: a teacher's own replies as another model's training data.

A speculative drafter is only as fast as the share of its drafts the verifier keeps, and
greedy verification keeps a draft only when it is the verifier's argmax. A drafter trained
on the corpus learns what people wrote; one trained on what the verifier writes learns
the verifier (sequence-level knowledge distillation, Kim & Rush 2016; for drafters,
DistillSpec, Zhou et al. 2024). `distill` keeps every prompt of a `dlm data` directory
and replaces each reply by the teacher's reply under the decoding it will verify with,
so the result trains with `dlm train --data OUT` like any prepared directory.

    from dlm import DiffusionLM, distill
    teacher = DiffusionLM.load("runs/ar")
    distill(teacher, "runs/chatmix", "runs/chatmix-ar", teacher.decoding(length=128))

    from dlm.config import DistillConfig                  # `dlm distill`, the same
    run_distill(DistillConfig("runs/chatmix", "runs/ar", "runs/chatmix-ar", length=128))
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dlm.config import DistillConfig, SampleConfig
from dlm.data.example import Example
from dlm.data.jsonl_examples import read_jsonl_examples
from dlm.data.prepare import PREPARED, is_prepared, shard_dir, write_jsonl
from dlm.data.shard_cache import ensure_shards
from dlm.errors import DataError

SPLITS = ("train", "validation")


@dataclass
class DistillResult:
    out_dir: Path
    examples: dict[str, int]
    empty: dict[str, int]
    """Replies in which the teacher wrote eos first (kept: the student learns that too)."""
    seconds: float


def teacher_replies(teacher, histories: Sequence[list[dict[str, str]]], config: SampleConfig,
                    batch_size: int) -> list[str]:
    """The teacher's reply to each history, in batches of similar prompt length (less
    padding), returned in the given order."""
    order = sorted(range(len(histories)),
                   key=lambda i: sum(len(m["content"]) for m in histories[i]))
    replies: list[str] = [""] * len(histories)
    for lo in range(0, len(order), batch_size):
        picked = order[lo : lo + batch_size]
        ids = teacher.reply_ids([histories[i] for i in picked], config)
        for i, row in zip(picked, ids, strict=True):
            replies[i] = teacher.decode_reply(row.tolist(), config)
    return replies


def split_rows(path: Path, cap: int | None, human_share: float, seed: int,
               ) -> tuple[set[int] | None, set[int]]:
    """(rows the teacher replies to: `chosen_rows`; other rows, drawn with `seed`, that
    keep their human reply and make `human_share` of what is written)."""
    total = count_rows(path)
    taught = chosen_rows(path, cap, seed, total)
    if not human_share:
        return taught, set()
    rest = sorted(set(range(total)) - (taught if taught is not None else set(range(total))))
    n_taught = total if taught is None else len(taught)
    want = round(human_share / (1 - human_share) * n_taught)
    if want > len(rest):
        raise DataError(f"{path}: human_share {human_share} needs {want:,} human replies "
                        f"beside the {n_taught:,} distilled, and {len(rest):,} rows are "
                        "left; distill fewer (--max-examples, --max-validation)")
    return taught, set(random.Random(seed + 1).sample(rest, want))


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def chosen_rows(path: Path, cap: int | None, seed: int,
                total: int | None = None) -> set[int] | None:
    """`cap` rows of a JSONL file drawn with `seed` (None: every row; `total`: its row
    count, when known). A `dlm data` file lists its sources one after another, so a
    prefix would hold one source only."""
    if cap is None:
        return None
    total = count_rows(path) if total is None else total
    if cap >= total:
        return None
    return set(random.Random(seed).sample(range(total), cap))


def distill(teacher, data: str | Path, out_dir: str | Path, config: SampleConfig | None = None,
            batch_size: int = 64, max_examples: int | None = None,
            max_validation: int | None = None, say=print, seed: int = 0,
            human_share: float = 0.0) -> DistillResult:
    """Write `out_dir`: the chat examples of the `dlm data` directory `data` (`max_examples`
    of train and `max_validation` of validation drawn with `seed`, in file order; all by
    default) with
    every reply replaced by `teacher`'s (a DiffusionLM, usually the AR verifier) under
    `config` (default: the teacher's default decoding, `teacher.decoding()`: greedy,
    replies up to its canvas), and its tokenizer. With `human_share`, other examples of
    each split (drawn with `seed`) are written beside them with their human reply, that
    share of the whole: knowledge distillation beside the corpus rather than instead of
    it."""
    start = time.perf_counter()
    data, out = Path(data), Path(out_dir)
    if not is_prepared(data):
        raise DataError(f"{data}: not a `dlm data` directory (no {PREPARED}); run `dlm data` "
                        "first")
    config = config or teacher.decoding()
    if config.length == "auto":
        raise DataError("distill needs a fixed reply length (the longest reply the teacher "
                        "may write), not auto")
    if not 0.0 <= human_share < 1.0:
        raise DataError(f"human_share: {human_share} is not in [0, 1) (the share of the "
                        "written examples that keep their human reply)")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    empty: dict[str, int] = {}
    human: dict[str, int] = {}
    for split in SPLITS:
        path = data / f"{split}.jsonl"
        if not path.is_file():
            continue
        cap = max_examples if split == "train" else max_validation
        taught_rows, human_rows = split_rows(path, cap, human_share, seed)
        examples, is_human = [], []
        for row, ex in enumerate(read_jsonl_examples(path)):
            if row in human_rows:
                examples.append(ex)
                is_human.append(True)
                continue
            if taught_rows is not None and row not in taught_rows:
                continue
            if ex.messages is None:
                raise DataError(f"{path}: plain text; distillation needs chat examples "
                                "(a prompt to reply to)")
            examples.append(ex)
            is_human.append(False)
        taught = [i for i, kept in enumerate(is_human) if not kept]
        replies = dict(zip(taught, teacher_replies(
            teacher, [examples[i].messages[:-1] for i in taught], config, batch_size),
            strict=True))
        write_jsonl(out / f"{split}.jsonl", [
            ex if i not in replies else
            Example(messages=[*ex.messages[:-1], {"role": "assistant", "content": replies[i]}])
            for i, ex in enumerate(examples)])
        counts[split], human[split] = len(examples), len(human_rows)
        empty[split] = sum(not r for r in replies.values())
        say(f"{split}: {len(taught):,} replies by the teacher ({empty[split]:,} empty), "
            f"{len(human_rows):,} human")
    if "train" not in counts:
        raise DataError(f"{data}: no train.jsonl to distill")
    teacher.tokenizer.save(out / "tokenizer.json")
    meta = ensure_shards({s: out / f"{s}.jsonl" for s in counts}, teacher.tokenizer,
                         shard_dir(out, teacher.tokenizer), say)
    source = json.loads((data / PREPARED).read_text())
    seconds = time.perf_counter() - start
    (out / PREPARED).write_text(json.dumps({
        "config": {**source.get("config", {}), "out_dir": str(out)},
        "distilled": {"from": str(data), "teacher": str(teacher.source),
                      "decoding": asdict(config), "max_examples": max_examples,
                      "max_validation": max_validation, "empty": empty,
                      "human_share": human_share, "human": human},
        "kind": "chat",
        "tokens": {s: v["tokens"] for s, v in meta["splits"].items()},
        "examples": counts, "seconds": round(seconds, 2)}, indent=2))
    return DistillResult(out, counts, empty, seconds)


def run_distill(config: DistillConfig, device: str = "auto", say=print) -> DistillResult:
    """`dlm distill`: load `config.teacher` and distill `config.data` into
    `config.out_dir` with the teacher's default decoding, the fields `config` sets over it."""
    from dlm.pipeline import DiffusionLM

    teacher = DiffusionLM.load(config.teacher, device, dtype=config.dtype)
    decoding = teacher.decoding(length=config.length, temperature=config.temperature,
                                repetition_penalty=config.repetition_penalty,
                                seed=config.seed)
    return distill(teacher, config.data, config.out_dir, decoding, config.batch_size,
                   config.max_examples, config.max_validation, say, config.seed,
                   config.human_share)
