"""`dlm bench --serve CKPT`: a load test of `dlm serve` on loopback.

Each checkpoint is served by its own `dlm serve` process (the client is this process, so
the two do not share an interpreter); N streaming chat requests are sent all at once,
then the same N one after another. Every request must be answered exactly once; the
figures are p50/p95 latency per request and total reply tokens/s, and the batching
speed-up is the concurrent tokens/s over the sequential.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from dlm.bench.report import BenchReport, renders, run_meta
from dlm.errors import ConfigError
from dlm.server.load import free_port, run_load


def start_server(ckpt: Path, port: int, max_batch: int, max_queue: int,
                 device: str, *extra: str) -> subprocess.Popen:
    """`dlm serve` in a process, once it answers /health (`extra`: more flags)."""
    cmd = [sys.executable, "-m", "dlm", "serve", "--ckpt", str(ckpt), "--port", str(port),
           "--max-batch", str(max_batch), "--max-queue", str(max_queue), "--device", device,
           *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DLM_API_KEY": ""})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"dlm serve --ckpt {ckpt} exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise ConfigError(f"dlm serve --ckpt {ckpt} did not answer within 120 s")


def run_serve_bench(ckpts: list[Path], device: torch.device, n: int = 64,
                    max_tokens: int = 32, steps: int = 16, max_batch: int = 16,
                    say=lambda text: None) -> BenchReport:
    from dlm.pipeline import DiffusionLM

    results: list[dict[str, Any]] = []
    for ckpt in ckpts:
        lm = DiffusionLM.load(ckpt, "cpu")
        params, preset = lm.model.num_parameters(), lm.meta.get("train", {}).get("preset")
        del lm
        port = free_port()
        proc = start_server(ckpt, port, max_batch, max(2 * n, 256), device.type)
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(run_load(url, n=4, concurrent=True, max_tokens=max_tokens,
                                 steps=steps))  # warm-up
            for concurrent in (True, False):
                r = asyncio.run(run_load(url, n=n, concurrent=concurrent,
                                         max_tokens=max_tokens, steps=steps))
                stats = httpx.get(f"{url}/health").json()
                say(f"{ckpt} {'concurrent' if concurrent else 'sequential'}: "
                    f"{r.answered}/{n} answered, {r.tokens_per_s:.0f} tok/s")
                results.append({"what": "serve-load", "ckpt": str(ckpt), "preset": preset,
                                "parameters": params, "requests": n,
                                "concurrent": concurrent, "answered": r.answered,
                                "lost": r.lost, "duplicated": r.duplicated,
                                "wall_s": r.wall_s, "p50_s": r.p50_s, "p95_s": r.p95_s,
                                "tokens": r.tokens, "tokens_per_s": r.tokens_per_s,
                                "max_tokens": max_tokens, "steps": steps,
                                "max_batch": max_batch,
                                "server_largest_batch": stats["largest_batch"]})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    meta = run_meta(device, notes=[
        f"Each request: a streaming chat completion (`stream_options.include_usage`), "
        f"max_tokens={max_tokens}, steps={steps}, greedy, eos banned (every reply is "
        f"exactly {max_tokens} tokens); prompts cycle through 12 short "
        "chat openers. The server: `dlm serve` in its own process, dynamic batching up to "
        f"{max_batch} rows. Answered = the stream ended with one finish_reason, its usage "
        "and [DONE]; duplicated = a second finish or a response id seen twice."])
    return BenchReport(results, meta)


@renders("serve-load")
def serve_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## `dlm serve` under load", "",
             "| checkpoint | preset | requests | sent | answered | lost | duplicated | "
             "p50 latency | p95 latency | reply tokens/s | batching speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    sequential = {r["ckpt"]: r["tokens_per_s"] for r in results if not r["concurrent"]}
    for r in results:
        speedup = (f"{r['tokens_per_s'] / sequential[r['ckpt']]:.2f}×"
                   if r["concurrent"] and sequential.get(r["ckpt"]) else "1.00×")
        lines.append(f"| {r['ckpt']} | {r['preset']} ({r['parameters'] / 1e6:.1f}M) | "
                     f"{r['requests']} | {'all at once' if r['concurrent'] else 'one at a time'}"
                     f" | {r['answered']} | {r['lost']} | {r['duplicated']} | "
                     f"{r['p50_s']:.2f} s | {r['p95_s']:.2f} s | {r['tokens_per_s']:,.0f} | "
                     f"{speedup} |")
    return lines
