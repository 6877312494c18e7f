"""DiffusionGemma behind dlm's objective interface (issue 36, item 3): `--ckpt` on a
DiffusionGemma folder loads transformers' own class; dlm's sampler drives its encoder and
canvas decoder with self-conditioning, reproducing transformers' own generation at
matched settings and seed; dlm's traces, server and evaluation work on it; settings it
cannot take are refused one line each."""

from __future__ import annotations

import pytest
import torch

from dlm import DiffusionLM
from dlm.errors import ConfigError
from tests.hf_folders import write_diffusion_gemma

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
    pytest.skip("this transformers has no DiffusionGemma", allow_module_level=True)

PROMPTS = ["hello how are you", "what is your name", "tell me a joke", "good morning"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_diffusion_gemma(tmp_path_factory.mktemp("dg") / "tiny")


def theirs(model, lm, history, temperature, steps, length, seed):
    """transformers' own DiffusionGemma generation, up to the reply's first eos."""
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        EntropyBoundSamplerConfig,
    )

    prompt = torch.tensor([lm.tokenizer.encode_prompt(history)])
    torch.manual_seed(seed)
    out = model.generate(prompt, max_new_tokens=length, max_denoising_steps=steps,
                         t_min=temperature / 2, t_max=temperature,
                         sampler_config=EntropyBoundSamplerConfig(entropy_bound=0.1),
                         stability_threshold=1, confidence_threshold=0.005,
                         eos_token_id=lm.tokenizer.eos_id, pad_token_id=lm.tokenizer.pad_id)
    return out.sequences[0, prompt.shape[1]:].tolist()


def upto_eos(ids, ends):
    end = next((i for i, t in enumerate(ids) if t in ends), len(ids) - 1)
    return ids[:end + 1]


@pytest.mark.parametrize("temperature", [2e-4, 0.8])
def test_dlm_drives_it_to_transformers_own_replies(folder, temperature):
    path, model = folder
    lm = DiffusionLM.load(path, "cpu")
    assert lm.objective.name == "diffusion-gemma"
    for seed, text in enumerate(PROMPTS):
        history = [{"role": "user", "content": text}]
        config = lm.decoding(temperature=temperature, length=16, steps=8, seed=seed)
        ours = lm.reply_ids([history], config)[0].tolist()
        want = theirs(model, lm, history, temperature, 8, 16, seed)
        assert upto_eos(ours, lm.tokenizer.end_ids) == upto_eos(want, lm.tokenizer.end_ids)


def test_traces_and_the_default_decoding(folder):
    lm = DiffusionLM.load(folder[0], "cpu")
    config = lm.decoding(length=8, steps=4, seed=0)
    assert config.temperature == 0.8 and config.repetition_penalty == 1.0
    steps = []
    lm.reply([{"role": "user", "content": "hello"}], config, on_step=steps.append)
    assert (steps[0].tokens == lm.tokenizer.mask_id).all()  # nothing accepted yet
    assert steps[-1].nfe == len(steps) - 1 and not (steps[-1].tokens == lm.tokenizer.mask_id).all()


def test_settings_it_cannot_take_are_refused_one_line_each(folder):
    lm = DiffusionLM.load(folder[0], "cpu")
    history = [{"role": "user", "content": "hello"}]
    for field, value in (("rule", "threshold"), ("cfg_scale", 1.5),
                         ("repetition_penalty", 1.2), ("block_length", 4), ("eos", "defer")):
        with pytest.raises(ConfigError) as err:
            lm.reply(history, lm.decoding(**{field: value}))
        assert field in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot fill"):
        lm.infill("hello [MASK] you")


def test_served_and_evaluated(folder):
    from dlm.evaluation.report import run_eval
    from tests.server_util import live_server

    lm = DiffusionLM.load(folder[0], "cpu")
    openai = pytest.importorskip("openai", reason="the openai client is a test dependency")
    with live_server(lm) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="dlm", messages=[{"role": "user", "content": "hello"}], max_tokens=8,
            stream=True, extra_body={"steps": 4, "seed": 1}))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    report = run_eval(folder[0], prompts=2, val_examples=8, sweep=[4],
                      diversity_samples=0, device="cpu")
    assert report.likelihood is None and "no likelihood" in report.meta["no_likelihood"]
    assert report.sweep and "Likelihood: none" in report.markdown()
