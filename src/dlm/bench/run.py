"""`dlm bench`: training and generation figures of one process, in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlm.bench.accuracy import bf16_accuracy
from dlm.bench.generation import Judge, Prompt, Vocab, bench_generation
from dlm.bench.report import BenchReport, run_meta
from dlm.bench.training import preset_training
from dlm.config import BenchConfig, TrainConfig, model_preset
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
    vocab = TrainConfig.vocab_size  # what a model trained with the defaults would have
    models = [Transformer(model_preset(preset, vocab_size=vocab, max_seq_len=max_len,
                                       causal=causal)).to(device).eval()
              for causal in (False, True)]
    return (models[0], models[1], f"fresh `{preset}` models ({vocab:,} vocabulary)", None,
            Vocab(), None)


def judged_perplexity(path: str | Path, histories: list, tok, device: torch.device) -> Judge:
    """Replies (B, L) to the first B `histories` -> their perplexity under the AR judge at
    `path` (each reply with its closing eos, as `dlm eval` scores replies)."""
    import math

    from dlm.evaluation.judge import load_judge
    from dlm.evaluation.quality import judge_nll

    judge = load_judge(path, str(device))

    def judged(ids: torch.Tensor) -> float:
        replies = [tok.decode_response(row) for row in ids.tolist()]
        nll, count = judge_nll(judge, histories[: len(replies)], replies)
        return math.exp(min(nll / max(count, 1), 50))
    return judged


def run_bench(config: BenchConfig, device: torch.device, say=lambda text: None
              ) -> BenchReport:
    """`dlm bench`: the figures `config` asks for, on `device`. The training loader
    (`loader`), a load test of the server (`serve`) or the peer project side by side
    (`peer`) instead, when one is set; else the training and generation figures
    (`model_bench`)."""
    if config.loader is not None:
        import tempfile

        from dlm.bench.loader import run_loader_bench

        out = Path(config.out_dir)
        with tempfile.TemporaryDirectory(prefix="dlm-loader-", dir=out.parent) as work:
            return run_loader_bench(Path(config.loader), config.loader_tokens, Path(work),
                                    config.batch_size)
    if config.serve:
        from dlm.bench.serving import run_serve_bench

        return run_serve_bench([Path(p) for p in config.serve], device,
                               config.serve_requests, max_batch=config.serve_max_batch,
                               say=say)
    if config.peer is not None:
        from dlm.bench.peer import run_peer_bench

        return run_peer_bench(Path(config.peer), device,
                              Path(config.peer_text) if config.peer_text else None,
                              repeats=config.repeats, train_minutes=config.peer_minutes,
                              train_steps=config.peer_steps, say=say)
    return model_bench(config, device, say)


def model_bench(config: BenchConfig, device: torch.device, say=lambda text: None
                ) -> BenchReport:
    """Training figures per preset, generation speed of diffusion against AR, and the
    tables `config` adds (speculative, self-speculative, bf16 accuracy)."""
    c = config
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    meta: dict[str, Any] = {"dtype": "bf16 autocast" if c.bf16 else "float32"}
    lengths = c.length
    batches = c.batch or ([1, 64] if device.type == "cuda" else [1, 8])
    presets = [] if c.preset == ["none"] else c.preset
    if presets:
        rows, peak, source = preset_training(presets, device, c.batch_size, c.seq_len,
                                             c.bf16, c.activation_checkpointing)
        results += rows
        meta.update(matmul_peak_flops=peak, peak_source=source)
        for r in rows:
            say(f"training {r['preset']}: {r['tokens_per_s']:,.0f} tok/s, MFU {r['mfu']:.1%}")
    if c.generate != "none":
        prompt_len = 16
        diffusion, ar, label, prompts, vocab, judged = bench_models(
            c.generate or "small", prompt_len + max(lengths), c.ckpt, c.ar_ckpt, device,
            max(batches), c.judge)
        meta["generation_models"] = label
        if c.judge is not None:
            meta["judge"] = c.judge
        results += bench_generation(diffusion, ar, device, lengths, batches, prompt_len,
                                    bf16=c.bf16, prompts=prompts, vocab=vocab,
                                    repeats=c.repeats, say=say, judge=judged)
        if c.ckpt is None:
            notes.append("Threshold decoding is left out: with fresh weights its number of "
                         "calls means nothing (pass trained --ckpt and --ar-ckpt).")
    if c.speculative:
        results += speculative_rows(c.ckpt, c.ar_ckpt, device, lengths, batches,
                                    c.speculative, c.draft_steps, c.repeats, say,
                                    c.draft_window, c.speculative_prompts,
                                    c.speculative_dtype, c.draft_cache)
        meta["speculative_models"] = (f"{c.ckpt} drafts, {c.ar_ckpt} verifies, both in "
                                      f"{c.speculative_dtype}")
    if c.self_speculative:
        results += self_speculative_rows(c.ckpt, device, lengths, batches, c.repeats, say,
                                         c.speculative_prompts, c.speculative_dtype)
        meta["self_speculative_model"] = (f"{c.ckpt} (dual) drafts and verifies itself, in "
                                          f"{c.speculative_dtype}")
    for ckpt_path in c.accuracy:
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
