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
   character-level model for both (`CharNgram`), since the two tokenizations differ.
"""

from __future__ import annotations

import importlib
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from dlm.bench.generation import last_step
from dlm.bench.report import BenchReport, renders, run_meta, spread
from dlm.config import SampleConfig, TrainConfig
from dlm.errors import ConfigError
from dlm.sampling import denoise, reply_canvas

# ../shared/data beside the repository (see its README)
SHAKESPEARE = Path(__file__).parents[3].parent / "shared/data/tiny_shakespeare/input.txt"
SAMPLE_TOKENS = 240
"""Tokens each sample writes: the peer's 256-character canvas less its 16-character
context."""
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


class CharNgram:
    """A character n-gram model with Witten-Bell interpolation: the common judge.

    Fitted on training text; `bits_per_char` of a string says how Shakespeare-like it
    reads at the character level, whatever tokenizer produced it.
    """

    def __init__(self, text: str, order: int = 5):
        self.order = order
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        for n in range(order):
            for i in range(n, len(text)):
                self.counts[n][text[i - n : i]][text[i]] += 1
        self.vocab = len(set(text)) + 1  # + unseen characters

    def prob(self, context: str, char: str) -> float:
        p = 1.0 / self.vocab
        for n in range(self.order):
            if n > len(context):
                break
            seen = self.counts[n].get(context[len(context) - n :] if n else "")
            if not seen:
                continue
            total, types = sum(seen.values()), len(seen)
            p = (seen[char] + types * p) / (total + types)
        return p

    def bits_per_char(self, text: str, context: str = "") -> float:
        full = context + text
        bits = [-math.log2(self.prob(full[max(0, i - self.order + 1) : i], full[i]))
                for i in range(len(context), len(full))]
        return sum(bits) / max(len(bits), 1)


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


def train_and_sample(peer, peer_step, trainer, text: Path, minutes: float, steps: int,
                     samples: int, say) -> list[dict[str, Any]]:
    """Train both for `minutes` of wall time or `steps` optimiser steps each, then sample
    240 tokens from the same held-out contexts and judge both with one character model."""
    raw = text.read_text(encoding="utf-8")
    cut = int(len(raw) * 0.9)
    judge = CharNgram(raw[:cut])
    trained, train_seconds = {}, {}
    for name, step in (("peer", peer_step), ("dlm bf16 autocast", trainer.train_step)):
        start, n = time.perf_counter(), 0
        while (n < steps) if steps else (time.perf_counter() - start < minutes * 60):
            loss = step()  # the peer's: a float; dlm's Trainer: {"loss": tensor, ...}
            n += 1
            if n % 25 == 0:
                say(f"{name}: step {n}, loss {loss_value(loss):.3f}")
        trained[name], train_seconds[name] = n, time.perf_counter() - start
        say(f"{name}: {n} steps in {train_seconds[name] / 60:.1f} min")
    rng = torch.Generator().manual_seed(0)
    held_out = raw[cut:]
    starts = torch.randint(0, len(held_out) - 300, (samples,), generator=rng).tolist()
    contexts = [held_out[s : s + 16] for s in starts]
    rows = []
    peer.eval()
    torch.manual_seed(0)  # the peer samples from the global generator
    peer_runs, peer_texts, ours_texts = [], [], []
    for context in contexts:
        ids = peer_model_encode(peer, context)
        calls = count_calls(peer)
        start = time.perf_counter()
        out = peer.sample_confidence(1, peer.config.sequence_len, confidence_threshold=0.9,
                                     temperature=1.0, context_tokens=ids)
        seconds = time.perf_counter() - start
        body = "".join(chr(int(c)) for c in out[0, 16:])
        peer_runs.append((calls.n, seconds, judge.bits_per_char(body, context), len(body),
                          char_entropy(body)))
        peer_texts.append(context + body)
        calls.remove()
    model, tok = trainer.model.eval(), trainer.data.tokenizer
    # The peer's protocol: its canvas (240 tokens after the 16-character context), its
    # threshold rule at 0.9 (so the step budget is only a bound: one per token) and
    # temperature 1 as it samples; greedy decoding would flatter neither.
    length = SAMPLE_TOKENS
    config = SampleConfig(length=length, steps=length, rule="threshold", threshold=0.9,
                          temperature=1.0, block_length=32, cache="dual", eos="ban")
    torch.manual_seed(0)
    ours_runs = []
    for context in contexts:
        prompt = torch.tensor([tok.encode(context)])
        canvas = reply_canvas(prompt, None, length, tok.mask_id, tok.eos_id,
                              banned=tok.never_generated)
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            last = last_step(denoise(model, canvas, config))
        seconds = time.perf_counter() - start
        body = tok.decode(last.tokens[0, prompt.shape[1] :].tolist())
        ours_runs.append((last.nfe, seconds, judge.bits_per_char(body, context), len(body),
                          char_entropy(body)))
        ours_texts.append(context + body)
    reference = judge.bits_per_char(held_out[:20_000])
    for name, runs, texts in (("peer", peer_runs, peer_texts),
                              ("dlm bf16 autocast", ours_runs, ours_texts)):
        calls, secs, bpc, chars, entropy = (sum(x) / len(x) for x in zip(*runs, strict=True))
        rows.append({"what": "peer-sampling", "system": name,
                     "train_minutes": train_seconds[name] / 60,
                     "train_steps": trained[name], "samples": len(runs), "tokens": SAMPLE_TOKENS,
                     "first_sample": texts[0],
                     "calls": calls, "seconds": secs, "chars": chars,
                     "judge_bits_per_char": bpc, "char_entropy": entropy,
                     "held_out_bits_per_char": reference})
    return rows


def char_entropy(text: str) -> float:
    """Unigram entropy of the characters, in bits: a judge alone rewards a sample that
    repeats one likely character (a run of spaces scores well), so report both."""
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values()) if text \
        else 0.0


def loss_value(loss: float | torch.Tensor | dict[str, Any]) -> float:
    if isinstance(loss, dict):
        loss = loss["loss"]
    return float(loss)


def peer_model_encode(peer, text: str) -> torch.Tensor:
    return torch.tensor([[min(ord(c), peer.config.vocab_size - 1) for c in text]])


class count_calls:  # noqa: N801 - used like a function
    """Counts calls of a module's `forward`. The peer's sampler calls `self.forward`
    directly, which skips forward hooks, so the bound method is wrapped instead."""

    def __init__(self, module: torch.nn.Module):
        self.n, self.module = 0, module
        inner = module.forward

        def counted(*args, **kwargs):
            self.n += 1
            return inner(*args, **kwargs)
        module.forward = counted

    def remove(self) -> None:
        del self.module.forward  # the class's method again


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


@renders("peer-sampling")
def peer_sampling_table(results: list[dict[str, Any]]) -> list[str]:
    r0 = results[0]
    training = ", ".join(f"{r['system']}: {r['train_steps']} steps in "
                         f"{r['train_minutes']:.1f} min" for r in results)
    lines = ["## 240-token samples after the same training", "",
             f"Both trained on the same text ({training}); "
             f"{r0['samples']} continuations of the same held-out 16-character contexts. "
             "Quality: bits per character under one character 5-gram model fitted on the "
             f"training 90% (held-out Shakespeare scores {r0['held_out_bits_per_char']:.2f}; "
             "lower is more Shakespeare-like).", "",
             "| system | training steps | model calls | wall time | characters | "
             "judge bits/char | character entropy |", "|---|---|---|---|---|---|---|"]
    for r in results:
        entropy = f"{r['char_entropy']:.2f}" if "char_entropy" in r else "–"
        lines.append(f"| {r['system']} | {r['train_steps']} | {r['calls']:.1f} | "
                     f"{r['seconds']:.2f} s | {r['chars']:.0f} | "
                     f"{r['judge_bits_per_char']:.2f} | {entropy} |")
    for r in results:
        if "first_sample" in r:
            lines += ["", f"First sample, {r['system']}:", "", "```",
                      r["first_sample"], "```"]
    return lines
