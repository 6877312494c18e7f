"""Generation speed: diffusion variants against the autoregressive baseline with its KV cache.

Every cell generates exactly `length` tokens per reply (eos banned on both sides),
so tokens/s compare like for like; NFE is model calls per reply batch. Speed does
not depend on the weights, except for the threshold rule, whose number of calls
is the model's confidence: it is only measured with trained checkpoints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from dlm.bench.report import renders, timed
from dlm.config import SampleConfig
from dlm.model import Transformer
from dlm.sampling import Step, denoise, reply_canvas
from dlm.sampling.ar import ar_decode

MASK_ID, EOS_ID = 1, 3


@dataclass
class Variant:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    """SampleConfig fields; `steps` given as tokens per step under the key `per_step`."""
    needs_trained: bool = False


def diffusion_variants(block: int, per_step: int) -> list[Variant]:
    fixed = {"per_step": per_step}
    blocks = {**fixed, "block_length": block}
    return [
        Variant(f"whole canvas, {per_step} tok/step", fixed),
        Variant(f"blocks of {block}, {per_step} tok/step", blocks),
        Variant(f"blocks of {block} + prefix cache", {**blocks, "cache": "prefix"}),
        Variant(f"blocks of {block} + dual cache", {**blocks, "cache": "dual"}),
        Variant(f"blocks of {block} + dual cache, threshold 0.9",
                {"per_step": 1, "block_length": block, "cache": "dual", "rule": "threshold",
                 "threshold": 0.9}, needs_trained=True),
    ]


def sample_config(variant: Variant, length: int) -> SampleConfig:
    settings = dict(variant.settings)
    per_step = settings.pop("per_step")
    if "block_length" in settings:
        settings["block_length"] = min(settings["block_length"], length)
    return SampleConfig(length=length, steps=max(1, length // per_step), eos="ban",
                        **settings)


def last_step(steps: Iterator[Step]) -> Step:
    """Run a sampler to its end; its final state."""
    return deque(steps, maxlen=1)[0]


def _diffusion(model: Transformer, prompt: torch.Tensor, config: SampleConfig) -> int:
    canvas = reply_canvas(prompt, None, config.length, MASK_ID, EOS_ID)
    last = last_step(denoise(model, canvas, config))
    assert not bool((last.tokens == MASK_ID).any())
    return last.nfe


def _ar(model: Transformer, prompt: torch.Tensor, length: int) -> int:
    config = SampleConfig(length=length, eos="ban")
    return last_step(ar_decode(model, prompt, None, config, MASK_ID, EOS_ID)).nfe


def bench_generation(diffusion: Transformer, ar: Transformer, device: torch.device,
                     lengths: list[int], batches: list[int], prompt_len: int = 16,
                     block: int = 32, per_step: int = 4, repeats: int = 3,
                     budget_s: float = 30.0, bf16: bool = False, trained: bool = False,
                     say=lambda text: None) -> list[dict[str, Any]]:
    """One row per (length, batch, variant), AR first; `ratio` is tokens/s over AR's."""
    diffusion.eval()
    ar.eval()
    limit = min(diffusion.config.max_seq_len, ar.config.max_seq_len)
    variants = [v for v in diffusion_variants(block, per_step) if trained or not v.needs_trained]
    rows = []
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        # warm-up of every path at the smallest size (allocator, kernels)
        small = torch.randint(6, diffusion.config.vocab_size, (1, prompt_len), generator=g)
        _ar(ar, small.to(device), 8)
        for v in variants:
            _diffusion(diffusion, small.to(device), sample_config(v, min(8, block)))
        for length in lengths:
            if prompt_len + length > limit:
                say(f"length {length}: skipped, prompt + reply exceed {limit} positions")
                continue
            for batch in batches:
                prompt = torch.randint(6, diffusion.config.vocab_size, (batch, prompt_len),
                                       generator=g).to(device)
                s, nfe = timed(lambda p=prompt, n=length: _ar(ar, p, n), device, repeats,
                               budget_s)
                ar_tps = batch * length / s["median"]
                base = {"what": "generation", "length": length, "batch": batch,
                        "prompt_len": prompt_len}
                rows.append({**base, "variant": "AR + KV cache", "nfe": nfe, "latency_s": s,
                             "tokens_per_s": ar_tps, "ratio": 1.0})
                say(f"length {length}, batch {batch}: AR {ar_tps:,.0f} tok/s")
                for v in variants:
                    config = sample_config(v, length)
                    s, nfe = timed(lambda c=config, p=prompt: _diffusion(diffusion, p, c), device,
                                   repeats, budget_s)
                    tps = batch * length / s["median"]
                    rows.append({**base, "variant": v.name, "nfe": nfe, "latency_s": s,
                                 "tokens_per_s": tps, "ratio": tps / ar_tps,
                                 "config": vars(config)})
                    say(f"  {v.name}: {tps:,.0f} tok/s ({tps / ar_tps:.2f}× AR), NFE {nfe}")
    return rows


@renders("generation")
def generation_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## Generation: diffusion vs AR with its KV cache", "",
             "Each reply is exactly `length` tokens (eos banned); latency is one call "
             "for the whole batch; ratio = tokens/s over AR's in the same cell.", "",
             "| length | batch | sampler | NFE | latency (median, p10–p90) | tokens/s | "
             "× AR |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["latency_s"]
        lines.append(
            f"| {r['length']} | {r['batch']} | {r['variant']} | {r['nfe']} | "
            f"{s['median']:.3f} s ({s['p10']:.3f}–{s['p90']:.3f}) | "
            f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} |")
    return lines
