"""Likelihood and generation quality against cases with known answers, and `dlm eval`."""

import json
import math

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.data import EncodedSet
from dlm.diffusion import nelbo_terms
from dlm.evaluation.likelihood import likelihood
from dlm.evaluation.quality import generation_quality, judge_nll, steps_sweep
from dlm.model import Transformer

from .conftest import tiny_config, tiny_train_config


def uniform_lm(tok, causal: bool) -> DiffusionLM:
    model = Transformer(tiny_config(tok.vocab_size, causal=causal))
    with torch.no_grad():
        model.embed.weight.zero_()  # every logit 0: the uniform distribution
    return DiffusionLM(model, tok, 16, 8, objective="ar" if causal else "diffusion")


def val_set(tok, n=6):
    prompts = torch.tensor([tok.encode_prompt([{"role": "user", "content": "hello"}])] * n)
    responses = torch.tensor([(tok.encode("hi there") + [tok.eos_id] * 8)[:8]] * n)
    return EncodedSet(prompts, responses)


def test_uniform_ar_model_has_perplexity_equal_to_the_vocabulary(tok):
    lk = likelihood(uniform_lm(tok, causal=True), val_set(tok))
    assert not lk.is_bound and lk.stderr == 0 and lk.tokens == 6 * 8
    assert lk.perplexity == pytest.approx(tok.vocab_size, rel=1e-4)
    text_bytes = 6 * len(b"hi there")
    assert lk.text_bytes == text_bytes
    assert lk.bits_per_byte == pytest.approx(48 * math.log(tok.vocab_size) / text_bytes
                                             / math.log(2), rel=1e-4)


def test_uniform_diffusion_model_bound_is_log_vocab_over_the_schedule(tok):
    lk = likelihood(uniform_lm(tok, causal=False), val_set(tok), draws=6)
    # every masked position costs log(V - 1) (the mask is ruled out), and E[1/t * P(mask)] = 1
    assert lk.is_bound and lk.draws == 6 and lk.stderr > 0
    assert lk.nats_per_token == pytest.approx(math.log(tok.vocab_size - 1), rel=0.15)


def test_a_perfect_denoiser_has_nelbo_near_zero():
    targets = torch.tensor([[3, 4, 5, 6]])
    masked = torch.tensor([[True, False, True, True]])
    logits = torch.full((3, 10), -1e4)
    logits[torch.arange(3), targets[masked]] = 1e4  # all mass on the right token
    per_seq = nelbo_terms(logits, targets, masked, torch.tensor([5.0]), mask_id=1)
    assert per_seq.item() == pytest.approx(0.0, abs=1e-6)


def test_judge_nll_of_a_uniform_judge_is_log_vocab_per_token(tok):
    judge = uniform_lm(tok, causal=True)
    histories = [[{"role": "user", "content": "hello"}], [{"role": "user", "content": "bye"}]]
    nll, count = judge_nll(judge, histories, ["hi there", "goodbye"])
    assert count == len(tok.encode("hi there")) + len(tok.encode("goodbye")) + 2  # + eos each
    assert nll / count == pytest.approx(math.log(tok.vocab_size), rel=1e-4)


def test_arithmetic_exact_match_reads_the_first_number():
    from dlm.evaluation.quality import first_number
    from dlm.suite import load_suite

    assert first_number("it is 5, not 6") == "5" and first_number("no idea") is None
    arithmetic = [r for r in load_suite() if r["category"] == "arithmetic"]
    assert arithmetic and all(r["answer"].lstrip("-").isdigit() for r in arithmetic)


def test_generation_quality_measures_the_replies(tok, tiny_model):
    lm = DiffusionLM(tiny_model, tok, 16, 8)
    histories = [[{"role": "user", "content": p}] for p in ("hello", "bye", "thank you")]
    quality, replies = generation_quality(lm, histories, SampleConfig(length=8, steps=4),
                                          judge=uniform_lm(tok, causal=True))
    assert quality.replies == 3 and len(replies) == 3 and quality.steps == 4
    assert quality.gen_ppl == pytest.approx(tok.vocab_size, rel=1e-3)
    # a uniform judge gives every token the same NLL: no spread over the prompts
    assert quality.gen_ppl_se == pytest.approx(0.0, abs=1e-3 * tok.vocab_size)
    assert quality.f1 is None and quality.relevance_gap is None
    refs = replies  # scored against themselves: F1 1 wherever a reply has words
    scored, _ = generation_quality(lm, histories, SampleConfig(length=8, steps=4),
                                   references=refs)
    assert scored.f1_se is not None and scored.relevance_gap_se is not None
    assert scored.relevance_gap == pytest.approx(scored.f1 - scored.f1_shuffled)
    assert 0 <= quality.distinct_1 <= 1 and 0 <= quality.ends_with_eos <= 1
    assert steps_sweep(32) == [1, 2, 4, 8, 16, 32] and steps_sweep(48)[-2:] == [32, 48]


