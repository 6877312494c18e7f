"""The tables of benchmarks/harness/README.md from what `run.sh` wrote.

    python benchmarks/harness/summarize.py > benchmarks/harness/tables.md
"""

from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).parent
FIT = "fit (the model was trained on this corpus)"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def harness_rows(name: str) -> list[str]:
    data = load(HERE / name / "harness.json")
    d = data["dlm"]
    kind = f"{d['estimator']}, {d['draws']} draws" if d["draws"] > 1 else d["estimator"]
    results = dict(data["results"])
    again = HERE / f"{name}-generate" / "harness.json"
    if again.is_file():  # the generation task run again, replies capped at the model's canvas
        results.update(load(again)["results"])
    rows = []
    for task, metrics in sorted(results.items()):
        for key, value in metrics.items():
            if "," not in key or "stderr" in key or key.startswith("alias"):
                continue
            metric = key.split(",")[0]
            se = metrics.get(f"{metric}_stderr,none")
            se_text = f" ± {se:.4f}" if isinstance(se, float) and math.isfinite(se) else ""
            rows.append(f"| {name} | {task} | {metric} | {value:.4f}{se_text} | {kind} | "
                        f"{d['wall_s']} s | {FIT} |")
    return rows


def zero_shot_rows(name: str) -> list[str]:
    data = load(HERE / name / "zero-shot.json")
    rows = []
    for r in data["rows"]:
        kind = "exact" if r["kind"] == "exact" else f"bound, K = {r['draws']}"
        rows.append(f"| {name} | {r['corpus']} | {r['documents']} | {r['tokens']:,} | "
                    f"{r['nats_per_token']:.4f} ± {r['stderr']:.4f} | "
                    f"{math.exp(min(r['nats_per_token'], 50)):.1f} | {r['bits_per_byte']:.4f} "
                    f"| {kind} | {'yes' if r['in_training_data'] else 'no'} |")
    return rows


def draws_rows() -> list[str]:
    rows = []
    for k in (1, 8, 32, 128):
        data = load(HERE / f"draws-{k}" / "harness.json")
        m = data["results"]["dlm_dailydialog_next"]
        d = data["dlm"]
        rows.append(f"| {k} | {d['mean_stderr']:.3f} | {m['acc,none']:.4f} ± "
                    f"{m['acc_stderr,none']:.4f} | {m['acc_norm,none']:.4f} | {d['wall_s']} s |")
    return rows


def main() -> None:
    out = ["## Through lm-eval, on the local tasks", "",
           "| model | task | metric | value | estimator | run's wall time | note |",
           "|---|---|---|---|---|---|---|"]
    for name in ("shipped", "ar-twin"):
        out += harness_rows(name)
    out += ["", "## Zero-shot perplexity", "",
            "| model | corpus | documents | tokens | nats / token | perplexity | bits / byte | "
            "kind | in training data |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("shipped", "ar-twin"):
        out += zero_shot_rows(name)
    out += ["", "## The Monte Carlo estimator against its draws (shipped model, "
            "dlm_dailydialog_next)", "",
            "| draws K | mean per-request standard error (nats) | acc | acc_norm | wall time |",
            "|---|---|---|---|---|"]
    out += draws_rows()
    replies = HERE / "replies.md"
    if replies.is_file():
        out += ["", "## Replies: MAUVE and judged perplexity with entropy", "",
                replies.read_text()]
    print("\n".join(out))


if __name__ == "__main__":
    main()
