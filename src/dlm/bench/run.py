"""`dlm bench`: training and generation figures of one process, in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlm.bench.generation import bench_generation
from dlm.bench.report import BenchReport, run_meta
from dlm.bench.training import preset_training
from dlm.config import model_preset
from dlm.model import Transformer


def bench_models(preset: str, max_len: int, ckpt: str | Path | None,
                 ar_ckpt: str | Path | None, device: torch.device,
                 ) -> tuple[Transformer, Transformer, str]:
    """The diffusion and AR models to generate with: trained checkpoints when given,
    else fresh ones of `preset` (speed does not depend on the weights)."""
    if (ckpt is None) != (ar_ckpt is None):
        from dlm.errors import ConfigError

        raise ConfigError("give both --ckpt (diffusion) and --ar-ckpt (its AR baseline), "
                          "or neither")
    if ckpt is not None:
        from dlm.checkpoint import load_checkpoint

        return (load_checkpoint(ckpt, device).model.eval(),
                load_checkpoint(ar_ckpt, device).model.eval(), f"{ckpt} vs {ar_ckpt}")
    torch.manual_seed(0)
    models = [Transformer(model_preset(preset, vocab_size=8192, max_seq_len=max_len,
                                       causal=causal)).to(device).eval()
              for causal in (False, True)]
    return models[0], models[1], f"fresh `{preset}` models (8,192 vocabulary)"


def run_bench(device: torch.device, train_presets: list[str], generate_preset: str | None,
              lengths: list[int], batches: list[int], ckpt: str | None = None,
              ar_ckpt: str | None = None, train_batch: int = 8, seq_len: int = 256,
              bf16: bool = False, checkpointing: bool = False, repeats: int = 3,
              say=lambda text: None) -> BenchReport:
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
    if generate_preset is not None or ckpt is not None:
        prompt_len = 16
        diffusion, ar, label = bench_models(generate_preset or "small",
                                            prompt_len + max(lengths), ckpt, ar_ckpt, device)
        meta["generation_models"] = label
        results += bench_generation(diffusion, ar, device, lengths, batches, prompt_len,
                                    bf16=bf16, trained=ckpt is not None, repeats=repeats,
                                    say=say)
        if ckpt is None:
            notes.append("Threshold decoding is left out: with fresh weights its number of "
                         "calls means nothing (pass trained --ckpt and --ar-ckpt).")
    meta["notes"] = notes
    return BenchReport(results, run_meta(device, **meta))
