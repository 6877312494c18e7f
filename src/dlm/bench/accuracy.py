"""Does bf16 autocast change the answers? The same checkpoint, fp32 vs bf16, side by side.

bf16 keeps float32's range but only 8 bits of mantissa, so it is a trade to be
checked, not assumed: the held-out likelihood with the same noise draws, and the
greedy replies to the same prompts, computed both ways in one run.
"""

from __future__ import annotations

from typing import Any

import torch

from dlm.bench.report import renders


def bf16_accuracy(ckpt: str, device: torch.device, val_examples: int = 500,
                  prompts: int = 64, draws: int = 4) -> dict[str, Any]:
    from dlm.evaluation.likelihood import likelihood
    from dlm.evaluation.report import held_out
    from dlm.pipeline import DiffusionLM

    lm = DiffusionLM.load(ckpt, str(device))
    val, histories, _, _ = held_out(lm, None, val_examples)
    histories = histories[:prompts]
    config = lm.decoding()  # the replies the model's users get
    results = {}
    for name, on in (("float32", False), ("bf16", True)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on):
            results[name] = (likelihood(lm, val, draws=draws, seed=0),
                             lm.reply_ids(histories, config))
    (l32, r32), (l16, r16) = results["float32"], results["bf16"]
    return {"what": "bf16-accuracy", "checkpoint": str(ckpt), "objective": lm.objective.name,
            "val_examples": len(val), "draws": draws,
            "nll_float32": l32.nats_per_token, "nll_bf16": l16.nats_per_token,
            "stderr_float32": l32.stderr,
            "relative_difference": (l16.nats_per_token - l32.nats_per_token)
            / l32.nats_per_token,
            "prompts": len(histories),
            "identical_replies": float((r32 == r16).all(1).float().mean()),
            "identical_tokens": float((r32 == r16).float().mean())}


@renders("bf16-accuracy")
def accuracy_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## bf16 autocast accuracy", "",
             "The same checkpoint evaluated in float32 and under bf16 autocast: held-out "
             "NELBO (diffusion, same noise draws) or NLL (AR), and greedy replies to the same "
             "held-out prompts (the model's default decoding, `lm.decoding()`).", "",
             "| checkpoint | float32 nats/token | bf16 | difference | identical replies | "
             "identical tokens |", "|---|---|---|---|---|---|"]
    for r in results:
        se = f" ± {r['stderr_float32']:.3f}" if r["stderr_float32"] else ""
        lines.append(f"| {r['checkpoint']} ({r['objective']}) | {r['nll_float32']:.4f}{se} | "
                     f"{r['nll_bf16']:.4f} | {r['relative_difference']:+.2%} | "
                     f"{r['identical_replies']:.0%} of {r['prompts']} | "
                     f"{r['identical_tokens']:.1%} |")
    return lines
