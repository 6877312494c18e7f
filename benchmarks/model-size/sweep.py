"""Pick the model size for a fixed CPU budget by a measured sweep (IsoFLOP profiles in the
manner of Chinchilla's approach 2, with wall-clock minutes on this CPU as the budget).

    python benchmarks/model-size/sweep.py                     # probe, train, report
    python benchmarks/model-size/sweep.py --budgets 2.5 5 10  # minutes of training each
        --skip d192-L5:10 --skip d256-L6:10   # sizes already clearly past the optimum

1. Probe: each size of sizes.json trains 40 steps of base.json; its optimiser steps per
   second (steps 10-40, after warm-up of the allocator) fix how many steps a budget buys.
   Steps, not a timer, end each run, so the cosine schedule is right and a busy machine
   changes the wall time, not the result.
2. Train every size at every budget from scratch (masked diffusion on the chat mix,
   rainbow padding), resumable: a finished run is skipped.
3. Report: validation NELBO per reply token at the end of each run; per budget, the
   size at the minimum of a parabola in log(params); a power law N_opt = k * minutes^a
   through those minima, read off at 30 and 60 minutes. README.md, results.json and
   size-sweep.png are written beside this file.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dlm import load_checkpoint, train
from dlm.config import TrainConfig, from_dict
from dlm.util.portable import portable

HERE = Path(__file__).parent
PROBE_STEPS = 40


def base_config(size: dict, out_dir: str, steps: int) -> TrainConfig:
    data = json.loads((HERE / "base.json").read_text())
    cfg = from_dict(TrainConfig, data, str(HERE / "base.json"))
    return replace(cfg, model_overrides=size, out_dir=out_dir, max_steps=steps,
                   eval_every=0, save_every=0)


def probe(sizes: dict[str, dict]) -> dict[str, float]:
    """Optimiser steps per second of each size, measured once and kept in probe.json."""
    path = HERE / "probe.json"
    rates = json.loads(path.read_text()) if path.exists() else {}
    for name, size in sizes.items():
        if name in rates:
            continue
        out = f"runs/size/probe-{name}"
        train(base_config(size, out, PROBE_STEPS))
        rows = [json.loads(line) for line in open(Path(out) / "metrics.jsonl")]
        t = {r["step"]: r["elapsed_s"] for r in rows if "elapsed_s" in r}
        rates[name] = (PROBE_STEPS - 10) / (t[PROBE_STEPS] - t[10])
        print(f"probe {name}: {rates[name]:.2f} steps/s", flush=True)
        path.write_text(json.dumps(rates, indent=1) + "\n")
    return rates


def run_one(name: str, size: dict, minutes: float, rate: float) -> dict:
    steps = max(PROBE_STEPS, round(minutes * 60 * rate))
    out = Path(f"runs/size/{name}-{minutes:g}m")
    config_path = HERE / "configs" / f"{name}-{minutes:g}m.json"
    config_path.parent.mkdir(exist_ok=True)
    cfg = base_config(size, str(out), steps)
    config_path.write_text(json.dumps({**json.loads((HERE / "base.json").read_text()),
                                       "model_overrides": size, "out_dir": str(out),
                                       "max_steps": steps, "eval_every": 0,
                                       "save_every": 0}, indent=1) + "\n")
    last = out / "last" / "config.json"
    if not last.exists() or json.loads(last.read_text())["step"] < steps:
        start = time.perf_counter()
        train(cfg)
        print(f"{name} {minutes:g} min: {steps} steps in "
              f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    val = [r for r in rows if "val_nelbo_reply" in r][-1]
    wall = max(r["elapsed_s"] for r in rows if "elapsed_s" in r)
    params = load_checkpoint(out).model.num_parameters()
    tokens = steps * cfg.batch_size * cfg.packed_len
    return {"size": name, "minutes": minutes, "steps": steps, "params": params,
            "tokens": tokens, "tokens_per_param": tokens / params, "train_wall_s": wall,
            "val_nelbo_reply": val["val_nelbo_reply"], "val_nelbo": val["val_nelbo"],
            "config": str(config_path)}


def optimum(rows: list[dict]) -> float | None:
    """Params at the minimum of a parabola through (log10 params, val) of the three sizes
    around the measured best; None when it opens downwards or its minimum lies outside
    the sizes tried (then the best is at an end of the sweep)."""
    rows = sorted(rows, key=lambda r: r["params"])
    if len(rows) < 3:
        return None
    best_at = min(range(len(rows)), key=lambda i: rows[i]["val_nelbo_reply"])
    around = rows[max(0, min(best_at - 1, len(rows) - 3)):][:3]
    x = np.log10([r["params"] for r in around])
    y = np.array([r["val_nelbo_reply"] for r in around])
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return None
    vertex = -b / (2 * a)
    return 10 ** vertex if x.min() <= vertex <= x.max() else None


def report(results: list[dict], budgets: list[float], rates: dict[str, float],
           skip: set[tuple[str, float]]) -> str:
    lines = ["# Model size for a fixed CPU budget", "",
             "Command: `python benchmarks/model-size/sweep.py --budgets "
             + " ".join(f"{b:g}" for b in budgets) + "".join(f" --skip {n}:{m:g}" for n, m
                                                             in sorted(skip))
             + "` (configs: `base.json`, `sizes.json`, "
             "and one file per run under `configs/`).", "",
             "Machine: AMD EPYC, 2 threads, no GPU; torch 2.13.0+cpu. Each run: masked "
             "diffusion from scratch on the chat mix (`runs/chatmix`), rainbow padding, batch "
             "32 x (64 + 48) tokens, lr 2e-3, seed 0; its steps are the budget's minutes x "
             "the size's probed steps/s; the final evaluation is not counted in the budget.",
             "", "| size | params | steps/s (probe) | budget (min) | steps | tokens/param "
             "| train wall (min) | val nats per reply token |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['size']} | {r['params'] / 1e6:.2f}M | {rates[r['size']]:.2f} | "
                     f"{r['minutes']:g} | {r['steps']} | {r['tokens_per_param']:.1f} | "
                     f"{r['train_wall_s'] / 60:.1f} | {r['val_nelbo_reply']:.3f} |")
    lines += ["", "Best size per budget (minimum of a parabola in log params through the "
              "measured best and its neighbours):", ""]
    optima = {}
    for b in budgets:
        rows = [r for r in results if r["minutes"] == b]
        best = optimum(rows)
        measured = min(rows, key=lambda r: r["val_nelbo_reply"])
        optima[b] = best
        lines.append(f"- {b:g} min: measured best {measured['size']} "
                     f"({measured['params'] / 1e6:.2f}M, {measured['val_nelbo_reply']:.3f}); "
                     + (f"fitted optimum {best / 1e6:.2f}M params" if best else
                        "no interior optimum (the best is at an end of the sizes tried)"))
    fitted = {b: n for b, n in optima.items() if n}
    if len(fitted) >= 2:
        slope, icpt = np.polyfit(np.log10(list(fitted)), np.log10(list(fitted.values())), 1)
        lines += ["", f"Power law through the fitted optima: N_opt = {10 ** icpt / 1e6:.3f}M x "
                  f"minutes^{slope:.2f}. Read off: 30 min -> {10 ** icpt * 30 ** slope / 1e6:.2f}M "
                  f"params, 60 min -> {10 ** icpt * 60 ** slope / 1e6:.2f}M params "
                  "(an extrapolation beyond the budgets measured)."]
    else:
        lines += ["", "Too few interior optima for a power law; see the table."]
    best_ratio = [min((r for r in results if r["minutes"] == b),
                      key=lambda r: r["val_nelbo_reply"])["tokens_per_param"] for b in budgets]
    lines += ["", "Tokens per parameter at the measured best: " + ", ".join(
        f"{t:.0f} ({b:g} min)" for t, b in zip(best_ratio, budgets, strict=True))
        + ". Read off with the rule those suggest (about 20 tokens per parameter, as "
        "Chinchilla's), from each size's probed throughput: " + "; ".join(
            f"{m} min -> {size_at(results, rates, m, 20.0) / 1e6:.2f}M params"
            for m in (30, 60)) + " (an extrapolation beyond the budgets measured)."]
    lines += ["", "![validation NELBO per reply token against params, one line per budget]"
              "(size-sweep.png)", ""]
    return "\n".join(lines)


def size_at(results: list[dict], rates: dict[str, float], minutes: float,
            tokens_per_param: float) -> float:
    """The params at which `minutes` of each size's throughput give `tokens_per_param`,
    interpolated in log-log between the sizes of the sweep."""
    tokens_per_step = 32 * (64 + 48)
    sizes = sorted({(r["params"], r["size"]) for r in results})
    ratio = [(n, rates[name] * tokens_per_step * 60 * minutes / n) for n, name in sizes]
    for (n0, r0), (n1, r1) in zip(ratio, ratio[1:], strict=False):
        if r0 >= tokens_per_param >= r1:
            f = np.log(r0 / tokens_per_param) / np.log(r0 / r1)
            return float(np.exp(np.log(n0) + f * np.log(n1 / n0)))
    return float("nan")


def plot(results: list[dict], budgets: list[float]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for b in budgets:
        rows = sorted((r for r in results if r["minutes"] == b), key=lambda r: r["params"])
        ax.plot([r["params"] for r in rows], [r["val_nelbo_reply"] for r in rows], "o-",
                label=f"{b:g} min")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation nats per reply token")
    ax.set_title("IsoFLOP-style profiles on a 2-core CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "size-sweep.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.5, 5, 10])
    parser.add_argument("--skip", action="append", default=[],
                        help="SIZE:MINUTES not to train (repeat), e.g. a size that is past "
                             "the optimum at every smaller budget.")
    args = parser.parse_args()
    skip = {(name, float(m)) for name, m in (s.split(":") for s in args.skip)}
    sizes = json.loads((HERE / "sizes.json").read_text())
    rates = probe(sizes)
    results = []
    for minutes in args.budgets:
        for name, size in sizes.items():
            if (name, minutes) in skip:
                continue
            results.append(run_one(name, size, minutes, rates[name]))
            (HERE / "results.json").write_text(portable(json.dumps(results, indent=1)) + "\n")
    plot(results, args.budgets)
    (HERE / "README.md").write_text(portable(report(results, args.budgets, rates, skip)))
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
