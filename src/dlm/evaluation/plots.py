"""PNG plots of runs (matplotlib, no display needed): training and validation curves from
`metrics.jsonl`, and reply quality against the number of denoising steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlm.objectives import get_objective


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works on machines with no display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, list[dict[str, Any]]], out: Path) -> Path:
    """Training loss and validation per-token figure against tokens seen, one line per run.

    Diffusion's validation figure is the NELBO (a bound), AR's the exact NLL: both are
    nats per token on the same held-out tokens when the runs share their data.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in runs.items():
        seen, xs, losses = 0, [], []
        tokens_at: dict[int, int] = {0: 0}
        for r in rows:
            if "loss" in r:
                seen += int(r.get("tokens", 0))
                xs.append(seen)
                losses.append(r["loss"])
                tokens_at[r["step"]] = seen
        left.plot(xs, losses, label=name, linewidth=0.8)
        evals = [r for r in rows if "val_nelbo" in r or "val_nll" in r]
        right.plot([tokens_at.get(r["step"], 0) for r in evals],
                   [r.get("val_nelbo", r.get("val_nll")) for r in evals], marker="o",
                   label=f"{name} ({'NELBO bound' if 'val_nelbo' in evals[0] else 'NLL'})"
                   if evals else name)
    left.set(title="training loss", xlabel="tokens", ylabel="nats/token")
    right.set(title="validation", xlabel="tokens", ylabel="nats/token")
    _finish(fig, (left, right), out, plt)
    return out


def _finish(fig, axes, out: Path, plt) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # an empty panel (no judge) gets no legend
            ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_sweep(reports: dict[str, dict[str, Any]], out: Path) -> Path:
    """Generative perplexity and unigram entropy against denoising steps, per report."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, report in reports.items():
        sweep = report["sweep"]
        steps = [q["steps"] for q in sweep]
        style = dict(marker="o", label=name)
        if get_objective(report["objective"]).one_call_per_token:  # one pass: a line
            style = dict(linestyle="--", label=f"{name} (AR)")
            steps = [1, max(max(q["steps"] for r in reports.values() for q in r["sweep"]), 2)]
            sweep = sweep * 2
        if all(q["gen_ppl"] is not None for q in sweep):
            left.plot(steps, [q["gen_ppl"] for q in sweep], **style)
        right.plot(steps, [q["entropy"] for q in sweep], **style)
    left.set(title="generative perplexity (AR judge)", xlabel="denoising steps", xscale="log")
    right.set(title="unigram entropy of replies (nats)", xlabel="denoising steps",
              xscale="log")
    _finish(fig, (left, right), out, plt)
    return out
