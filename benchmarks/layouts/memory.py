"""Peak anonymous memory while `dlm` imports a large LLaDA-layout checkpoint.

    python benchmarks/layouts/memory.py --folder runs/llada-4gb --gb 4 \
        --out benchmarks/layouts/memory.json

Writes (once) a random checkpoint of LLaDA-8B's width (d_model 4096, 32 heads, MLP 12288,
vocabulary 126464, untied head) in bfloat16, with as many blocks as make at least `--gb`
GB, in 1 GB safetensors shards; then, in a fresh process, loads it with
`DiffusionLM.load(folder, dtype="bfloat16")` while a thread reads the process's `RssAnon`
(anonymous memory: the file-backed pages of the shards' memory maps do not count) every
2 ms. Reports the peak against the weights' bytes, and the process's `RssAnon` before
loading (Python, torch and transformers themselves).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

WIDTH = dict(d_model=4096, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288,
             vocab_size=126464, embedding_size=126464)
MASK, EOS = 126336, 126081


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def tensors(layers: int):
    """(name, shape) of a LLaDA checkpoint with `layers` blocks, in LLaDA's names."""
    d, f, v = WIDTH["d_model"], WIDTH["mlp_hidden_size"], WIDTH["embedding_size"]
    root = "model.transformer."
    yield f"{root}wte.weight", (v, d)
    for i in range(layers):
        b = f"{root}blocks.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "attn_out"):
            yield f"{b}{name}.weight", (d, d)
        yield f"{b}ff_proj.weight", (f, d)
        yield f"{b}up_proj.weight", (f, d)
        yield f"{b}ff_out.weight", (d, f)
        yield f"{b}attn_norm.weight", (d,)
        yield f"{b}ff_norm.weight", (d,)
    yield f"{root}ln_f.weight", (d,)
    yield f"{root}ff_out.weight", (v, d)


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def write_checkpoint(folder: Path, gb: float) -> None:
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    layers = 1
    while sum(numel(s) for _, s in tensors(layers)) * 2 < gb * 1e9:
        layers += 1
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    shards, shard, size, weight_map = [], {}, 0, {}

    def flush():
        nonlocal shard, size
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        shards.append(name)
        weight_map.update({k: name for k in shard})
        shard, size = {}, 0

    for name, shape in tensors(layers):
        t = torch.randn(shape, generator=gen, dtype=torch.float32).mul_(0.02)
        shard[name] = t.to(torch.bfloat16)
        size += shard[name].numel() * 2
        if size >= 1e9:
            flush()
    if shard:
        flush()
    total = sum(numel(s) for _, s in tensors(layers)) * 2
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config = {"model_type": "llada", "architectures": ["LLaDAModelLM"], **WIDTH,
              "n_layers": layers, "max_sequence_length": 4096, "rope_theta": 500000.0,
              "rms_norm_eps": 1e-5, "weight_tying": False, "block_type": "llama",
              "include_bias": False, "include_qkv_bias": False, "mask_token_id": MASK,
              "eos_token_id": EOS}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    # a stand-in vocabulary (the weights are random): a few words and the special tokens
    words = {w: i for i, w in enumerate(["<|eos|>", "<|mask|>", "hello", "world", "[UNK]"])}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>",
                            mask_token="<|mask|>").save_pretrained(str(folder))


def measure(folder: Path) -> dict:
    """Run in a fresh process: load the folder in bfloat16, polling RssAnon."""
    import torch  # noqa: F401  (imported before the baseline is read)
    import transformers  # noqa: F401

    from dlm import DiffusionLM

    before = rss_anon()
    peak, done = [before], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.time()
    lm = DiffusionLM.load(folder, "cpu", dtype="bfloat16")
    seconds = time.time() - start
    done.set()
    thread.join()
    peak_anon = max(peak[0], rss_anon())
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    return {"weights_bytes": weights, "parameters": lm.model.num_parameters(),
            "rss_anon_before_bytes": before, "rss_anon_peak_bytes": peak_anon,
            "peak_over_weights": round(peak_anon / weights, 4),
            "peak_above_before_over_weights": round((peak_anon - before) / weights, 4),
            "load_seconds": round(seconds, 1), "dtype": str(lm.dtype)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="runs/llada-4gb")
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--out", default="benchmarks/layouts/memory.json")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    from dlm.bench.report import device_name, git_commit

    folder = Path(args.folder)
    if args.measure_only:
        print(json.dumps(measure(folder)))
        return
    if not (folder / "config.json").is_file():
        write_checkpoint(folder, args.gb)
    run = subprocess.run([sys.executable, __file__, "--folder", str(folder), "--measure-only"],
                         capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    out = {"command": f"python benchmarks/layouts/memory.py --folder {args.folder} "
                      f"--gb {args.gb} --out {args.out}",
           "commit": git_commit(), "cpu": device_name(torch.device("cpu")),
           "layout": "llada (LLaDA-8B's width, fewer blocks), bfloat16", **result}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    gib = 1 << 30
    print(f"weights {result['weights_bytes'] / gib:.2f} GiB; RssAnon before "
          f"{result['rss_anon_before_bytes'] / gib:.2f} GiB, peak "
          f"{result['rss_anon_peak_bytes'] / gib:.2f} GiB = "
          f"{result['peak_over_weights']:.3f}x the weights")


if __name__ == "__main__":
    main()
