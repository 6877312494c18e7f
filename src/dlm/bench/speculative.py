"""Speculative decoding against AR decoding with its KV cache, at identical output.

The verifier's greedy reply is the reference; speculative decoding (the diffusion model
drafting, the verifier keeping what it agrees with) must give the same ids, so the speed
comes at no cost in quality, and the table says per cell whether every reply matched.
Per cell: tokens/s and its ratio to AR's, the verifier's calls per reply token (AR: 1),
the drafter's calls, the share of drafted tokens kept and the mean kept per round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dlm.bench.generation import reply_tokens
from dlm.bench.report import renders, timed
from dlm.config import SampleConfig
from dlm.sampling import Step


@dataclass
class Rounds:
    """Draft statistics of one speculative call, read from its steps."""

    drafted: int = 0
    kept: int = 0
    rounds: int = 0  # (row, round) pairs
    verifier_calls: int = 0
    nfe: int = 0
    _last_drafted: torch.Tensor | None = None

    def add(self, step: Step) -> None:
        if step.drafted is not None:
            self._last_drafted = step.drafted.sum(1)
            return
        if step.rejected is None or self._last_drafted is None:
            return
        drafted = self._last_drafted
        committed = step.newly_committed.sum(1)
        refused = step.rejected.any(1)
        # a refusal commits the kept drafts and the correction; else all drafts (and the
        # free token, unless the reply ended)
        kept = torch.where(refused, committed - 1, torch.minimum(committed, drafted))
        active = drafted > 0
        self.drafted += int(drafted[active].sum())
        self.kept += int(kept[active].sum())
        self.rounds += int(active.sum())
        self.verifier_calls, self.nfe = step.verifier_calls, step.nfe


def speculative_settings(ks: list[int], draft_steps: list[int],
                         windows: list[int] | None = None,
                         caches: list[str] | None = None) -> list[tuple[str, dict]]:
    """(label, SampleConfig fields) of each speculative variant: fixed k at each draft
    step count, and adaptive k from the smallest, at each draft window (0: the whole
    canvas) and each drafter cache (none, or prefix: the committed prefix's keys kept
    across rounds)."""
    out = []
    for cache in caches or ["none"]:
        for w in windows or [0]:
            seen = (f", window {w}" if w else "") + (f", {cache} cache" if cache != "none"
                                                       else "")
            common = {"draft_window": w, "cache": cache}
            out += [(f"k = {k}, {d} draft step{'s' if d > 1 else ''}{seen}",
                     {"draft_length": k, "draft_steps": d, "adaptive_draft": False,
                      "max_draft_length": max(k, 16), **common})
                    for d in draft_steps for k in ks]
            out.append((f"adaptive k (from {min(ks)}, up to 16), 1 draft step{seen}",
                        {"draft_length": min(ks), "draft_steps": 1, "adaptive_draft": True,
                         "max_draft_length": 16, **common}))
    return out


def timed_groups(fn, groups: list, device: torch.device, repeats: int, budget_s: float
                 ) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Time `fn` on each group of chats; the spread is of the groups' summed medians."""
    total, spreads, results = 0.0, [], []
    for chats in groups:
        s, ids = timed(lambda c=chats: fn(c), device, repeats, budget_s / len(groups))
        total += s["median"]
        spreads.append(s)
        results.append(ids)
    return {"median": total, "p10": sum(s["p10"] for s in spreads),
            "p90": sum(s["p90"] for s in spreads)}, results


def bench_speculative(lm, verifier, histories: list, device: torch.device, lengths: list[int],
                      batches: list[int], ks: list[int], draft_steps: list[int],
                      repeats: int = 3, budget_s: float = 30.0, say=lambda text: None,
                      windows: list[int] | None = None,
                      caches: list[str] | None = None,
                      float32_ar=None) -> list[dict[str, Any]]:
    """One row per (length, batch, variant), AR first. `lm` drafts (a DiffusionLM with
    full attention), `verifier` is the AR DiffusionLM; greedy replies to `histories`.
    Every cell replies to all of `histories`, in groups of its batch, so batch 1 is
    measured on each of them alone. `float32_ar`: the verifier in float32 when the pair
    runs in bfloat16, timed too, so that each ratio is also given against the faster of
    the two AR decodings (`ratio_best_ar`)."""
    lm.with_verifier(verifier)
    variants = [(label, {"decode": "speculative", **fields})
                for label, fields in speculative_settings(ks, draft_steps, windows, caches)]
    limit = min(lm.model.config.max_seq_len, verifier.model.config.max_seq_len)
    return against_ar(lm, verifier.reply_ids, variants, histories, device, lengths, batches,
                      repeats, budget_s, say, limit,
                      None if float32_ar is None else float32_ar.reply_ids)


