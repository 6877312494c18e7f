"""Generation speed: diffusion variants against the autoregressive baseline with its KV cache.

Every cell generates exactly `length` tokens per reply (eos banned on both sides),
so tokens/s compare like for like; NFE is model calls per reply batch. Speed does
not depend on the weights, except for the threshold rule, whose number of calls
is the model's confidence: it is only measured with trained checkpoints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from dlm.bench.report import renders, timed
from dlm.config import SampleConfig
from dlm.model import Transformer
from dlm.sampling import Step, denoise, reply_canvas
from dlm.sampling.ar import ar_decode
from dlm.sampling.block import block_decode

MASK_ID, EOS_ID = 1, 3


@dataclass
class Variant:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    """SampleConfig fields; `steps` given as tokens per step under the key `per_step`."""
    needs_trained: bool = False
    bd3_block: int = 0
    """Block diffusion's sampler with this block size and its exact KV cache (its speed;
    its quality needs a model trained with --objective block, so fresh models only)."""


def diffusion_variants(block: int, per_step: int, bd3_block: int = 16) -> list[Variant]:
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
        Variant(f"BD3-LM sampler, blocks of {bd3_block} + exact KV cache, {per_step} tok/step",
                fixed, bd3_block=bd3_block),
    ]


def sample_config(variant: Variant, length: int, eos: str = "ban") -> SampleConfig:
    settings = dict(variant.settings)
    per_step = settings.pop("per_step")
    if "block_length" in settings:
        settings["block_length"] = min(settings["block_length"], length)
    return SampleConfig(length=length, steps=max(1, length // per_step), eos=eos,
                        **settings)


def last_step(steps: Iterator[Step]) -> Step:
    """Run a sampler to its end; its final state."""
    return deque(steps, maxlen=1)[0]


Prompt = tuple[torch.Tensor, torch.Tensor | None]
"""Left-padded prompt ids (B, P) and their key padding (None: no padding)."""


@dataclass
class Vocab:
    """The ids the samplers need: the tokenizer's for trained models."""

    mask_id: int = 1
    eos_id: int = 3
    banned: tuple[int, ...] = ()


def reply_tokens(tokens: torch.Tensor, eos_id: int) -> int:
    """Tokens before each row's first eos, summed over rows: what a user gets."""
    before_eos = (tokens == eos_id).int().cumsum(1) == 0
    return int(before_eos.sum())


def _diffusion(model: Transformer, prompt: Prompt, config: SampleConfig,
               vocab: Vocab, bd3_block: int = 0) -> tuple[int, int, torch.Tensor]:
    if bd3_block:
        last = last_step(block_decode(model, *prompt, config, bd3_block, vocab.mask_id,
                                      vocab.eos_id, banned=vocab.banned))
        return last.nfe, reply_tokens(last.tokens, vocab.eos_id), last.tokens
    canvas = reply_canvas(*prompt, config.length, vocab.mask_id, vocab.eos_id, vocab.banned)
    last = last_step(denoise(model, canvas, config))
    reply = last.tokens[:, canvas.start :]
    assert not bool((reply == vocab.mask_id).any())
    return last.nfe, reply_tokens(reply, vocab.eos_id), reply


def _ar(model: Transformer, prompt: Prompt, length: int, eos: str,
        vocab: Vocab) -> tuple[int, int, torch.Tensor]:
    config = SampleConfig(length=length, eos=eos)
    last = last_step(ar_decode(model, *prompt, config, vocab.mask_id, vocab.eos_id))
    return last.nfe, reply_tokens(last.tokens, vocab.eos_id), last.tokens


Judge = Callable[[torch.Tensor], float]
"""Replies (B, L) to the first B held-out prompts -> their judged perplexity."""


