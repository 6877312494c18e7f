"""`dlm bench`: the figures it writes, and the peer comparison's judge."""

import json
import math

import pytest
import torch

from dlm.bench import run_bench
from dlm.bench.generation import diffusion_variants, sample_config
from dlm.bench.peer_sampling import CharNgram, count_calls
from dlm.bench.training import flops_per_token
from dlm.config import BenchConfig, model_preset

CPU = torch.device("cpu")


def test_bench_writes_training_and_generation_figures(tmp_path):
    report = run_bench(BenchConfig(preset=["tiny"], generate="tiny", length=[8, 16],
                                   batch=[1, 2], batch_size=2, seq_len=32, repeats=1), CPU)
    js, md = report.write(tmp_path, "run")
    data = json.loads(js.read_text())
    assert {"command", "commit", "device", "torch", "dtype"} <= set(data)
    training = [r for r in data["results"] if r["what"] == "training"]
    assert len(training) == 1 and 0 < training[0]["mfu"] < 1.5
    assert training[0]["peak_memory_mib"] > 0
    generation = [r for r in data["results"] if r["what"] == "generation"]
    # AR, four fixed-step diffusion variants and the BD3 sampler (no threshold without
    # trained weights)
    assert len(generation) == 2 * 2 * 6
    for r in generation:
        n = r["length"]
        if r["variant"] == "AR + KV cache":
            assert r["nfe"] == n and r["ratio"] == 1.0
        elif r["variant"].startswith("BD3"):  # prompt, steps, a clean pass per later block
            assert r["nfe"] == 1 + n // 4 + n // min(16, n) - 1
        else:
            assert r["nfe"] == n // 4
        assert r["reply_tokens"] == r["batch"] * n
    assert "Threshold decoding is left out" in md.read_text() and "× AR" in md.read_text()


def test_variant_configs_fit_the_length():
    for v in diffusion_variants(block=32, per_step=4):
        config = sample_config(v, 16)
        assert config.block_length <= 16 and config.eos == "ban"


def test_flops_per_token_counts_matmuls_and_attention():
    cfg = model_preset("tiny", vocab_size=1000)
    d, ff = cfg.d_model, cfg.d_ff
    params = cfg.n_layers * (4 * d * d + 3 * d * ff) + 1000 * d
    assert flops_per_token(cfg, 64) == 6 * params + 12 * cfg.n_layers * 64 * d


def test_char_ngram_judge_prefers_text_like_its_training_text():
    text = "to be or not to be, that is the question. " * 50
    judge = CharNgram(text, order=4)
    assert judge.bits_per_char("to be or not to be") < judge.bits_per_char("qzx vvkw jjq")
    # a distribution: the probabilities of every seen character plus one unseen sum to 1
    chars = set(text)
    total = sum(judge.prob("to b", c) for c in chars) + judge.prob("to b", "\x00") * (
        judge.vocab - len(chars))
    assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_call_counter_counts_direct_forward_calls():
    layer = torch.nn.Linear(2, 2)
    counter = count_calls(layer)
    layer.forward(torch.zeros(1, 2))
    layer(torch.zeros(1, 2))
    assert counter.n == 2
    counter.remove()
    layer(torch.zeros(1, 2))
    assert counter.n == 2


def test_bench_command_writes_its_files(tmp_path):
    from typer.testing import CliRunner

    from dlm.cli.app import app

    result = CliRunner().invoke(app, [
        "bench", "--preset", "none", "--generate", "tiny", "--length", "8", "--batch", "1",
        "--repeats", "1", "--out-dir", str(tmp_path), "--name", "cli"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "cli.json").read_text())["results"]
    assert {r["variant"] for r in rows} >= {"AR + KV cache", "blocks of 32 + dual cache"}
    bad = CliRunner().invoke(app, ["bench", "--preset", "none", "--ckpt", str(tmp_path)])
    assert bad.exit_code != 0 and "--ar-ckpt" in bad.output


def test_bf16_accuracy_compares_the_same_checkpoint_both_ways(tmp_path, pairs_tsv):
    from dlm.bench.accuracy import accuracy_table, bf16_accuracy
    from dlm.training.train import train

    from .conftest import tiny_train_config

    run = train(tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=4))
    r = bf16_accuracy(str(run.checkpoint), torch.device("cpu"), val_examples=16, prompts=4,
                      draws=2)
    assert r["objective"] == "diffusion" and r["prompts"] >= 1
    # bf16 keeps ~3 significant digits: the two likelihoods agree closely but are computed
    assert abs(r["relative_difference"]) < 0.05
    assert 0 <= r["identical_tokens"] <= 1
    assert "bf16 autocast accuracy" in "\n".join(accuracy_table([r]))


