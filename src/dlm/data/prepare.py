"""`dlm data`: many sources in, one clean tokenized dataset out.

    read -> split -> clean -> turns -> length filter -> dedupe -> dedupe validation
    against train -> mix -> write JSONL -> tokenizer -> token shards

Every step records, per source and split, what it kept and what it dropped and
why (`StepReport`). The output directory holds `train.jsonl` and `validation.jsonl`
(one `{"messages": [...]}` or `{"text": ...}` per line), `tokenizer.json`, the
token shards under `tokens/`, and `data.json` (settings, sources, every step's
counts); `dlm train --data DIR` trains from it.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dlm.config import DataConfig
from dlm.data.clean import clean_example, letters_key
from dlm.data.example import CONTEXTS, Example, example_key, expand_turns, lowercased
from dlm.data.rows import FieldMap
from dlm.data.shard_cache import ensure_shards
from dlm.data.sources import SourceData, read_sources
from dlm.errors import DataError
from dlm.tokenizer import DLMTokenizer

PREPARED = "data.json"


@dataclass
class StepReport:
    step: str
    source: str
    split: str
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    """Why examples were dropped: reason -> count."""
    notes: dict[str, int] = field(default_factory=dict)
    """What happened to kept examples (cleaned, repeated by the mix): what -> count."""


@dataclass
class PrepareResult:
    out_dir: Path
    steps: list[StepReport]
    tokens: dict[str, int]
    """Tokens per split."""
    examples: dict[str, int]
    seconds: float
    read_problems: list[str]


def parse_mix(text: str) -> dict[str, float]:
    """`dailydialog=0.7,dolly=0.3` -> {"dailydialog": 0.7, "dolly": 0.3}."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise DataError(f"--mix: {part!r} is not NAME=WEIGHT") from None
        if mix[name.strip()] < 0:
            raise DataError(f"--mix: weight of {name!r} is negative")
    if mix and sum(mix.values()) <= 0:
        raise DataError("--mix: the weights sum to zero")
    return mix


def _resolve_mix(mix: dict[str, float], names: list[str]) -> dict[str, float]:
    """Mix keys name sources exactly or by a unique substring (`dolly` for `dolly_open_qa`)."""
    out = {}
    for key, weight in mix.items():
        found = [n for n in names if n == key] or [n for n in names if key in n]
        if len(found) != 1:
            what = "matches no source" if not found else f"matches {', '.join(found)}"
            raise DataError(f"--mix: {key!r} {what} (sources: {', '.join(names)})")
        out[found[0]] = weight
    total = sum(out.values())
    return {n: w / total for n, w in out.items()}


