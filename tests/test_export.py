"""`dlm export` (issue 36, item 1): an AR model written as `LlamaForCausalLM` that
`transformers` loads and generates with, a masked-diffusion model in LLaDA's layout, a
shifted one in Dream's; export then import gives the same logits; other objectives are
refused in one line."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dlm import DiffusionLM
from dlm.errors import ConfigError
from dlm.layouts.export import export
from dlm.model import Transformer
from tests.conftest import tiny_config

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

HISTORIES = [[{"role": "user", "content": "hello there"}],
             [{"role": "user", "content": "how are you"}, {"role": "assistant",
                                                           "content": "fine thanks"},
              {"role": "user", "content": "good"}]]


def model_of(tok, objective: str, shift: bool = False, seed: int = 0) -> DiffusionLM:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(tiny_config(tok.vocab_size, causal=objective == "ar"),
                              shift=shift)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # sharper than the init, so greedy decoding is not a tie
        for p in model.parameters():
            p.mul_(6.0 if p.dim() > 1 else 1.0)
    return DiffusionLM(model, tok, objective=objective, default_length=12)


@pytest.mark.parametrize("objective,shift,layout", [("ar", False, "llama"),
                                                    ("diffusion", False, "llada"),
                                                    ("diffusion", True, "Dream")])
def test_export_then_import_gives_the_same_logits(tok, tmp_path, objective, shift, layout):
    lm = model_of(tok, objective, shift)
    folder, notes = export(lm, tmp_path / layout)
    back = DiffusionLM.load(folder, "cpu")
    assert back.meta["imported"]["model_type"] == layout and not notes
    assert back.objective.name == lm.objective.name and back.model.config.shift == shift
    ids = torch.randint(6, tok.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(lm.model(ids), back.model(ids))
    for history in HISTORIES:  # the chat renders to the same ids through the template
        assert back.tokenizer.encode_prompt(history) == tok.encode_prompt(history)
        chat = [*history, {"role": "assistant", "content": "fine thanks"}]
        assert back.tokenizer.encode_chat(chat) == tok.encode_chat(chat)  # training rows


def test_transformers_loads_the_exported_ar_model_and_generates_what_dlm_does(tok, tmp_path):
    lm = model_of(tok, "ar")
    folder, _ = export(lm, tmp_path / "ar")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    their_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert type(theirs).__name__ == "LlamaForCausalLM"
    greedy = lm.decoding(temperature=0.0, repetition_penalty=1.0, length=12)
    for history in HISTORIES:
        prompt = their_tok.apply_chat_template(history, add_generation_prompt=True,
                                               tokenize=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        assert prompt == tok.encode_prompt(history)
        with torch.no_grad():
            out = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                  eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        want = out[0, len(prompt):].tolist()
        got = lm.reply_ids([history], greedy)[0].tolist()
        end = next((i for i, t in enumerate(want) if t == tok.eos_id), len(want) - 1)
        assert got[:end + 1] == want[:end + 1]


def test_objectives_without_a_layout_are_refused_in_one_line(tok, tmp_path):
    lm = model_of(tok, "diffusion")
    lm.objective = dataclasses.replace(lm.objective)  # a bound copy; then pretend SEDD
    from dlm.objectives import bind_objective

    sedd = DiffusionLM(lm.model, tok, objective=bind_objective({"objective":
                                                                "sedd-absorbing"}))
    with pytest.raises(ConfigError) as err:
        export(sedd, tmp_path / "sedd")
    assert "sedd-absorbing" in str(err.value) and "\n" not in str(err.value)


def test_a_length_head_is_left_out_and_said(tok, tmp_path):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(tok.vocab_size), length_classes=16)
    lm = DiffusionLM(Transformer(cfg).eval(), tok, objective="diffusion")
    folder, notes = export(lm, tmp_path / "llada")
    assert notes and "length head" in notes[0]
    ids = torch.randint(6, tok.vocab_size, (1, 10))
    with torch.no_grad():
        assert torch.equal(lm.model(ids), DiffusionLM.load(folder, "cpu").model(ids))