def bench_self_speculative(lm, histories: list, device: torch.device, lengths: list[int],
                           batches: list[int], repeats: int = 3, budget_s: float = 30.0,
                           say=lambda text: None, float32_lm=None) -> list[dict[str, Any]]:
    """The same table for a dual model (`--objective dual`) drafting and verifying itself
    (its default decoding), against AR decoding of its own AR half: greedy replies must
    be identical. `float32_lm`: the model in float32 when `lm` is bfloat16."""
    variants = [(f"self-speculative, blocks of {lm.block_size}", {})]
    return against_ar(lm, lambda c, a, s=None: causal_reply_ids(lm, c, a, s), variants,
                      histories, device, lengths, batches, repeats, budget_s, say,
                      lm.model.config.max_seq_len,
                      None if float32_lm is None else
                      lambda c, a, s=None: causal_reply_ids(float32_lm, c, a, s),
                      what="self_speculative")


def causal_reply_ids(lm, histories: list, config: SampleConfig, on_step=None) -> torch.Tensor:
    """A dual model's replies by AR decoding of its AR half (its causal reading)."""
    from dlm.sampling.ar import ar_decode
    from dlm.sampling.dual import CausalView
    from dlm.sampling.sampler import final_tokens

    prompt, padding = lm._prompt_batch(histories)
    tok = lm.tokenizer
    with torch.inference_mode():
        return final_tokens(ar_decode(CausalView(lm.model), prompt, padding, config,
                                      tok.mask_id, tok.eos_id), on_step)


def against_ar(lm, ar_reply, variants: list[tuple[str, dict]], histories: list,
               device: torch.device, lengths: list[int], batches: list[int], repeats: int,
               budget_s: float, say, limit: int, float32_ar_reply=None,
               what: str = "speculative") -> list[dict[str, Any]]:
    """Time AR decoding (`ar_reply(chats, config, on_step=None)`, the reference) and each
    variant (`lm.reply_ids` with those SampleConfig fields) on the same prompts; count
    every variant's AR calls, drafts kept and identical replies. Rows are of kind
    `what` (the table they render in)."""
    eos = lm.tokenizer.eos_id
    chats_all = list(histories)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        ar_reply(histories[:1], SampleConfig(length=8))  # warm-up
        for _, fields in variants[:1]:
            lm.reply_ids(histories[:1], SampleConfig(length=8, **fields))
        for length in lengths:
            width = lm._prompt_batch(chats_all)[0].shape[1]
            if width + length > limit:
                say(f"length {length}: skipped, prompt ({width}) + reply exceed {limit} "
                    "positions")
                continue
            for batch in batches:
                groups = [chats_all[i : i + batch] for i in range(0, len(chats_all), batch)]
                ar_config = SampleConfig(length=length)
                s, reference = timed_groups(lambda c, a=ar_config: ar_reply(c, a),
                                            groups, device, repeats, budget_s)
                made = sum(reply_tokens(ids, eos) for ids in reference)
                ar_tps = made / s["median"]
                ar_calls = ar_forwards(ar_reply, groups, ar_config)
                base = {"what": what, "length": length, "batch": batch,
                        "prompts": len(chats_all), "prompt_len": width}
                ar_row = {**base, "variant": "AR + KV cache", "latency_s": s,
                          "reply_tokens": made, "tokens_per_s": ar_tps, "ratio": 1.0,
                          "verifier_calls_per_token": ar_calls / made,
                          "identical": len(chats_all)}
                rows.append(ar_row)
                say(f"length {length}, batch {batch}: AR {ar_tps:,.0f} tok/s")
                best_ar = ar_tps
                if float32_ar_reply is not None:
                    s, replies = timed_groups(
                        lambda c, a=ar_config: float32_ar_reply(c, a), groups, device,
                        repeats, budget_s)
                    tps = sum(reply_tokens(ids, eos) for ids in replies) / s["median"]
                    best_ar = max(ar_tps, tps)
                    rows.append({**base, "variant": "AR + KV cache, float32 weights",
                                 "latency_s": s, "reply_tokens": made, "tokens_per_s": tps,
                                 "ratio": tps / ar_tps, "ratio_best_ar": tps / best_ar,
                                 "verifier_calls_per_token": ar_calls / made,
                                 "identical": identical_count(replies, reference)})
                    say(f"  AR in float32: {tps:,.0f} tok/s")
                ar_row["ratio_best_ar"] = ar_tps / best_ar
                for label, fields in variants:
                    config = SampleConfig(length=length, **fields)
                    s, replies = timed_groups(lambda c, g=config: lm.reply_ids(c, g), groups,
                                              device, repeats, budget_s)
                    calls, drafter_calls, drafted, kept, rounds = counted_rounds(
                        lm, groups, config)
                    made = sum(reply_tokens(ids, eos) for ids in replies)
                    tps = made / s["median"]
                    identical = identical_count(replies, reference)
                    rows.append({**base, "variant": label, "config": vars(config),
                                 "latency_s": s, "reply_tokens": made, "tokens_per_s": tps,
                                 "ratio": tps / ar_tps, "ratio_best_ar": tps / best_ar,
                                 "verifier_calls_per_token": calls / made,
                                 "drafter_calls": drafter_calls,
                                 "acceptance": kept / max(drafted, 1),
                                 "kept_per_round": kept / max(rounds, 1),
                                 "identical": identical})
                    say(f"  {label}: {tps:,.0f} tok/s ({tps / ar_tps:.2f}× AR), kept "
                        f"{kept / max(drafted, 1):.0%}, identical "
                        f"{identical}/{len(chats_all)}")
    return rows


