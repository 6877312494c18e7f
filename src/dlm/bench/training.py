"""Training throughput: tokens/s, model-FLOPs utilisation and peak memory per preset.

MFU is achieved model FLOPs over the device's peak: on a GPU its published dense
bf16 (or float32) peak, on a CPU a measured large matmul in the training dtype,
so the figure says how much of what this machine can do the step uses.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import torch

from dlm.bench.report import renders, sync, timed
from dlm.config import ModelConfig, TrainConfig, model_preset
from dlm.diffusion import diffusion_loss, get_schedule
from dlm.model import Transformer

MASK_ID = 1

# Published dense (no sparsity) peaks in FLOP/s: (bf16, float32 / tf32 off).
GPU_PEAKS = {
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),  # SXM; the PCIe card is lower (756 TFLOP/s bf16)
    "A100": (312e12, 19.5e12),
    "L4": (121e12, 30e12),
    "A10": (125e12, 31e12),
    "RTX 4090": (165e12, 83e12),
    "RTX 3090": (71e12, 36e12),
}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 * matmul parameters (fwd + bwd) + attention scores and
    values (12 * layers * seq * width)."""
    d, layers, ff, v = cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size
    params = layers * (4 * d * d + 3 * d * ff) + v * d
    return 6 * params + 12 * layers * seq_len * d


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048,
                repeats: int = 5) -> float:
    """Measured dense matmul FLOP/s of this device in this dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    s, _ = timed(lambda: a @ b, device, repeats)
    return 2 * n**3 / s["p10"]


def device_peak(device: torch.device, bf16: bool) -> tuple[float, str]:
    """The MFU denominator and where it came from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (peak_bf16, peak_fp32) in GPU_PEAKS.items():
            if key in name:
                return (peak_bf16 if bf16 else peak_fp32), f"published dense peak of {key}"
    dtype = torch.bfloat16 if bf16 else torch.float32
    return matmul_peak(device, dtype), f"measured 2048² {str(dtype)[6:]} matmul"


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_training(cfg: ModelConfig, device: torch.device, batch: int, seq_len: int,
                   steps: int = 10, bf16: bool = False, checkpointing: bool = False,
                   label: str = "") -> dict[str, Any]:
    """Tokens/s of full training steps (forward, NELBO, backward, AdamW) on random tokens.

    Peak memory: on CUDA the allocator's peak; on CPU the process's peak resident set
    over its size before the model was built (run it in a fresh process,
    `bench_training_isolated`, so earlier work does not hide it).
    """
    torch.manual_seed(0)
    base_mib = _vm_hwm_mib() if device.type == "cpu" else 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = Transformer(cfg).to(device).train()
    model.checkpointing = checkpointing  # activation checkpointing (when the model has it)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ids = torch.randint(6, cfg.vocab_size, (batch, seq_len), device=device)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    schedule = get_schedule("linear")
    gen = torch.Generator(device).manual_seed(0)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = diffusion_loss(model, ids, maskable, None, schedule, MASK_ID, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step()
    step()  # warm-up: allocator, kernels
    s, _ = timed(step, device, steps)
    sync(device)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = _vm_hwm_mib() - base_mib
    return {"what": "training", "preset": label, "parameters": model.num_parameters(),
            "batch": batch, "seq_len": seq_len, "vocab_size": cfg.vocab_size,
            "dtype": "bf16 autocast" if bf16 else "float32",
            "activation_checkpointing": checkpointing, "step_s": s,
            "tokens_per_s": batch * seq_len / s["median"], "peak_memory_mib": peak_mib,
            "flops_per_token": flops_per_token(cfg, seq_len)}


def _child(queue, *args, **kwargs) -> None:
    torch.set_num_threads(kwargs.pop("threads"))
    queue.put(bench_training(*args, **kwargs))


def bench_training_isolated(cfg: ModelConfig, device: torch.device, batch: int, seq_len: int,
                            **kwargs: Any) -> dict[str, Any]:
    """`bench_training` in a spawned process on CPU, so its peak memory is its own."""
    if device.type != "cpu":
        return bench_training(cfg, device, batch, seq_len, **kwargs)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, cfg, device, batch, seq_len),
                       kwargs={**kwargs, "threads": torch.get_num_threads()})
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def preset_training(presets: list[str], device: torch.device, batch: int, seq_len: int,
                    bf16: bool, checkpointing: bool,
                    vocab_size: int = TrainConfig.vocab_size,
                    steps: int = 10) -> tuple[list[dict[str, Any]], float, str]:
    """Each preset's training figures with MFU against this device's peak."""
    peak, source = device_peak(device, bf16)
    results = []
    for preset in presets:
        cfg = model_preset(preset, vocab_size=vocab_size, max_seq_len=seq_len)
        r = bench_training_isolated(cfg, device, batch, seq_len, steps=steps, bf16=bf16,
                                    checkpointing=checkpointing, label=preset)
        r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / peak
        results.append(r)
    return results, peak, source


@renders("training")
def training_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training", "",
             "| preset | batch × seq | dtype | step (median, p10–p90) | tokens/s | MFU | "
             "peak memory |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["step_s"]
        ckpt = ", activation checkpointing" if r.get("activation_checkpointing") else ""
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "–"
        lines.append(
            f"| {r['preset']} ({r['parameters'] / 1e6:.1f}M) | {r['batch']}×{r['seq_len']} | "
            f"{r['dtype']}{ckpt} | {s['median'] * 1e3:,.0f} ms ({s['p10'] * 1e3:,.0f}–"
            f"{s['p90'] * 1e3:,.0f}) | {r['tokens_per_s']:,.0f} | {mfu} | "
            f"{r['peak_memory_mib']:,.0f} MiB |")
    return lines
