"""Every door with an imported checkpoint (issue 33, item 4): generate and chat with a
trace, infill, edit, the server through the `openai` client, eval with an imported AR
judge, speculative decoding with an imported AR verifier, and AR -> diffusion adaptation
(`--init-from` a Llama folder: the A2D recipe)."""

from __future__ import annotations

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from tests.hf_folders import write_folder

pytest.importorskip("transformers", reason="transformers is not installed")

HELLO = [{"role": "user", "content": "hello how are you"}]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_folder(root / kind, kind)[0] for kind in ("llada", "dream", "llama")}


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_generate_chat_infill_and_edit_with_an_imported_diffusion_model(folders, kind):
    lm = DiffusionLM.load(folders[kind], "cpu")
    tok = lm.tokenizer
    steps = []
    config = lm.decoding(length=8, steps=4, temperature=0.0)
    reply = lm.reply(HELLO + [{"role": "assistant", "content": "fine"},
                              {"role": "user", "content": "what is your name"}],
                     config, on_step=steps.append)
    assert isinstance(reply, str) and len(steps) == 1 + 4  # the masked canvas, then 4 steps
    assert (steps[0].tokens == tok.mask_id).all()
    assert not (steps[-1].tokens == tok.mask_id).any()  # the trace ends with every mask filled
    filled = lm.infill("hello [MASK] are you", config=SampleConfig(steps=2))
    assert filled.text.startswith("hello ") and filled.text.endswith(" are you")
    edited = lm.edit("hello how are you", span="how", config=SampleConfig(steps=2))
    assert edited.before == "hello how are you" and edited.masked
    assert edited.after.startswith("hello ") and edited.after.endswith(" are you")


def test_an_imported_model_is_served_and_streams_through_the_openai_client(folders):
    openai = pytest.importorskip("openai", reason="the openai client is a test dependency")
    from tests.server_util import live_server

    lm = DiffusionLM.load(folders["llada"], "cpu")
    with live_server(lm) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        whole = client.chat.completions.create(model="dlm", messages=HELLO, max_tokens=8,
                                               extra_body={"steps": 4, "seed": 3})
        chunks = list(client.chat.completions.create(
            model="dlm", messages=HELLO, max_tokens=8, stream=True,
            extra_body={"steps": 4, "seed": 3}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_speculative_decoding_with_an_imported_verifier_writes_its_greedy_reply(folders):
    drafter = DiffusionLM.load(folders["llada"], "cpu").with_verifier(folders["llama"])
    verifier = drafter.verifier
    greedy = verifier.decoding(temperature=0.0, repetition_penalty=1.0, length=12)
    want = verifier.reply_ids([HELLO], greedy)[0].tolist()
    speculative = drafter.decoding(decode="speculative", draft_length=4, temperature=0.0,
                                   repetition_penalty=1.0, length=12)
    got = drafter.reply_ids([HELLO], speculative)[0].tolist()
    ends = drafter.tokenizer.end_ids
    end = next((i for i, t in enumerate(want) if t in ends), len(want))
    assert got[:end + 1] == want[:end + 1]


def test_eval_judges_with_an_imported_ar_model(folders):
    from dlm.evaluation.report import run_eval

    report = run_eval(folders["llada"], judge=folders["llama"], prompts=2, draws=1,
                      val_examples=8, sweep=[4], diversity_samples=0, device="cpu")
    assert report.sweep and report.sweep[0].gen_ppl is not None
    assert report.meta["judge"] == str(folders["llama"])


def test_a_llama_folder_is_adapted_to_diffusion_and_reloads(folders, tmp_path):
    """The A2D recipe: `--init-from` an imported AR model, the shift kept, attention
    annealed; the run's checkpoint keeps the imported tokenizer and its special ids."""
    from dlm import TrainConfig, train
    from dlm.config import DiffusionConfig

    data = tmp_path / "chat.tsv"
    data.write_text("hello how are you\ti am fine thanks\nwhat is your name\tmy name is "
                    "today\n" * 20)
    out = tmp_path / "a2d"
    train(TrainConfig(data=[str(data)], init_from=str(folders["llama"]), out_dir=str(out),
                      max_steps=4, anneal_steps=2, batch_size=4, prompt_len=24,
                      response_len=8, eval_every=4, save_every=4, val_examples=4,
                      tensorboard=False, device="cpu",
                      diffusion=DiffusionConfig(padding="eos")))
    lm = DiffusionLM.load(out, "cpu")
    imported = DiffusionLM.load(folders["llama"], "cpu")
    assert lm.objective.name == "diffusion" and lm.model.config.shift
    assert lm.tokenizer.mask_id == imported.tokenizer.mask_id
    assert lm.tokenizer.encode_prompt(HELLO) == imported.tokenizer.encode_prompt(HELLO)
    assert isinstance(lm.generate("hello", lm.decoding(length=6, steps=3))[0], str)
    with torch.no_grad():  # the run moved the weights it started from
        assert not torch.equal(lm.model.embed.weight, imported.model.embed.weight)
