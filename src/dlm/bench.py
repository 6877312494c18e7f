"""`dlm bench`: sampling latency and training throughput, written to benchmarks/ as JSON + Markdown.

Figures are medians over repeats with their spread, and each result records the
command, git commit, device, torch version and dtype, so a number is never
separated from where it came from.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.config import SampleConfig, model_preset
from dlm.diffusion import diffusion_loss, get_schedule
from dlm.model import Transformer
from dlm.sampling import reply_canvas, sample

MASK_ID = 1


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return platform.processor() or "cpu"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def spread(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return {"median": statistics.median(samples), "p10": qs[0], "p90": qs[-1],
            "runs": len(samples)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_token(cfg, seq_len: int) -> float:
    """Training FLOPs per token: 6 * parameters (fwd + bwd) + attention scores and values."""
    d, layers, ff, v = cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size
    params = layers * (4 * d * d + 3 * d * ff) + v * d
    return 6 * params + 12 * layers * seq_len * d


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured dense matmul FLOP/s of this device in this dtype (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


@torch.inference_mode()
def bench_sampling(model: Transformer, device: torch.device, length: int = 32, steps: int = 16,
                   batch: int = 1, prompt_len: int = 8, repeats: int = 20) -> dict[str, Any]:
    """Latency of one reply: `steps` denoiser calls over prompt + `length` masks."""
    model.eval()
    prompt = torch.randint(6, model.config.vocab_size, (batch, prompt_len), device=device)
    config = SampleConfig(length=length, steps=steps)
    calls = []

    def denoiser(ids, key_padding):
        calls.append(1)
        return model(ids, key_padding)

    canvas = reply_canvas(prompt, None, length, MASK_ID)
    sample(denoiser, canvas, config)  # warm-up
    times = []
    for _ in range(repeats):
        calls.clear()
        sync(device)
        start = time.perf_counter()
        sample(denoiser, canvas, config)
        sync(device)
        times.append(time.perf_counter() - start)
    s = spread(times)
    return {"what": "sampling", "length": length, "steps": steps, "batch": batch,
            "nfe": len(calls), "latency_s": s,
            "tokens_per_s": batch * length / s["median"]}


def bench_training(preset: str, device: torch.device, batch: int, seq_len: int,
                   vocab_size: int = 8192, steps: int = 10, bf16: bool = False,
                   peak: float | None = None) -> dict[str, Any]:
    """Tokens/s of full training steps (forward, NELBO, backward, AdamW) on random tokens."""
    torch.manual_seed(0)
    cfg = model_preset(preset, vocab_size=vocab_size, max_seq_len=seq_len)
    model = Transformer(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(6, vocab_size, (batch, seq_len), device=device)
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
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    s = spread(times)
    tps = batch * seq_len / s["median"]
    result = {"what": "training", "preset": preset, "parameters": model.num_parameters(),
              "batch": batch, "seq_len": seq_len, "vocab_size": vocab_size,
              "dtype": "bf16 autocast" if bf16 else "float32", "step_s": s, "tokens_per_s": tps}
    if peak:
        result["mfu"] = tps * flops_per_token(cfg, seq_len) / peak
        result["peak_flops"] = peak
    return result


@dataclass
class BenchReport:
    results: list[dict[str, Any]]
    meta: dict[str, Any]

    def markdown(self) -> str:
        m = self.meta
        lines = [f"# dlm bench ({m['date']})", "",
                 f"`{m['command']}` at commit {m['commit']}, on {m['device']}, "
                 f"torch {m['torch']}.", "",
                 "| measure | setting | median | p10–p90 | throughput |",
                 "|---|---|---|---|---|"]
        loader = [r for r in self.results if r["what"] == "loader"]
        for r in self.results:
            if r["what"] == "loader":
                continue
            if r["what"] == "sampling":
                s = r["latency_s"]
                lines.append(f"| sampling latency | {r['model']}, {r['length']} tokens, "
                             f"{r['steps']} steps, batch {r['batch']}, NFE {r['nfe']} | "
                             f"{s['median'] * 1e3:.1f} ms | {s['p10'] * 1e3:.1f}–"
                             f"{s['p90'] * 1e3:.1f} ms | {r['tokens_per_s']:,.0f} tok/s |")
            else:
                s = r["step_s"]
                mfu = f", MFU {r['mfu']:.1%}" if "mfu" in r else ""
                lines.append(f"| training step | {r['preset']} ({r['parameters'] / 1e6:.1f}M), "
                             f"batch {r['batch']}×{r['seq_len']}, {r['dtype']} | "
                             f"{s['median'] * 1e3:.0f} ms | {s['p10'] * 1e3:.0f}–"
                             f"{s['p90'] * 1e3:.0f} ms | {r['tokens_per_s']:,.0f} tok/s{mfu} |")
        if loader:
            if len(lines) == 6:  # no sampling or training rows: drop their empty table
                lines = lines[:4]
            lines += ["", "| corpus | loader | batches/s | tokens/s | peak RSS | peak over "
                      "baseline | own (anon) memory over baseline | file pages mapped |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in loader:
                lines.append(
                    f"| {r['corpus_tokens'] / 1e6:.1f}M tokens ({r['token_file_mib']:.0f} MiB "
                    f"file), {r['examples']:,} examples | "
                    f"{r['loader']}, batch {r['batch']}×{r['seq']} | {r['batches_per_s']:,.0f} | "
                    f"{r['tokens_per_s'] / 1e6:.2f}M | {r['peak_rss_mib']:.0f} MiB | "
                    f"{r['peak_over_baseline_mib']:+.0f} MiB | {r['anon_over_baseline_mib']:+.1f} "
                    f"MiB | {r['file_mapped_mib']:.0f} MiB |")
            lines += ["", "Own memory is what the loader allocated; file pages are the OS page "
                      "cache of the token file mapped into the process as reads touch it "
                      "(shared, clean, dropped by the kernel under memory pressure). The "
                      "baseline is the process after `import torch`, before the shard is opened."]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, name: str) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
        js.write_text(json.dumps({**self.meta, "results": self.results}, indent=2) + "\n")
        md.write_text(self.markdown())
        return js, md


def run_bench(presets: list[str], device: torch.device, ckpt: str | None = None,
              repeats: int = 20, train_batch: int = 8, seq_len: int = 256,
              bf16: bool = False) -> BenchReport:
    """Sampling latency of the tiny preset (or `ckpt`) and training throughput per preset."""
    results = []
    if ckpt:
        from dlm.checkpoint import load_checkpoint

        model, label = load_checkpoint(ckpt, device).model, str(ckpt)
    else:
        torch.manual_seed(0)
        model, label = Transformer(model_preset("tiny", vocab_size=2048)).to(device), "tiny"
    r = bench_sampling(model, device, repeats=repeats)
    results.append({**r, "model": label})
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(device, dtype)
    for preset in presets:
        results.append(bench_training(preset, device, train_batch, seq_len, bf16=bf16,
                                      peak=peak))
    meta = {"command": " ".join(["dlm", *sys.argv[1:]]) if sys.argv else "dlm bench",
            "commit": git_commit(), "device": device_name(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "matmul_peak_flops": peak,
            "peak_dtype": str(dtype).removeprefix("torch.")}
    return BenchReport(results, meta)
