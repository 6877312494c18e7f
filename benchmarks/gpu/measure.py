"""Everything that needs a GPU, measured in one run (`benchmarks/gpu/run.sh`).

    bash benchmarks/gpu/run.sh            # on a GPU: LLaDA-8B's shape, the base preset
    bash benchmarks/gpu/run.sh --smoke    # anywhere: the same steps at tiny shapes (CI)

1. Generation of a random-weight model of LLaDA-8B's shape (its published config read by
   `dlm.layouts.llada`) in bfloat16: tokens/s at batch 1 and 16, the whole canvas, blocks,
   and blocks with the Fast-dLLM prefix and dual caches, beside an AR model of the same
   shape with its KV cache; the allocator's peak memory.
2. Training MFU of the `base` preset (bf16 autocast), against the device's published peak.
3. `dlm train --parallel ddp` and `--parallel fsdp` (FSDP2) under torchrun on one GPU.
4. The `gpu`-marked tests.

Writes OUT/<device>.json and OUT/<device>.md (the device named in both).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlm.bench.generation import bench_generation
from dlm.bench.report import device_name, git_commit
from dlm.bench.training import preset_training
from dlm.config import ModelConfig
from dlm.layouts import llada
from dlm.model import Transformer

LLADA_8B = {"model_type": "llada", "d_model": 4096, "n_heads": 32, "n_kv_heads": 32,
            "n_layers": 32, "mlp_hidden_size": 12288, "vocab_size": 126464,
            "embedding_size": 126464, "max_sequence_length": 4096, "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5, "weight_tying": False, "block_type": "llama",
            "include_bias": False}
"""LLaDA-8B's published config: the keys dlm reads."""
SMOKE = {**LLADA_8B, "d_model": 64, "n_heads": 4, "n_kv_heads": 4, "n_layers": 2,
         "mlp_hidden_size": 128, "vocab_size": 512, "embedding_size": 512,
         "max_sequence_length": 256}


def generation(cfg: ModelConfig, device: torch.device, smoke: bool) -> dict:
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.device(device):
        diffusion = Transformer(cfg).to(torch.bfloat16).eval()
        ar = Transformer(ModelConfig(**{**cfg.__dict__, "causal": True})).to(torch.bfloat16)
    length, block = (16, 8) if smoke else (256, 32)
    rows = bench_generation(diffusion, ar.eval(), device, lengths=[length],
                            batches=[1, 2] if smoke else [1, 16], prompt_len=16 if smoke else 64,
                            block=block, per_step=4, repeats=1 if smoke else 3,
                            budget_s=5 if smoke else 40)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    weights = sum(p.numel() * p.element_size() for p in diffusion.parameters())
    del diffusion, ar
    return {"parameters": cfg_parameters(cfg), "weights_bytes": weights,
            "peak_memory_bytes": peak, "rows": rows}


def cfg_parameters(cfg: ModelConfig) -> int:
    with torch.device("meta"):
        return Transformer(cfg).num_parameters()


def training(device: torch.device, smoke: bool) -> dict:
    preset, batch, seq = ("tiny", 4, 64) if smoke else ("base", 16, 1024)
    rows, peak, source = preset_training([preset], device, batch, seq, bf16=True,
                                         checkpointing=False, steps=2 if smoke else 10)
    return {"rows": rows, "peak_flops": peak, "peak_source": source}


