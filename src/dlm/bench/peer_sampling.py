"""The peer comparison's second half: both systems trained alike, then sampled and judged.

Each writes 240-token continuations of the same held-out 16-character contexts with its
threshold sampler (peer: its confidence decoding, tau 0.9; dlm: threshold 0.9 in blocks
of 32 with the dual cache). Quality is judged by one character-level model for both
(`CharNgram`), since the two tokenizations differ; the characters' entropy is reported
beside it.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from dlm.bench.generation import last_step
from dlm.bench.report import renders
from dlm.config import SampleConfig
from dlm.sampling import denoise, reply_canvas

SAMPLE_TOKENS = 240
"""Tokens each sample writes: the peer's 256-character canvas less its 16-character
context."""


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
