"""Checkpoint folders of the field opened by `DiffusionLM.load` (issue 33, item 2): each
layout recognised by its config.json, its logits equal to `transformers`' on the same
weights, its tokenizer and chat template rendering as `transformers` renders them, greedy
AR decoding equal to `generate`, and no code of the folder ever run."""

from __future__ import annotations

import json

import pytest
import torch

from dlm import DiffusionLM
from dlm.errors import CheckpointError
from tests.hf_folders import VOCAB, write_folder

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

KINDS = ["llama", "qwen2", "qwen3", "llada", "dream"]
HISTORY = [{"role": "user", "content": "hello how are you"},
           {"role": "assistant", "content": "i am fine thanks"},
           {"role": "user", "content": "what is your name"}]


def copied(folder, to):
    import shutil

    return shutil.copytree(folder, to)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_folder(root / kind, kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_each_layout_loads_with_the_logits_of_transformers(folders, kind):
    folder, model = folders[kind]
    lm = DiffusionLM.load(folder, "cpu")
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    bidirectional = kind in ("llada", "dream")
    with torch.no_grad():
        mask = torch.zeros(2, 1, 24, 24) if bidirectional else None  # full, non-causal
        want = model(ids, attention_mask=mask).logits
        got = lm.model(ids)
    assert (got - want).abs().max() < 1e-4
    assert lm.objective.name == ("diffusion" if bidirectional else "ar")
    assert lm.model.config.causal is not bidirectional
    assert lm.model.config.shift is (kind == "dream")
    assert lm.meta["imported"]["model_type"].lower() == kind
    if bidirectional:  # the mask and the end of a reply come from the folder's files
        hf = json.loads((folder / "config.json").read_text())
        assert lm.tokenizer.mask_id == hf["mask_token_id"]
        assert lm.tokenizer.eos_id == hf["eos_token_id"]


@pytest.mark.parametrize("kind", ["llama", "llada"])
def test_the_chat_template_renders_as_apply_chat_template(folders, kind):
    folder, _ = folders[kind]
    lm = DiffusionLM.load(folder, "cpu")
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    for history in (HISTORY[:1], HISTORY):
        want = theirs.apply_chat_template(history, add_generation_prompt=True, tokenize=True)
        want = want["input_ids"] if hasattr(want, "keys") else want
        assert lm.tokenizer.encode_prompt(history) == list(want)
    text = "where do we go now?"
    assert lm.tokenizer.encode(text) == theirs(text, add_special_tokens=False)["input_ids"]
    assert lm.tokenizer.decode(lm.tokenizer.encode(text)) == text


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_greedy_decoding_equals_transformers_generate(folders, kind):
    folder, model = folders[kind]
    lm = DiffusionLM.load(folder, "cpu")
    config = lm.decoding(temperature=0.0, repetition_penalty=1.0, length=20)
    for history in (HISTORY[:1], HISTORY):
        ids = lm.reply_ids([history], config)[0].tolist()
        prompt = torch.tensor([lm.tokenizer.encode_prompt(history)])
        with torch.no_grad():
            out = model.generate(prompt, max_new_tokens=20, do_sample=False,
                                 eos_token_id=lm.tokenizer.end_ids,
                                 pad_token_id=lm.tokenizer.pad_id)
        want = out[0, prompt.shape[1]:].tolist()
        end = next((i for i, t in enumerate(want) if t in lm.tokenizer.end_ids), len(want))
        assert ids[:end + 1] == want[:end + 1]


def test_a_sharded_checkpoint_loads_into_bfloat16_shard_by_shard(tmp_path, folders):
    folder, _ = write_folder(tmp_path / "sharded", "llama", max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file()
    lm = DiffusionLM.load(folder, "cpu", dtype="bfloat16")
    whole = DiffusionLM.load(folders["llama"][0], "cpu", dtype="bfloat16")
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    for (name, a), (_, b) in zip(lm.model.state_dict().items(),
                                 whole.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_no_code_of_the_folder_runs(folders):
    folder, _ = folders["llada"]
    DiffusionLM.load(folder, "cpu")
    assert (folder / "modeling_llada.py").is_file() and not (folder / "RAN").exists()


def test_an_unknown_layout_is_one_line_naming_the_known_ones(tmp_path, folders):
    folder, _ = folders["llama"]
    other = copied(folder, tmp_path / "gpt2")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(CheckpointError) as err:
        DiffusionLM.load(other, "cpu")
    said = str(err.value)
    assert "\n" not in said and "model_type 'gpt2'" in said
    assert all(name in said for name in ("LLaDA", "Dream", "llama", "qwen2", "qwen3"))


def test_weights_the_layout_does_not_read_are_refused(tmp_path, folders):
    from safetensors.torch import load_file, save_file

    folder, _ = folders["qwen3"]
    other = copied(folder, tmp_path / "extra")
    weights = load_file(str(other / "model.safetensors"))
    weights["model.layers.0.mlp.down_proj.bias"] = torch.zeros(64)
    save_file(weights, str(other / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not read: model.layers.0.mlp.down_proj"):
        DiffusionLM.load(other, "cpu")
    del weights["model.layers.0.mlp.down_proj.bias"], weights["model.norm.weight"]
    save_file(weights, str(other / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lack model.norm.weight"):
        DiffusionLM.load(other, "cpu")