def bench_generation(diffusion: Transformer, ar: Transformer, device: torch.device,
                     lengths: list[int], batches: list[int], prompt_len: int = 16,
                     block: int = 32, per_step: int = 4, repeats: int = 3,
                     budget_s: float = 30.0, bf16: bool = False, prompts: Prompt | None = None,
                     vocab: Vocab | None = None, say=lambda text: None,
                     judge: Judge | None = None) -> list[dict[str, Any]]:
    """One row per (length, batch, variant), AR first; `ratio` is tokens/s over AR's.

    Without `prompts` (fresh models): random prompt tokens, eos banned, so every reply is
    exactly `length` tokens. With real prompts (trained models, at least max(batches)
    rows, and their tokenizer's `vocab`): replies end where the model puts eos (AR stops
    there; diffusion defers eos, fills its canvas), tokens/s counts the reply tokens
    before eos, and threshold decoding is measured too. With `judge`, each row has the
    judged perplexity of its replies: speed at a stated quality.
    """
    diffusion.eval()
    ar.eval()
    limit = min(diffusion.config.max_seq_len, ar.config.max_seq_len)
    trained = prompts is not None
    vocab = vocab or Vocab()
    eos, ar_eos = ("defer", "allow") if trained else ("ban", "ban")
    variants = [v for v in diffusion_variants(block, per_step)
                if (v.needs_trained == trained or not v.needs_trained)
                and not (trained and v.bd3_block)]
    rows = []
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        # warm-up of every path at the smallest size (allocator, kernels)
        small = (torch.randint(6, diffusion.config.vocab_size, (1, prompt_len), generator=g)
                 .to(device), None)
        _ar(ar, small, 8, ar_eos, vocab)
        for v in variants:
            _diffusion(diffusion, small, sample_config(v, min(8, block), eos), vocab,
                       min(v.bd3_block, 8))
        for length in lengths:
            if (prompt_len if prompts is None else prompts[0].shape[1]) + length > limit:
                say(f"length {length}: skipped, prompt + reply exceed {limit} positions")
                continue
            for batch in batches:
                if prompts is None:
                    prompt: Prompt = (torch.randint(6, diffusion.config.vocab_size,
                                                    (batch, prompt_len), generator=g).to(device),
                                      None)
                else:
                    ids, padding = prompts
                    prompt = (ids[:batch], None if padding is None else padding[:batch])
                s, (nfe, made, ids) = timed(lambda p=prompt, n=length: _ar(ar, p, n, ar_eos,
                                                                        vocab),
                                            device, repeats, budget_s)
                ar_tps = made / s["median"]
                judged = {} if judge is None else {"judged_ppl": judge(ids)}
                base = {"what": "generation", "length": length, "batch": batch,
                        "prompt_len": prompt[0].shape[1], "prompts": "random tokens"
                        if prompts is None else "held-out validation prompts"}
                rows.append({**base, "variant": "AR + KV cache", "nfe": nfe, "latency_s": s,
                             "reply_tokens": made, "tokens_per_s": ar_tps, "ratio": 1.0,
                             **judged})
                say(f"length {length}, batch {batch}: AR {ar_tps:,.0f} tok/s")
                for v in variants:
                    config = sample_config(v, length, eos)
                    s, (nfe, made, ids) = timed(
                        lambda c=config, p=prompt, b=min(v.bd3_block, length): _diffusion(
                            diffusion, p, c, vocab, b), device, repeats, budget_s)
                    tps = made / s["median"]
                    judged = {} if judge is None else {"judged_ppl": judge(ids)}
                    rows.append({**base, "variant": v.name, "nfe": nfe, "latency_s": s,
                                 "reply_tokens": made, "tokens_per_s": tps,
                                 "ratio": tps / ar_tps,
                                 "config": vars(config), **judged})
                    say(f"  {v.name}: {tps:,.0f} tok/s ({tps / ar_tps:.2f}× AR), NFE {nfe}")
    return rows


@renders("generation")
def generation_table(results: list[dict[str, Any]]) -> list[str]:
    trained = results[0].get("prompts") == "held-out validation prompts"
    what = ("Held-out prompts; replies end at the model's eos (AR stops there, diffusion "
            "defers it and fills its canvas); tokens/s counts reply tokens before eos."
            if trained else "Random prompts; each reply is exactly `length` tokens (eos "
            "banned).")
    lines = ["## Generation: diffusion vs AR with its KV cache", "",
             f"{what} Latency is one call for the whole batch; × AR = tokens/s over AR's "
             "in the same cell.", "",
             "| length | batch | sampler | NFE | latency (median, p10–p90) | reply tokens | "
             "tokens/s | × AR | judged PPL |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["latency_s"]
        judged = f"{r['judged_ppl']:.1f}" if "judged_ppl" in r else "–"
        lines.append(
            f"| {r['length']} | {r['batch']} | {r['variant']} | {r['nfe']} | "
            f"{s['median']:.3f} s ({s['p10']:.3f}–{s['p90']:.3f}) | {r['reply_tokens']} | "
            f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} | {judged} |")
    if any("judged_ppl" in r for r in results):
        lines += ["", "Judged PPL: the perplexity of each sampler's replies under a separately "
                  "trained AR judge (`--judge`), beside its speed: a faster sampler is only "
                  "a win at a judged PPL near AR's."]
    return lines
