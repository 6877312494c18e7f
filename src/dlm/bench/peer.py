"""`dlm bench --peer DIR`: dlm beside nathan-barry/tiny-diffusion, in one process.

The peer is run from a local checkout (its own files, imported at run time; nothing
of it is copied here). dlm is configured to the peer's size: 6 layers, width 384,
6 heads, a SwiGLU MLP with the same parameter count as the peer's 4x MLP, sequence
256, batch 64; a 512-token byte-level BPE vocabulary makes the totals match (10.8M).

1. Training throughput: full optimiser steps of each, interleaved round by round so
   drift on a shared machine hits both alike.
2. With `train_minutes` (equal wall time) or `train_steps` (equal optimiser steps,
   hence equal tokens seen, and immune to other load on the machine): both are trained
   on the same text, then each writes 240-token continuations of the same held-out 16-character
   contexts with its threshold sampler (peer: its confidence decoding, tau 0.9;
   dlm: threshold 0.9 in blocks of 32 with the dual cache). Quality is judged by one
   character-level model for both (`CharNgram`), since the two tokenizations differ
   (`peer_sampling.py`).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from dlm.bench.peer_sampling import train_and_sample
from dlm.bench.report import BenchReport, renders, run_meta, spread
from dlm.config import TrainConfig
from dlm.errors import ConfigError

# ../shared/data beside the repository (see its README)
SHAKESPEARE = Path(__file__).parents[3].parent / "shared/data/tiny_shakespeare/input.txt"
PEER_SIZE = dict(d_model=384, n_layers=6, n_heads=6, d_ff=1024, max_seq_len=256)


def load_peer(path: Path):
    """The peer's `model` and `training` modules, imported from its checkout."""
    if not (path / "model.py").is_file() or not (path / "training.py").is_file():
        raise ConfigError(f"{path}: not a tiny-diffusion checkout (model.py, training.py)")
    sys.path.insert(0, str(path.resolve()))
    try:
        return importlib.import_module("model"), importlib.import_module("training")
    finally:
        sys.path.pop(0)


def dlm_trainer(text: Path, workdir: Path, bf16: bool, max_steps: int = 10_000):
    from dlm.training.train import Trainer

    cfg = TrainConfig(out_dir=str(workdir), data=[str(text)], preset="tiny", vocab_size=512,
                      seq_len=256, batch_size=64, lr=1e-3, warmup_steps=20,
                      max_steps=max_steps, short_seq_fraction=0.0, cfg_dropout=0.0,
                      bf16="on" if bf16 else "off", device="cpu", tensorboard=False,
                      model_overrides=dict(PEER_SIZE))
    return Trainer(cfg)


def peer_trainer(peer_model, peer_training, text: Path):
    config = peer_model.DiffusionConfig()
    model = peer_model.DiffusionTransformer(config)
    model.init_weights()
    schedule = peer_training.MaskedDiffusionSchedule(config.diffusion_steps,
                                                     config.mask_token_id, config.context_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    batches = peer_training.get_data_loader(str(text), 64, config.sequence_len, "cpu")
    # Its loader yields column slices, which `.to("cuda")` copies but `.to("cpu")` leaves
    # strided, and its loss then fails on `.view`: the harness hands it contiguous copies.
    loader = (batch.contiguous() for batch in batches)
    model.train()

    def step() -> float:
        return peer_training.train_step(model, next(loader), schedule, optimizer)
    return model, step


def time_steps(step, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def run_peer_bench(path: Path, device: torch.device, text: Path | None = None,
                   repeats: int = 3, rounds: int = 2, train_minutes: float = 0.0,
                   train_steps: int = 0, samples: int = 8, say=lambda text: None) -> BenchReport:
    if device.type != "cpu":
        raise ConfigError("the peer comparison is a CPU measurement (--device cpu)")
    text = text or SHAKESPEARE.resolve()
    if not text.is_file():
        raise ConfigError(f"{text}: tiny-shakespeare not found (../shared/data)")
    peer_model, peer_training = load_peer(path)
    tokens_per_step = 64 * 256
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dlm-peer-") as work:
        peer, peer_step = peer_trainer(peer_model, peer_training, text)
        ours = {False: dlm_trainer(text, Path(work) / "fp32", bf16=False),
                True: dlm_trainer(text, Path(work) / "bf16", bf16=True)}
        times: dict[str, list[float]] = defaultdict(list)
        steps = {"peer": peer_step, "dlm float32": ours[False].train_step,
                 "dlm bf16 autocast": ours[True].train_step}
        for fn in steps.values():
            fn()  # warm-up
        for r in range(rounds):
            for name, fn in steps.items():
                times[name] += time_steps(fn, repeats)
                say(f"round {r + 1}: {name} {tokens_per_step / min(times[name]):,.0f} tok/s")
        params = {"peer": sum(p.numel() for p in peer.parameters()),
                  "dlm float32": ours[False].model.num_parameters(),
                  "dlm bf16 autocast": ours[True].model.num_parameters()}
        peer_tps = tokens_per_step / spread(times["peer"])["median"]
        for name, t in times.items():
            s = spread(t)
            tps = tokens_per_step / s["median"]
            results.append({"what": "peer-training", "system": name, "parameters": params[name],
                            "batch": 64, "seq_len": 256, "step_s": s, "tokens_per_s": tps,
                            "ratio": tps / peer_tps})
        if train_minutes > 0 or train_steps > 0:
            results += train_and_sample(peer, peer_step, ours[True], text, train_minutes,
                                        train_steps, samples, say)
    meta = run_meta(device, peer=str(path), text=str(text), notes=[
        "Peer: nathan-barry/tiny-diffusion at its defaults (character vocabulary, 6 layers, "
        "width 384, sequence 256, batch 64, AdamW 3e-4, float32). dlm: the same size, "
        "sequence and batch through its real training step (`Trainer.train_step`: NELBO, "
        "gradient clipping, AdamW)."])
    return BenchReport(results, meta)


@renders("peer-training")
def peer_training_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training beside nathan-barry/tiny-diffusion", "",
             "| system | parameters | batch × seq | step (median, p10–p90) | tokens/s | × peer |",
             "|---|---|---|---|---|---|"]
    for r in results:
        s = r["step_s"]
        lines.append(f"| {r['system']} | {r['parameters'] / 1e6:.2f}M | {r['batch']}×"
                     f"{r['seq_len']} | {s['median']:.2f} s ({s['p10']:.2f}–{s['p90']:.2f}) | "
                     f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} |")
    return lines
