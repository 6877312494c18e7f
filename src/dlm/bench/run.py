"""`dlm bench`: training and generation figures of one process, in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlm.bench.accuracy import bf16_accuracy
from dlm.bench.generation import Judge, Prompt, Vocab, bench_generation
from dlm.bench.report import BenchReport, run_meta
from dlm.bench.training import preset_training
from dlm.config import model_preset
from dlm.errors import ConfigError
from dlm.model import Transformer


def bench_models(preset: str, max_len: int, ckpt: str | Path | None,
                 ar_ckpt: str | Path | None, device: torch.device, n_prompts: int,
                 judge: str | Path | None = None,
                 ) -> tuple[Transformer, Transformer, str, Prompt | None, Vocab, Judge | None]:
    """The diffusion and AR models to generate with: trained checkpoints (and held-out
    prompts of their data) when given, else fresh ones of `preset` (speed does not depend
    on the weights) and random prompts. With trained checkpoints and a `judge` checkpoint,
    also the judged perplexity of replies to those prompts."""
    if (ckpt is None) != (ar_ckpt is None):
        raise ConfigError("give both --ckpt (diffusion) and --ar-ckpt (its AR baseline), "
                          "or neither")
    if ckpt is not None:
        from dlm.evaluation.report import held_out
        from dlm.pipeline import DiffusionLM

        lm, ar = DiffusionLM.load(ckpt, str(device)), DiffusionLM.load(ar_ckpt, str(device))
        _, histories, _, _ = held_out(lm, None, n_prompts)
        if len(histories) < n_prompts:
            raise ConfigError(f"{ckpt}: {len(histories)} held-out prompts, "
                              f"{n_prompts} needed for the largest batch")
        tok = lm.tokenizer
        return (lm.model.eval(), ar.model.eval(), f"{ckpt} vs {ar_ckpt}",
                lm._prompt_batch(histories[:n_prompts]),
                Vocab(tok.mask_id, tok.eos_id, tok.never_generated),
                None if judge is None else judged_perplexity(judge, histories, tok, device))
    if judge is not None:
        raise ConfigError("--judge scores replies to held-out prompts: pass trained --ckpt "
                          "and --ar-ckpt too")
    torch.manual_seed(0)
    models = [Transformer(model_preset(preset, vocab_size=8192, max_seq_len=max_len,
                                       causal=causal)).to(device).eval()
              for causal in (False, True)]
    return (models[0], models[1], f"fresh `{preset}` models (8,192 vocabulary)", None, Vocab(),
            None)


def judged_perplexity(path: str | Path, histories: list, tok, device: torch.device) -> Judge:
    """Replies (B, L) to the first B `histories` -> their perplexity under the AR judge at
    `path` (each reply with its closing eos, as `dlm eval` scores replies)."""
    import math

    from dlm.evaluation.quality import judge_nll, load_judge

    judge = load_judge(path, str(device))

    def judged(ids: torch.Tensor) -> float:
        replies = [tok.decode_response(row) for row in ids.tolist()]
        nll, count = judge_nll(judge, histories[: len(replies)], replies)
        return math.exp(min(nll / max(count, 1), 50))
    return judged


def run_bench(device: torch.device, train_presets: list[str], generate_preset: str | None,
              lengths: list[int], batches: list[int], ckpt: str | None = None,
              ar_ckpt: str | None = None, train_batch: int = 8, seq_len: int = 256,
              bf16: bool = False, checkpointing: bool = False, repeats: int = 3,
              accuracy: list[str] | None = None, say=lambda text: None,
              speculative: list[int] | None = None,
              draft_steps: list[int] | None = None, judge: str | None = None,
              draft_windows: list[int] | None = None,
              speculative_prompts: int | None = None,
              speculative_dtype: str = "float32",
              draft_caches: list[str] | None = None,
              self_speculative: bool = False) -> BenchReport:
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    meta: dict[str, Any] = {"dtype": "bf16 autocast" if bf16 else "float32"}
    if train_presets:
        rows, peak, source = preset_training(train_presets, device, train_batch, seq_len,
                                             bf16, checkpointing)
        results += rows
        meta.update(matmul_peak_flops=peak, peak_source=source)
        for r in rows:
            say(f"training {r['preset']}: {r['tokens_per_s']:,.0f} tok/s, MFU {r['mfu']:.1%}")
    if generate_preset is not None:
        prompt_len = 16
        diffusion, ar, label, prompts, vocab, judged = bench_models(
            generate_preset or "small", prompt_len + max(lengths), ckpt, ar_ckpt, device,
            max(batches), judge)
        meta["generation_models"] = label
        if judge is not None:
            meta["judge"] = judge
        results += bench_generation(diffusion, ar, device, lengths, batches, prompt_len,
                                    bf16=bf16, prompts=prompts, vocab=vocab, repeats=repeats,
                                    say=say, judge=judged)
        if ckpt is None:
            notes.append("Threshold decoding is left out: with fresh weights its number of "
                         "calls means nothing (pass trained --ckpt and --ar-ckpt).")
    if speculative:
        results += speculative_rows(ckpt, ar_ckpt, device, lengths, batches, speculative,
                                    draft_steps or [1], repeats, say, draft_windows,
                                    speculative_prompts, speculative_dtype, draft_caches)
        meta["speculative_models"] = (f"{ckpt} drafts, {ar_ckpt} verifies, both in "
                                      f"{speculative_dtype}")
    if self_speculative:
        results += self_speculative_rows(ckpt, device, lengths, batches, repeats, say,
                                         speculative_prompts, speculative_dtype)
        meta["self_speculative_model"] = (f"{ckpt} (dual) drafts and verifies itself, in "
                                          f"{speculative_dtype}")
    for ckpt_path in accuracy or []:
        results.append(bf16_accuracy(ckpt_path, device))
        say(f"bf16 accuracy of {ckpt_path}: {results[-1]['relative_difference']:+.2%}")
    meta["notes"] = notes
    return BenchReport(results, run_meta(device, **meta))


def speculative_rows(ckpt: str | None, ar_ckpt: str | None, device: torch.device,
                     lengths: list[int], batches: list[int], ks: list[int],
                     draft_steps: list[int], repeats: int, say,
                     windows: list[int] | None = None, prompts: int | None = None,
                     dtype: str = "float32",
                     caches: list[str] | None = None) -> list[dict[str, Any]]:
    """The speculative table: trained --ckpt drafting for trained --ar-ckpt, both with
    weights in `dtype` (AR decoding, the reference, too)."""
    from dlm.bench.speculative import bench_speculative
    from dlm.evaluation.report import held_out
    from dlm.pipeline import DiffusionLM

    if ckpt is None or ar_ckpt is None:
        raise ConfigError("--speculative needs trained --ckpt (the drafter) and --ar-ckpt "
                          "(the verifier), trained on one tokenizer")
    lm = DiffusionLM.load(ckpt, str(device), dtype=dtype)
    ar = DiffusionLM.load(ar_ckpt, str(device), dtype=dtype)
    _, histories, _, _ = held_out(lm, None, prompts or max(batches))
    # the AR baseline at its other precision too (from the file: a cast back is lossy)
    float32_ar = DiffusionLM.load(ar_ckpt, str(device)) if ar.dtype != torch.float32 else None
    rows = bench_speculative(lm, ar, histories, device, lengths, batches, ks, draft_steps,
                             repeats, say=say, windows=windows, caches=caches,
                             float32_ar=float32_ar)
    return [{**r, "dtype": dtype} for r in rows]


def self_speculative_rows(ckpt: str | None, device: torch.device, lengths: list[int],
                          batches: list[int], repeats: int, say, prompts: int | None = None,
                          dtype: str = "float32") -> list[dict[str, Any]]:
    """The speculative table of a dual --ckpt decoding itself, against AR decoding of its
    own AR half (the reference), both with weights in `dtype`."""
    from dlm.bench.speculative import bench_self_speculative
    from dlm.evaluation.report import held_out
    from dlm.pipeline import DiffusionLM

    if ckpt is None:
        raise ConfigError("--self-speculative needs a trained dual --ckpt (--objective dual)")
    lm = DiffusionLM.load(ckpt, str(device), dtype=dtype)
    if not lm.objective.drafts_itself:
        raise ConfigError(f"--self-speculative: {ckpt} is a {lm.objective.name} checkpoint; "
                          "only a dual one (--objective dual) drafts and verifies itself")
    _, histories, _, _ = held_out(lm, None, prompts or max(batches))
    float32_lm = DiffusionLM.load(ckpt, str(device)) if lm.dtype != torch.float32 else None
    rows = bench_self_speculative(lm, histories, device, lengths, batches, repeats, say=say,
                                  float32_lm=float32_lm)
    return [{**r, "dtype": dtype} for r in rows]
