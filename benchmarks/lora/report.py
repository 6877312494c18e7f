"""LoRA against full fine-tuning: trainable parameters, and validation loss against the
tokens seen, from the two runs' logs.

    python benchmarks/lora/report.py runs/lora/lora runs/lora/full --out benchmarks/lora/a2d

Both runs adapt the same imported model (dlm's AR twin, exported as LlamaForCausalLM and
read back) to masked diffusion on the same chat mix, with the same batches and steps
(`benchmarks/lora/configs/`). Validation: the NELBO per reply token (comparable between
the two: same tokenizer, padding and validation set).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit


def curve(run: Path) -> tuple[list[dict], float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    seen, points, wall = 0, [], 0.0
    for r in rows:
        if "tokens" in r and "loss" in r:
            seen += r["tokens"]
            wall = r.get("elapsed_s", wall)
        key = "val_nelbo_reply" if "val_nelbo_reply" in r else None
        if key:
            points.append({"step": r["step"], "tokens": seen, "val_nelbo_reply": r[key],
                           "elapsed_s": wall})
    return points, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs=2, help="the LoRA run, then the full fine-tuning run")
    ap.add_argument("--out", default="benchmarks/lora/a2d")
    args = ap.parse_args()
    rows = []
    for run in map(Path, args.runs):
        lm = DiffusionLM.load(run, "cpu", best=False)
        trained = sum(p.numel() for p in lm.model.parameters() if p.requires_grad)
        points, wall = curve(run)
        cfg = json.loads((run / "last" / "config.json").read_text())["train"]
        rows.append({"run": str(run), "lora_rank": cfg.get("lora_rank", 0), "lr": cfg["lr"],
                     "trainable": trained, "parameters": lm.model.num_parameters(),
                     "wall_s": wall, "curve": points})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        label = f"LoRA r={r['lora_rank']}" if r["lora_rank"] else "full fine-tuning"
        ax.plot([p["tokens"] / 1e6 for p in r["curve"]],
                [p["val_nelbo_reply"] for p in r["curve"]], marker="o", label=label)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation NELBO per reply token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=120)
    out = {"command": "python benchmarks/lora/report.py " + " ".join(args.runs)
                      + f" --out {args.out}", "commit": git_commit(),
           "cpu": device_name(torch.device("cpu")), "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Command: `{out['command']}` ({out['cpu']}).", "",
             "| run | trainable parameters | of | wall time | validation NELBO / reply token "
             "(first, last) |", "|---|---|---|---|---|"]
    for r in rows:
        first, last = r["curve"][0], r["curve"][-1]
        lines.append(f"| {'LoRA rank ' + str(r['lora_rank']) if r['lora_rank'] else 'full'} "
                     f"| {r['trainable']:,} | {r['parameters']:,} | {r['wall_s'] / 60:.1f} min "
                     f"| {first['val_nelbo_reply']:.3f} -> {last['val_nelbo_reply']:.3f} |")
    lines += ["", "| step | tokens | " + " | ".join(
        'LoRA' if r['lora_rank'] else 'full' for r in rows) + " |", "|---|---|---|---|"]
    for i, p in enumerate(rows[0]["curve"]):
        others = [r["curve"][i]["val_nelbo_reply"] if i < len(r["curve"]) else float("nan")
                  for r in rows]
        lines.append(f"| {p['step']} | {p['tokens']:,} | "
                     + " | ".join(f"{v:.3f}" for v in others) + " |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