class Pipeline:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.steps: list[StepReport] = []

    def record(self, step: str, source: str, split: str, kept: int, dropped: Counter,
               notes: Counter | None = None) -> None:
        self.steps.append(StepReport(step, source, split, kept, dict(dropped), dict(notes or {})))

    # ---- each step maps {source: {split: examples}} to the same shape
    def split(self, data: list[SourceData]) -> dict[str, dict[str, list[Example]]]:
        out = {}
        for d in data:
            splits = dict(d.splits)
            if "validation" not in splits and self.cfg.val_fraction > 0:
                dialogues = splits.get("train", [])
                order = list(range(len(dialogues)))
                random.Random(self.cfg.seed).shuffle(order)
                n_val = max(1, round(len(order) * self.cfg.val_fraction)) if len(order) > 1 else 0
                splits["validation"] = [dialogues[i] for i in sorted(order[:n_val])]
                splits["train"] = [dialogues[i] for i in sorted(order[n_val:])]
                held = f"held out ({self.cfg.val_fraction:.0%} of dialogues)"
            else:
                held = "given by the source"
            for split, items in splits.items():
                self.steps.append(StepReport("split", d.name, split, len(items), {},
                                             {held: len(items)} if split == "validation" else {}))
            out[d.name] = splits
        return out

    def map_examples(self, name: str, data: dict, fn) -> dict:
        out: dict[str, dict[str, list[Example]]] = {}
        for source, splits in data.items():
            out[source] = {}
            for split, items in splits.items():
                dropped: Counter = Counter()
                notes: Counter = Counter()
                kept = [k for ex in items for k in fn(ex, dropped, notes)]
                out[source][split] = kept
                self.record(name, source, split, len(kept), dropped, notes)
        return out

    def clean(self, ex: Example, dropped: Counter, notes: Counter) -> list[Example]:
        cleaned = clean_example(ex)
        if self.cfg.lowercase:
            cleaned = lowercased(cleaned)
        if cleaned.messages is not None:
            empty = [m for m in cleaned.messages if not m["content"]]
            if empty:
                dropped["an empty turn"] += 1
                return []
        elif not cleaned.text:
            dropped["empty text"] += 1
            return []
        if cleaned != ex:
            notes["text changed"] += 1
        return [cleaned]

    def turns(self, ex: Example, dropped: Counter, notes: Counter) -> list[Example]:
        return list(expand_turns(ex, self.cfg.context))

    def length(self, ex: Example, dropped: Counter, notes: Counter) -> list[Example]:
        cfg = self.cfg
        if ex.messages is None:
            if len(ex.text or "") < cfg.min_chars:
                dropped[f"text under {cfg.min_chars} chars"] += 1
                return []
            return [ex]
        reply = ex.messages[-1]["content"]
        prompt = sum(len(m["content"]) for m in ex.messages[:-1])
        if len(reply) < cfg.min_chars:
            dropped[f"reply under {cfg.min_chars} chars"] += 1
        elif len(reply) > cfg.max_response_chars:
            dropped[f"reply over {cfg.max_response_chars} chars"] += 1
        elif prompt > cfg.max_prompt_chars:
            dropped[f"prompt over {cfg.max_prompt_chars} chars"] += 1
        else:
            return [ex]
        return []

    def dedupe(self, data: dict) -> dict:
        """Case- and spacing-insensitive, across sources, within each split."""
        seen: dict[str, set[str]] = {"train": set(), "validation": set()}
        out: dict[str, dict[str, list[Example]]] = {}
        for source, splits in data.items():
            out[source] = {}
            for split, items in splits.items():
                dropped: Counter = Counter()
                kept = []
                for ex in items:
                    key = example_key(ex)
                    if key in seen[split]:
                        dropped["duplicate"] += 1
                    else:
                        seen[split].add(key)
                        kept.append(ex)
                out[source][split] = kept
                self.record("dedupe", source, split, len(kept), dropped)
        return out

    def dedupe_validation(self, data: dict) -> dict:
        """Drop validation examples whose letters match a training example's: a held-out
        figure must not be measured on what was trained on."""
        train_keys = {letters_key(ex) for splits in data.values() for ex in splits.get("train", [])}
        for source, splits in data.items():
            dropped: Counter = Counter()
            kept = []
            for ex in splits.get("validation", []):
                if letters_key(ex) in train_keys:
                    dropped["also in train"] += 1
                else:
                    kept.append(ex)
            splits["validation"] = kept
            self.record("val vs train", source, "validation", len(kept), dropped)
        return data

    def apply_mix(self, data: dict) -> dict:
        """Resample each source's training examples to its share of the current total."""
        if not self.cfg.mix:
            return data
        weights = _resolve_mix(self.cfg.mix, list(data))
        total = sum(len(s.get("train", [])) for s in data.values())
        rng = random.Random(self.cfg.seed)
        for source, splits in data.items():
            items = splits.get("train", [])
            want = round(weights.get(source, 0.0) * total)
            dropped: Counter = Counter()
            notes: Counter = Counter()
            if not items or want == 0:
                dropped["not in --mix" if source not in weights else "weight 0"] += len(items)
                picked = []
            else:
                picked = items * (want // len(items)) + rng.sample(items, want % len(items))
                if want < len(items):
                    dropped["sampled out"] += len(items) - want
                elif want > len(items):
                    notes[f"extra copies (repeated {want / len(items):.2f}x)"] = want - len(items)
            rng.shuffle(picked)
            splits["train"] = picked
            self.record("mix", source, "train", len(picked), dropped, notes)
        return data


def write_jsonl(path: Path, examples: list[Example]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            row = {"messages": ex.messages} if ex.messages is not None else {"text": ex.text}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_tokenizer(location: str) -> DLMTokenizer:
    path = Path(location)
    return DLMTokenizer.load(path / "tokenizer.json" if path.is_dir() else path)


def train_tokenizer(examples: list[Example], vocab_size: int) -> DLMTokenizer:
    texts = [m["content"] for ex in examples for m in (ex.messages or [])]
    texts += [ex.text or "" for ex in examples if ex.messages is None]
    return DLMTokenizer.train(texts, vocab_size)


def shard_dir(out: Path, tok: DLMTokenizer) -> Path:
    """Token caches are keyed by tokenizer, so several can live side by side."""
    return out / "tokens" / tok.fingerprint()[:12]


def prepare(cfg: DataConfig, say=print) -> PrepareResult:
    """Run the whole pipeline; see the module docstring."""
    if not cfg.sources:
        raise DataError("no sources: pass files, folders or hub ids")
    if cfg.context not in CONTEXTS:
        raise DataError(f"unknown context {cfg.context!r}; choose one of {', '.join(CONTEXTS)}")
    start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = FieldMap(cfg.format, cfg.prompt_field, cfg.response_field, cfg.context_field)
    pipe = Pipeline(cfg)
    sources = read_sources(cfg.sources, fields, cfg.hub_split)
    problems = []
    for s in sources:
        for r in s.reports:
            pipe.steps.append(StepReport("read", s.name, Path(r.source).name, r.kept,
                                         {"bad row": r.skipped_rows} if r.skipped_rows else {}))
            problems += r.skipped[:5]
    data = pipe.split(sources)
    data = pipe.map_examples("clean", data, pipe.clean)
    data = pipe.map_examples("turns", data, pipe.turns)
    data = pipe.map_examples("length", data, pipe.length)
    data = pipe.dedupe(data)
    data = pipe.dedupe_validation(data)
    data = pipe.apply_mix(data)

    merged = {split: [ex for s in data.values() for ex in s.get(split, [])]
              for split in ("train", "validation")}
    if not merged["train"]:
        raise DataError("no training examples left after the filters (see the counts above)")
    paths = {split: out / f"{split}.jsonl" for split in merged}
    for split, examples in merged.items():
        write_jsonl(paths[split], examples)
    tok = (load_tokenizer(cfg.tokenizer) if cfg.tokenizer
           else train_tokenizer(merged["train"], cfg.vocab_size))
    tok.save(out / "tokenizer.json")
    meta = ensure_shards(paths, tok, shard_dir(out, tok), say)
    result = PrepareResult(
        out, pipe.steps,
        tokens={s: v["tokens"] for s, v in meta["splits"].items()},
        examples={s: v["examples"] for s, v in meta["splits"].items()},
        seconds=time.perf_counter() - start, read_problems=problems)
    (out / PREPARED).write_text(json.dumps({
        "config": asdict(cfg), "kind": meta["kind"], "tokens": result.tokens,
        "examples": result.examples, "seconds": round(result.seconds, 2),
        "steps": [asdict(s) for s in pipe.steps]}, indent=2))
    return result


def is_prepared(path: str | Path) -> bool:
    return (Path(path) / PREPARED).is_file()
