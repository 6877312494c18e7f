"""dlm as an lm-evaluation-harness model (`dlm.evaluation.harness.DLMHarness`): against
lm-eval's own `hf` backend on the same tiny random Llama, on the local tasks; Monte Carlo
likelihoods for a diffusion model; generation through dlm's samplers; zero-shot
perplexity and its warning about training data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA
from tests.hf_folders import write_folder

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed")
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                reason=f"{SHARED_DATA} (the shared corpora) is absent")


@pytest.fixture
def shared(monkeypatch):
    from dlm.evaluation.harness_tasks import utils

    monkeypatch.setenv(utils.ENV, str(SHARED_DATA))


def long_llama(tmp_path):
    """A tiny random Llama folder with room for every request (rotary: the weights do not
    depend on the positions), so neither backend cuts a context."""
    folder, _ = write_folder(tmp_path / "llama", "llama")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config,
                                                    "max_position_embeddings": 2048}))
    return folder


def per_request(out, task):
    """Each request's log-likelihood, in lm-eval's sample order."""
    values = []
    for sample in sorted(out["samples"][task], key=lambda s: s["doc_id"]):
        for resp in sample["resps"]:
            first = resp[0]
            values.append(float(first[0] if isinstance(first, (list, tuple)) else first))
    return values


@needs_data
def test_the_adapter_agrees_with_lm_evals_hf_backend(tmp_path, shared):
    from lm_eval.tasks import TaskManager

    from dlm.evaluation.harness import DLMHarness
    from dlm.evaluation.harness_tasks import TASKS_DIR

    folder = long_llama(tmp_path)
    tasks = ["dlm_dailydialog_next", "dlm_tinystories_rolling"]
    common = dict(tasks=tasks, limit=12, log_samples=True,
                  task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
    ours = lm_eval.simple_evaluate(model=DLMHarness(pretrained=str(folder), chat=False,
                                                    batch_size=8), **common)
    theirs = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},"
                                     "dtype=float32", device="cpu", batch_size=8, **common)
    # within 1e-4 nats, or float32's own rounding of a sum over hundreds of tokens (the
    # tiny byte-level vocabulary makes some requests over 1,000 nats: 1e-6 of them)
    for task in tasks:
        a, b = per_request(ours, task), per_request(theirs, task)
        assert len(a) == len(b) > 10
        assert all(abs(x - y) <= max(1e-4, 1e-6 * abs(y)) for x, y in zip(a, b, strict=True))
    mc = "dlm_dailydialog_next"
    assert ours["results"][mc]["acc,none"] == theirs["results"][mc]["acc,none"]
    assert ours["results"][mc]["acc_norm,none"] == theirs["results"][mc]["acc_norm,none"]


def test_a_diffusion_model_is_scored_by_monte_carlo_draws(tmp_path):
    from lm_eval.api.instance import Instance

    from dlm.evaluation.harness import DLMHarness

    folder, _ = write_folder(tmp_path / "llada", "llada")
    model = DLMHarness(pretrained=str(folder), chat=False, mc_num=16)
    pairs = [("hello how are you", " i am fine"), ("tell me a joke", " no")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    out = model.loglikelihood(requests, disable_tqdm=True)
    assert all(ll < 0 and isinstance(greedy, bool) for ll, greedy in out)
    assert all(s.draws == 16 and s.stderr > 0 for s in model.scores)
    assert model.describe()["estimator"].startswith("Monte Carlo")
    again = DLMHarness(pretrained=str(folder), chat=False, mc_num=16).loglikelihood(
        requests, disable_tqdm=True)
    assert again == out  # seeded: the same draws each run


def test_generation_honours_stop_strings_lengths_and_sample_settings(tmp_path):
    from lm_eval.api.instance import Instance

    from dlm.errors import ConfigError
    from dlm.evaluation.harness import DLMHarness

    folder, _ = write_folder(tmp_path / "llada", "llada")
    model = DLMHarness(pretrained=str(folder), steps=4, temperature=0.0)
    assert model.sample.steps == 4
    asked = []
    reply = model.lm.reply
    model.lm.reply = lambda history, config: asked.append(config) or reply(history, config)
    free = model.generate_until([Instance("generate_until", {}, ("hello", {
        "max_gen_toks": 6}), 0)], disable_tqdm=True)[0]
    assert asked[0].length == 6 and asked[0].steps == 4 and asked[0].temperature == 0.0
    model.generate_until([Instance("generate_until", {}, ("hello", {"max_gen_toks": 500}),
                                   0)], disable_tqdm=True)
    assert asked[1].length == model.lm.default_length  # at most: never past its own canvas
    stop = free[len(free) // 2:len(free) // 2 + 1] or "x"
    cut = model.generate_until([Instance("generate_until", {}, ("hello", {
        "max_gen_toks": 6, "until": [stop]}), 0)], disable_tqdm=True)[0]
    assert stop not in cut and free.startswith(cut)
    with pytest.raises(ConfigError, match="bogus"):
        DLMHarness(pretrained=str(folder), bogus=1)


def test_zero_shot_perplexity_and_its_training_data_warning(tmp_path, pairs_tsv):
    from dlm import DiffusionLM, TrainConfig, train
    from dlm.evaluation.zero_shot import zero_shot

    run = train(TrainConfig(data=[str(pairs_tsv)], out_dir=str(tmp_path / "run"),
                            objective="ar", max_steps=2, batch_size=8, eval_every=2,
                            save_every=2, val_examples=4, tensorboard=False, device="cpu"))
    lm = DiffusionLM.load(run.out_dir, "cpu")
    seen = zero_shot(lm, str(pairs_tsv))
    unseen = zero_shot(lm, "pydoc", max_documents=3)
    assert seen.in_training_data and not unseen.in_training_data
    assert unseen.kind == "exact" and unseen.tokens > 0 and unseen.bits_per_byte > 0


@needs_data
def test_dlm_eval_harness_and_zero_shot_write_their_figures_with_provenance(tmp_path, shared):
    from typer.testing import CliRunner

    from dlm.cli.app import app

    folder, _ = write_folder(tmp_path / "llada", "llada")
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["eval", "--ckpt", str(folder), "--harness",
                                   "dlm_dailydialog_next", "--limit", "4", "--harness-args",
                                   "mc_num=2,chat=false", "--out", str(out)])
    assert run.exit_code == 0, run.output
    written = json.loads((out / "harness.json").read_text())
    assert written["dlm"]["draws"] == 2 and written["dlm"]["estimator"].startswith("Monte")
    assert {"dtype", "device", "seed", "wall_s"} <= set(written["dlm"])
    assert "acc,none" in written["results"]["dlm_dailydialog_next"]
    run = CliRunner().invoke(app, ["eval", "--ckpt", str(folder), "--zero-shot", "pydoc",
                                   "--draws", "2", "--out", str(out)])
    assert run.exit_code == 0, run.output
    row = json.loads((out / "zero-shot.json").read_text())["rows"][0]
    assert row["corpus"] == "pydoc" and row["kind"] == "bound" and row["draws"] == 2