@pytest.mark.slow
def test_dlm_eval_writes_json_and_markdown_with_the_sweep(tmp_path, pairs_tsv):
    from typer.testing import CliRunner

    from dlm.cli.app import app
    from dlm.training.train import train

    run = train(tiny_train_config(tmp_path / "d", pairs_tsv, max_steps=3, response_len=8))
    judge = train(tiny_train_config(tmp_path / "a", pairs_tsv, max_steps=3, objective="ar"))
    result = CliRunner().invoke(app, ["eval", "--ckpt", str(run.checkpoint), "--judge",
                                      str(judge.checkpoint), "--prompts", "3", "--draws", "2",
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert [row["steps"] for row in report["sweep"]] == [1, 2, 4, 8]
    assert report["likelihood"]["draws"] == 2 and report["likelihood"]["is_bound"]
    assert all(row["gen_ppl"] > 1 for row in report["sweep"])
    # relevance to the human replies beside fluency, and the empty replies
    assert all(0 <= row["f1"] <= 1 and 0 <= row["bleu_2"] <= 100 and 0 <= row["empty"] <= 1
               for row in report["sweep"])
    assert all("reference" in ex for ex in report["examples"])
    markdown = (tmp_path / "ev" / "eval.md").read_text()
    assert "| unigram F1 (shuffled) | BLEU-2 | stutter | broken end |" in markdown
    assert "| steps | gen. PPL |" in (tmp_path / "ev" / "eval.md").read_text()
    suite = report["suite"]
    assert set(suite) == {"greeting", "mood", "arithmetic", "instruction", "diversity"}
    assert 0 <= suite["arithmetic"]["exact_match"] <= 1
    assert len(suite["diversity"]["prompts"][0]["replies"]) == 8
    assert (tmp_path / "ev" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["eval", "--ckpt", str(run.checkpoint), "--judge",
                                   str(run.checkpoint)])
    assert bad.exit_code == 2 and "must be an AR model" in bad.output

    # the AR judge evaluated too (into its checkpoint), then the two side by side
    ar = CliRunner().invoke(app, ["eval", "--ckpt", str(tmp_path / "a"), "--prompts", "3"])
    assert ar.exit_code == 0, ar.output
    assert (judge.checkpoint / "eval" / "curves.png").is_file()  # from the run's metrics
    both = CliRunner().invoke(app, ["compare", str(tmp_path / "ev" / "eval.json"),
                                    str(tmp_path / "a"), "--out", str(tmp_path / "cmp")])
    assert both.exit_code == 0, both.output
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Perplexity ratio diffusion bound / AR" in text and "| bits per byte |" in text
    assert (tmp_path / "cmp" / "compare-sweep.png").read_bytes()[:4] == b"\x89PNG"
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "d"), str(tmp_path / "zz")])
    assert missing.exit_code == 2 and "no eval.json" in missing.output


def test_sweep_rows_are_the_models_decoding_but_for_what_they_name(tok):
    """`dlm sweep` starts from the resolver: a row differs from `lm.decoding()` (at the
    sweep's length, eos and seed) only in the settings it names, and a swept list left
    empty is the decoding's one value."""
    import dataclasses

    from dlm.config import COMMIT_RULES, SweepConfig
    from dlm.evaluation.sweep import sweep_grid

    lm = DiffusionLM(Transformer(tiny_config(tok.vocab_size)), tok, 16, 8)
    base = lm.decoding(seed=0)
    assert base.repetition_penalty != SampleConfig.repetition_penalty  # the measured one
    rows = sweep_grid(SweepConfig(steps=[2, 4], threshold=[0.5]), base)
    assert sorted({r.rule for r in rows}) == sorted(COMMIT_RULES)
    assert len(rows) == 2 * (len(COMMIT_RULES) - 1) + 1
    for row in rows:
        named = {"rule": row.rule, "steps": row.steps, "threshold": row.threshold}
        assert row == dataclasses.replace(base, **named)
        assert row.steps in ((2, 4) if row.rule != "threshold" else (base.length,))
    crossed = sweep_grid(SweepConfig(rule=["margin"], steps=[3], remask=[0.0, 0.2],
                                     cfg_scale=[0.0, 1.0]), base)
    assert [(r.remask, r.cfg_scale) for r in crossed] == [(0.0, 0.0), (0.2, 0.0),
                                                          (0.0, 1.0), (0.2, 1.0)]
