"""`dlm bench --loader DIR`: training-loader throughput and memory against corpus size.

The corpus is the train split of a `dlm data` directory, cut to the smallest size
or repeated up to the largest (the figure is about the loader, and repeated real
text reads like real text). Each size is measured in a fresh process, so its peak
memory is its own: batches/s with no model, the peak resident set (VmHWM), and
at the end the anonymous memory (what the process allocated) apart from the
file-backed pages mapped into it.

The two differ in kind. Anonymous memory is what a corpus would cost if it were
loaded; with the memory map it stays flat (the only per-example array is the epoch's
shuffled order, 8 bytes per example). File-backed pages are the OS page cache of the
token file, mapped in as random reads touch them (the kernel maps whole folios of
already-cached pages around each read): over an epoch they reach the file's size,
but they are shared and clean, and the kernel drops them under memory pressure
instead of failing, so the corpus can be far larger than RAM.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlm.bench.report import BenchReport, device_name, git_commit, renders
from dlm.data.prepare import PREPARED, shard_dir
from dlm.errors import DataError
from dlm.tokenizer import DLMTokenizer

MiB = 1 << 20


def _status() -> dict[str, float]:
    """VmHWM, VmRSS, RssAnon and RssFile of this process, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def synthesize(src: Path, out: Path, tokens: int) -> Path:
    """A train split of about `tokens` tokens: the first examples of `src`, repeated if needed."""
    meta = json.loads((src / "meta.json").read_text())
    info = meta["splits"]["train"]
    data = np.memmap(src / "train.bin", dtype=info["dtype"], mode="r")
    index = np.load(src / "train.idx.npy", mmap_mode="r")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    written, rows = 0, []
    with (out / "train.bin").open("wb") as f:
        while written < tokens:
            take = int(np.searchsorted(index[:, 2], tokens - written, side="right"))
            take = max(1, min(take, len(index)))
            end = int(index[take - 1, 2])
            data[:end].tofile(f)
            rows.append(np.asarray(index[:take]) + written)
            written += end
    np.save(out / "train.idx.npy", np.concatenate(rows))
    n = sum(len(r) for r in rows)
    meta["splits"] = {"train": {**info, "examples": n, "tokens": written}}
    meta["sources"] = {"train": {"path": f"{src} (repeated to {written} tokens)"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def _measure(folder: str, kind: str, batch_size: int, prompt_len: int, response_len: int,
             batches: int, queue) -> None:
    from dlm.data.batch_samplers import ChatSampler, PackedSampler
    from dlm.data.shards import TokenShard

    base = _status()
    shard = TokenShard(Path(folder), "train")
    if kind == "chat":
        sampler = ChatSampler(shard, batch_size, prompt_len, response_len, 0, 3, seed=0)
    else:
        sampler = PackedSampler(shard, batch_size, prompt_len + response_len, seed=0)
    sampler.next()
    start, tokens = time.perf_counter(), 0
    for _ in range(batches):
        tokens += sampler.next().ids.numel()
    seconds = time.perf_counter() - start
    end = _status()
    queue.put({"corpus_tokens": shard.n_tokens, "examples": len(shard), "loader": kind,
               "token_file_mib": shard.tokens.nbytes / MiB,
               "batches_per_s": batches / seconds, "tokens_per_s": tokens / seconds,
               "baseline_rss_mib": base["VmRSS"], "peak_rss_mib": end["VmHWM"],
               "peak_over_baseline_mib": end["VmHWM"] - base["VmRSS"],
               "anon_mib": end["RssAnon"], "anon_over_baseline_mib": end["RssAnon"] -
               base["RssAnon"], "file_mapped_mib": end["RssFile"]})


def measure(folder: Path, kind: str, batch_size: int = 32, prompt_len: int = 64,
            response_len: int = 48, batches: int = 2000) -> dict[str, Any]:
    """One measurement in a fresh (spawned) process, so peak memory is this corpus's alone."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(str(folder), kind, batch_size, prompt_len,
                                               response_len, batches, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return {"what": "loader", "batch": batch_size, "seq": prompt_len + response_len,
            "batches": batches, **result}


def run_loader_bench(data_dir: Path, sizes: list[int], work: Path, batch_size: int = 32,
                     batches: int = 2000) -> BenchReport:
    if not (data_dir / PREPARED).is_file():
        raise DataError(f"{data_dir}: not a `dlm data` directory (no {PREPARED})")
    # the shards of the directory's own tokenizer (others may be cached beside them)
    src = shard_dir(data_dir, DLMTokenizer.load(data_dir / "tokenizer.json"))
    results = []
    for tokens in sizes:
        folder = synthesize(src, work / f"corpus-{tokens}", tokens)
        for kind in ("chat", "packed"):
            results.append(measure(folder, kind, batch_size, batches=batches))
        shutil.rmtree(folder, ignore_errors=True)
    meta = {"command": "dlm bench --loader " + str(data_dir), "commit": git_commit(),
            "device": device_name(torch.device("cpu")), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    return BenchReport(results, meta)


@renders("loader")
def loader_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training loader", "",
             "| corpus | loader | batches/s | tokens/s | peak RSS | peak over baseline | "
             "own (anon) memory over baseline | file pages mapped |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['corpus_tokens'] / 1e6:.1f}M tokens ({r['token_file_mib']:.0f} MiB "
            f"file), {r['examples']:,} examples | "
            f"{r['loader']}, batch {r['batch']}×{r['seq']} | {r['batches_per_s']:,.0f} | "
            f"{r['tokens_per_s'] / 1e6:.2f}M | {r['peak_rss_mib']:.0f} MiB | "
            f"{r['peak_over_baseline_mib']:+.0f} MiB | {r['anon_over_baseline_mib']:+.1f} "
            f"MiB | {r['file_mapped_mib']:.0f} MiB |")
    return lines + ["", "Own memory is what the loader allocated; file pages are the OS page "
                    "cache of the token file mapped into the process as reads touch it "
                    "(shared, clean, dropped by the kernel under memory pressure). The "
                    "baseline is the process after `import torch`, before the shard is opened."]
