"""A distilled directory with a share of human replies, made from one already distilled
with every reply the teacher's, without asking the teacher again.

    python benchmarks/chat-budget/human_share.py runs/c3/chat runs/c3/chat-kd \
        --share 0.5 --out runs/c3/chat-kd50

`runs/c3/chat-kd` was written by `dlm distill runs/c3/chat --max-examples N
--max-validation M --seed K` (its data.json says so); the result holds the same rows as
`dlm distill ... --human-share 0.5` with those settings: the same distilled rows, with
the same human rows drawn beside them; the teacher's replies are taken from the first
directory (the teacher with the same seed, batches and inputs writes the same ones).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from dlm.data.jsonl_examples import read_jsonl_examples
from dlm.data.prepare import PREPARED, shard_dir, write_jsonl
from dlm.data.shard_cache import ensure_shards
from dlm.tokenizer import DLMTokenizer
from dlm.training.distill import SPLITS, split_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="the `dlm data` directory that was distilled")
    ap.add_argument("distilled", help="its distilled directory (human share 0)")
    ap.add_argument("--share", type=float, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    source, distilled, out = Path(args.source), Path(args.distilled), Path(args.out)
    meta = json.loads((distilled / PREPARED).read_text())
    info = meta["distilled"]
    if info.get("human_share", 0.0) != 0.0:
        raise SystemExit(f"{distilled}: already holds human replies")
    seed = info["decoding"]["seed"] or 0
    out.mkdir(parents=True, exist_ok=True)
    human, examples = {}, {}
    for split in SPLITS:
        cap = info["max_examples"] if split == "train" else info["max_validation"]
        taught_rows, human_rows = split_rows(source / f"{split}.jsonl", cap, args.share, seed)
        taught = iter(read_jsonl_examples(distilled / f"{split}.jsonl"))
        rows = []
        for row, ex in enumerate(read_jsonl_examples(source / f"{split}.jsonl")):
            if row in human_rows:
                rows.append(ex)
            elif taught_rows is None or row in taught_rows:
                made = next(taught)
                assert made.messages[:-1] == ex.messages[:-1], "not the same draw of prompts"
                rows.append(made)
        assert next(taught, None) is None, "not the same draw of prompts"
        write_jsonl(out / f"{split}.jsonl", rows)
        human[split], examples[split] = len(human_rows), len(rows)
    shutil.copy2(distilled / "tokenizer.json", out / "tokenizer.json")
    tokenizer = DLMTokenizer.load(out / "tokenizer.json")
    shards = ensure_shards({s: out / f"{s}.jsonl" for s in SPLITS}, tokenizer,
                           shard_dir(out, tokenizer), print)
    meta["config"]["out_dir"] = str(out)
    meta["distilled"] = {**info, "human_share": args.share, "human": human,
                         "teacher_replies_from": str(distilled)}
    meta["tokens"] = {s: v["tokens"] for s, v in shards["splits"].items()}
    meta["examples"] = examples
    (out / PREPARED).write_text(json.dumps(meta, indent=2))
    print(f"{out}: {human} human replies")


if __name__ == "__main__":
    main()