def test_the_peer_training_loop_reads_either_kind_of_loss():
    import torch

    from dlm.bench.peer_sampling import loss_value

    assert loss_value(3.5) == 3.5
    assert loss_value({"loss": torch.tensor(2.25), "lr": 1e-3}) == 2.25


def test_character_entropy_exposes_a_degenerate_sample():
    from dlm.bench.peer_sampling import char_entropy

    assert char_entropy(" " * 240) == 0.0
    assert char_entropy("abcd" * 10) == 2.0


def test_trained_models_get_judged_speed_and_speculative_figures(tmp_path, pairs_tsv):
    """With trained --ckpt, --ar-ckpt and --judge: every generation row has the judged
    perplexity of its replies, and the speculative table has its AR rows, its variants and
    identical-output counts (greedy speculative replies are the AR model's)."""
    from dlm.training.train import train

    from .conftest import tiny_train_config

    def run(name, **kw):
        cfg = tiny_train_config(tmp_path / name, pairs_tsv, max_steps=8, val_fraction=0.3,
                                **kw)
        cfg.diffusion.padding = "eos"  # no rainbow pads: the AR runs' vocabulary
        return str(train(cfg).checkpoint)

    diffusion, ar = run("mdlm"), run("ar", objective="ar")
    judge = run("judge", objective="ar", seed=1)
    report = run_bench(BenchConfig(preset=[], generate="tiny", length=[8], batch=[1, 2],
                                   ckpt=diffusion, ar_ckpt=ar, repeats=1, speculative=[2, 4],
                                   judge=judge, draft_cache=["none", "prefix"]), CPU)
    md = report.markdown()
    generation = [r for r in report.results if r["what"] == "generation"]
    assert generation and all(r["judged_ppl"] > 1 for r in generation)
    speculative = [r for r in report.results if r["what"] == "speculative"]
    # per batch: AR, then k = 2, k = 4 and adaptive without and with the drafter's cache
    assert len(speculative) == 2 * (1 + 3 * 2)
    assert sum("prefix cache" in r["variant"] for r in speculative) == 2 * 3
    assert all(r["dtype"] == "float32" for r in speculative)
    assert all(r["identical"] == r["prompts"] == 2 for r in speculative)  # batch 1: both
    assert all(0 <= r["acceptance"] <= 1 for r in speculative if "acceptance" in r)
    assert "judged PPL" in md and "identical" in md and "AR calls/token" in md
    # bfloat16 weights: AR is timed in float32 too, and every ratio is also given against
    # the faster of the two
    report = run_bench(BenchConfig(preset=[], generate="none", length=[8], batch=[1],
                                   ckpt=diffusion, ar_ckpt=ar, repeats=1, speculative=[2],
                                   speculative_dtype="bfloat16"), CPU)
    rows = report.results
    assert [r["variant"] for r in rows[:2]] == ["AR + KV cache",
                                                "AR + KV cache, float32 weights"]
    best = max(rows[0]["tokens_per_s"], rows[1]["tokens_per_s"])
    for r in rows:
        assert r["dtype"] == "bfloat16"
        assert r["ratio_best_ar"] == pytest.approx(r["tokens_per_s"] / best)
    assert "× faster AR" in report.markdown() and "bfloat16" in report.markdown()


def test_a_dual_model_is_benched_against_its_own_ar_half(tmp_path, pairs_tsv):
    """--self-speculative: a dual --ckpt's own decoding against AR decoding of its AR
    half, at identical output (greedy), with its forwards and kept drafts counted; any
    other checkpoint is refused by name."""
    from dlm.errors import ConfigError
    from dlm.training.train import train

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path / "dual", pairs_tsv, objective="dual", block_size=4,
                            max_steps=8, val_fraction=0.3)
    dual = str(train(cfg).checkpoint)
    report = run_bench(BenchConfig(preset=[], generate="none", length=[8], batch=[1, 2],
                                   ckpt=dual, repeats=1, self_speculative=True), CPU)
    rows = [r for r in report.results if r["what"] == "self_speculative"]
    assert [r["variant"] for r in rows] == ["AR + KV cache", "self-speculative, blocks of 4"] * 2
    assert all(r["identical"] == r["prompts"] == 2 for r in rows)
    mine = rows[1::2]
    assert all(r["drafter_calls"] == 0 and 0 <= r["acceptance"] <= 1 for r in mine)
    assert all(r["verifier_calls_per_token"] > 0 for r in rows)
    assert "a dual model drafts and verifies itself" in report.markdown()
    ar = str(train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar",
                                     max_steps=2)).checkpoint)
    with pytest.raises(ConfigError, match="only a dual one"):
        run_bench(BenchConfig(preset=[], generate="none", length=[8], batch=[1], ckpt=ar,
                              repeats=1, self_speculative=True), CPU)