def synthetic_pairs(folder: Path, n: int = 400) -> Path:
    """Made-up prompt/reply pairs, so the parallel runs need no corpus."""
    words = "the a one two red blue cat dog runs sees big small and then".split()
    g = torch.Generator().manual_seed(0)
    lines = []
    for _ in range(n):
        pick = torch.randint(0, len(words), (20,), generator=g).tolist()
        lines.append(" ".join(words[i] for i in pick[:10]) + "\t"
                     + " ".join(words[i] for i in pick[10:]))
    path = folder / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def parallel(device: torch.device, smoke: bool, work: Path) -> list[dict]:
    data = synthetic_pairs(work)
    rows = []
    for mode in ("ddp", "fsdp"):
        out = work / mode
        cfg = {"data": [str(data)], "out_dir": str(out), "preset": "tiny" if smoke else "base",
               "parallel": mode, "max_steps": 3 if smoke else 30, "batch_size": 8 if smoke
               else 32, "prompt_len": 32, "response_len": 32, "eval_every": 1000,
               "save_every": 1000, "val_examples": 8, "tensorboard": False,
               "device": device.type, "log_every": 1}
        path = work / f"{mode}.json"
        path.write_text(json.dumps(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", "-m", "dlm", "train", "--config", str(path)]
        start = time.time()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=400,
                             env={**os.environ, "OMP_NUM_THREADS": "1" if smoke else "8"})
        metrics = out / "metrics.jsonl"
        steps = [json.loads(line) for line in metrics.open()] if metrics.is_file() else []
        speeds = [r["tokens_per_s"] for r in steps if "tokens_per_s" in r][1:]
        rows.append({"parallel": mode, "returncode": run.returncode,
                     "wall_s": round(time.time() - start, 1), "steps": len(speeds) + 1,
                     "tokens_per_s": sorted(speeds)[len(speeds) // 2] if speeds else None,
                     "error": run.stderr.strip().splitlines()[-1] if run.returncode else None})
    return rows


def gpu_tests() -> dict:
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                          "no:cacheprovider", "tests"], capture_output=True, text=True,
                         timeout=300)
    summary = (run.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|"
                                                r"errors?)", summary)}
    return {"returncode": run.returncode, "summary": summary, **counts}


def markdown(result: dict) -> str:
    gen, train = result["generation"], result["training"]
    lines = [f"# GPU checks on {result['device']}", "",
             f"Command: `{result['command']}` (commit {result['commit']}, torch "
             f"{result['torch']}){'; smoke run: tiny shapes' if result['smoke'] else ''}.", "",
             f"## Generation: random weights of {result['shape']}, bfloat16", "",
             f"{gen['parameters']:,} parameters, {gen['weights_bytes'] / 2**30:.2f} GiB of "
             "weights; peak allocated "
             + (f"{gen['peak_memory_bytes'] / 2**30:.2f} GiB" if gen["peak_memory_bytes"]
                else "n/a (CPU)") + ".", "",
             "| length | batch | decoding | tokens/s | × AR | NFE |", "|---|---|---|---|---|---|"]
    for r in gen["rows"]:
        lines.append(f"| {r['length']} | {r['batch']} | {r['variant']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} | {r['nfe']} |")
    lines += ["", "## Training (bf16 autocast)", "", "| preset | tokens/s | MFU |",
              "|---|---|---|"]
    for r in train["rows"]:
        lines.append(f"| {r['preset']} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} |")
    lines += ["", f"MFU against {train['peak_flops'] / 1e12:.1f} TFLOP/s "
              f"({train['peak_source']}).", "", "## torchrun, one process", "",
              "| parallel | exit | steps | tokens/s (median) | wall |", "|---|---|---|---|---|"]
    for r in result["parallel"]:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "—"
        lines.append(f"| {r['parallel']} | {r['returncode']} | {r['steps']} | {tps} | "
                     f"{r['wall_s']} s |")
    lines += ["", f"## `gpu`-marked tests: {result['gpu_tests']['summary']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, on whatever device")
    ap.add_argument("--out", default="benchmarks/gpu")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        sys.exit("no GPU here: run with --smoke for the CPU check of this script")
    start = time.time()
    shape = "LLaDA-8B's shape" if not args.smoke else "a tiny LLaDA-layout shape"
    cfg = llada.model_config(SMOKE if args.smoke else LLADA_8B)
    result = {"command": "bash benchmarks/gpu/run.sh" + (" --smoke" if args.smoke else "")
              + (f" --out {args.out}" if args.out != "benchmarks/gpu" else ""),
              "device": device_name(device), "smoke": args.smoke, "commit": git_commit(),
              "torch": torch.__version__, "shape": shape}
    result["generation"] = generation(cfg, device, args.smoke)
    result["training"] = training(device, args.smoke)
    with tempfile.TemporaryDirectory(prefix="dlm-gpu-") as work:
        result["parallel"] = parallel(device, args.smoke, Path(work))
    result["gpu_tests"] = gpu_tests()
    result["seconds"] = round(time.time() - start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    named = "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "-",
                                                      result["device"].lower()).strip("-")
    slug = ("smoke-" if args.smoke else "") + named
    (out / f"{slug}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{slug}.md").write_text(markdown(result))
    print(f"written: {out / slug}.json, .md ({result['seconds']} s)")


if __name__ == "__main__":
    main()