def ar_forwards(ar_reply, groups: list, config: SampleConfig) -> int:
    """AR decoding's forwards over the groups of chats, counted per row (every row waits
    for its batch)."""
    calls = 0
    for chats in groups:
        last: list[Step] = []
        ar_reply(chats, config, last.append)
        calls += last[-1].nfe * len(chats)  # every row waits for the batch
    return calls


def counted_rounds(lm, groups: list, config: SampleConfig) -> tuple[int, int, int, int, int]:
    """Speculative decoding of the groups of chats once more, counted: the verifier's
    calls per row (every row waits for its batch), the drafter's calls, the tokens
    drafted and kept, and the (row, round) pairs."""
    calls = drafter_calls = drafted = kept = rounds = 0
    for chats in groups:
        stats = Rounds()
        lm.reply_ids(chats, config, stats.add)
        calls += stats.verifier_calls * len(chats)
        drafter_calls += stats.nfe - stats.verifier_calls
        drafted, kept = drafted + stats.drafted, kept + stats.kept
        rounds += stats.rounds
    return calls, drafter_calls, drafted, kept, rounds


def identical_count(replies: list[torch.Tensor], reference: list[torch.Tensor]) -> int:
    """Rows whose ids equal the reference's, over groups of rows."""
    return sum(bool(torch.equal(a, b)) for got, want in zip(replies, reference, strict=True)
               for a, b in zip(got, want, strict=True))


@renders("speculative")
def speculative_table(results: list[dict[str, Any]]) -> list[str]:
    return table_of_rounds(results, dual=False)


@renders("self_speculative")
def self_speculative_table(results: list[dict[str, Any]]) -> list[str]:
    return table_of_rounds(results, dual=True)


def table_of_rounds(results: list[dict[str, Any]], dual: bool) -> list[str]:
    """Speculative rows against their AR reference: a drafter and a verifier, or a dual
    model drafting and verifying itself."""
    lines = ["## Self-speculative decoding: a dual model drafts and verifies itself "
             "(identical output)" if dual else
             "## Speculative decoding: diffusion drafts, AR verifies (identical output)", "",
             "Greedy replies to the same held-out prompts in every cell (in groups of the "
             "cell's batch; latency is the groups' summed medians); "
             + ("AR decoding of the dual model's own AR half is the reference (one forward "
                "per token), and each forward of its own decoding verifies the previous "
                "draft and drafts the next block (AR calls: its forwards; it has no "
                "separate drafter)" if dual else "the AR model's own reply is the reference")
             + ", and `identical` counts the replies whose speculative ids are the same. "
             "AR calls/token: the AR model's forwards (its prompt's included) per reply "
             "token of a row; a batch runs until its longest reply ends, so AR decoding's "
             "is above 1 when rows differ in length. Kept: the share of drafted tokens the "
             "verifier kept; per round: the mean kept per row and round. Both models' "
             f"weights (and AR decoding's) in {results[0].get('dtype', 'float32')}.", "",
             "× faster AR: against the faster of AR in these weights and AR in float32 "
             "(where both were timed).", "",
             "| length | batch | decoding | latency (sum of medians) | reply tokens | tokens/s "
             "| × AR | × faster AR "
             "| AR calls/token | drafter calls | kept | kept/round | identical |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        extra = (f"| {r['verifier_calls_per_token']:.2f} | – | – | – " if "acceptance" not in r
                 else
                 f"| {r['verifier_calls_per_token']:.2f} | {r['drafter_calls']} | "
                 f"{r['acceptance']:.0%} | {r['kept_per_round']:.2f} ")
        lines.append(f"| {r['length']} | {r['batch']} | {r['variant']} | "
                     f"{r['latency_s']['median']:.3f} s | {r['reply_tokens']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} | "
                     f"{r.get('ratio_best_ar', r['ratio']):.2f} {extra}| "
                     f"{r['identical']}/{r.get('prompts', r['batch'])} |")
    return lines
