"""`dlm eval --harness` and `dlm eval --zero-shot`: the field's yardsticks, written as
JSON and Markdown beside the checkpoint's other evaluations."""

from __future__ import annotations

import json
import time
from pathlib import Path


def parse_model_args(text: str) -> dict:
    """K=V,... as lm-eval parses its --model_args (numbers and booleans typed)."""
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(text) if text.strip() else {}


def harness_run(ckpt: Path, tasks: list[str], model_args: str, limit: int | None,
                device: str, folder: Path) -> None:
    from lm_eval.utils import handle_non_serializable, make_table

    from dlm.cli.console import console
    from dlm.evaluation.harness import run_harness

    names = [t.strip() for entry in tasks for t in entry.split(",") if t.strip()]
    start = time.time()
    results = run_harness(str(ckpt), names, parse_model_args(model_args), limit,
                          "cpu" if device == "auto" else device)
    results["dlm"]["wall_s"] = round(time.time() - start, 1)
    folder.mkdir(parents=True, exist_ok=True)
    js, md = folder / "harness.json", folder / "harness.md"
    kept = {k: results[k] for k in ("results", "versions", "n-shot", "higher_is_better",
                                    "n-samples", "config", "dlm") if k in results}
    js.write_text(json.dumps(kept, indent=2, default=handle_non_serializable) + "\n")
    d = results["dlm"]
    head = (f"dlm eval --harness {','.join(names)} --ckpt {ckpt}: {d['objective']}, "
            f"{d['estimator']} ({d['draws']} draws), {d['dtype']} on {d['device']}, "
            f"seed {d['seed']}, chat {d['chat']}; {d['wall_s']} s.")
    table = make_table(results)
    md.write_text(head + "\n\n" + table + "\n")
    console.print(head, markup=False)
    console.print(table, markup=False)
    console.print(f"written: {js}, {md}")


def zero_shot_run(ckpt: Path, corpora: list[str], draws: int, device: str,
                  folder: Path) -> None:
    from dataclasses import asdict

    from dlm.cli.console import console
    from dlm.evaluation.zero_shot import zero_shot
    from dlm.pipeline import DiffusionLM

    lm = DiffusionLM.load(ckpt, device)
    rows = []
    for corpus in corpora:
        result = zero_shot(lm, corpus, draws)
        if result.in_training_data:
            console.print(f"warning: {corpus} is among {ckpt}'s recorded training data: "
                          "this figure measures fit, not zero-shot transfer", markup=False)
        rows.append(asdict(result))
    meta = {"checkpoint": str(lm.source), "objective": lm.objective.name,
            "dtype": str(lm.dtype), "device": str(lm.device), "seed": 0}
    folder.mkdir(parents=True, exist_ok=True)
    js, md = folder / "zero-shot.json", folder / "zero-shot.md"
    js.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Zero-shot perplexity of {lm.source} ({lm.objective.name}, {meta['dtype']} on "
             f"{meta['device']}, seed 0)", "",
             "| corpus | documents | tokens | nats/token | perplexity | bits/byte | kind | "
             "in training data |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kind = "exact" if r["kind"] == "exact" else f"bound, K = {r['draws']}"
        lines.append(f"| {r['corpus']} | {r['documents']} | {r['tokens']:,} | "
                     f"{r['nats_per_token']:.4f} ± {r['stderr']:.4f} | "
                     f"{min(2.718281828 ** r['nats_per_token'], 1e9):.1f} | "
                     f"{r['bits_per_byte']:.4f} | {kind} | "
                     f"{'yes' if r['in_training_data'] else 'no'} |")
    md.write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines), markup=False)
    console.print(f"written: {js}, {md}")
