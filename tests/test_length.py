"""The length head: trained jointly, sizes the canvas (`length="auto"`), measured in eval."""

import dataclasses

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.objectives.mdlm import sized_canvas
from dlm.sampling import reply_canvas
from dlm.training.train import train
from tests.conftest import tiny_config, tiny_train_config


def test_the_head_reads_the_prompt_alone_and_ignores_padding(tok):
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(tiny_config(tok.vocab_size), length_classes=16))
    ids = torch.tensor([tok.encode_prompt([{"role": "user", "content": "hello there"}])])
    logits = model(ids, head="length")
    assert logits.shape == (1, 16)
    padded = torch.cat([torch.full((1, 3), tok.pad_id), ids], 1)
    again = model(padded, padded != tok.pad_id, head="length")
    torch.testing.assert_close(logits, again, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no length head"):
        Transformer(tiny_config(tok.vocab_size))(ids, head="length")


def test_a_sized_canvas_gives_eos_past_each_rows_length(tok):
    prompt = torch.tensor([[5, 6], [7, 8]])
    canvas = reply_canvas(prompt, None, 5, tok.mask_id, tok.eos_id)
    sized = sized_canvas(canvas, torch.tensor([2, 5]), tok)
    assert sized.tokens[0, 2:].tolist() == [tok.mask_id] * 2 + [tok.eos_id] * 3
    assert sized.tokens[1, 2:].tolist() == [tok.mask_id] * 5
    assert torch.equal(sized.no_eos, sized.tokens == tok.mask_id)
    rainbow = tok.with_rainbow(2)
    sized = sized_canvas(canvas, torch.tensor([1, 5]), rainbow)
    pads = rainbow.pad_cycle
    assert sized.tokens[0, 3:].tolist() == [rainbow.eos_id, *pads, pads[0]]


def test_training_with_the_head_learns_lengths_and_auto_uses_it(tmp_path, pairs_tsv):
    from dlm.evaluation.likelihood import length_accuracy
    from dlm.evaluation.report import held_out

    cfg = tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=60, length_head=True,
                            length_weight=1.0, val_fraction=0.3)
    lm = DiffusionLM.load(train(cfg).out_dir, "cpu")
    assert lm.model.config.length_classes == cfg.response_len
    val, histories, _, _ = held_out(lm, None, 100)
    acc = length_accuracy(lm, val)
    assert acc["examples"] == len(val) and 0 <= acc["exact"] <= acc["within_2"] <= 1
    # the head predicts the training replies' lengths after 60 steps
    train_prompts = [[{"role": "user", "content": "how are you"}],
                     [{"role": "user", "content": "hi"}]]
    prompt, padding = lm._prompt_batch(train_prompts)
    predicted = lm.predict_lengths(prompt, padding).tolist()
    true = [len(lm.tokenizer.encode(t)) for t in ("i am fine, thank you", "hello")]
    assert all(abs(p - t) <= 2 for p, t in zip(predicted, true, strict=True)), predicted
    steps = []
    ids = lm.reply_ids(train_prompts, SampleConfig(length="auto", steps=8),
                       on_step=steps.append)
    assert ids.shape[1] == max(predicted)  # the canvas is sized by the head
    for row, n in zip(ids.tolist(), predicted, strict=True):
        assert lm.tokenizer.eos_id not in row[:n]  # eos kept out of the predicted length
    margin = lm.reply_ids(train_prompts, SampleConfig(length="auto", length_margin=3, steps=8))
    assert margin.shape[1] == max(predicted) + 3


def test_auto_length_falls_back_to_the_canvas_without_a_head(tmp_path, pairs_tsv):
    lm = DiffusionLM.load(train(tiny_train_config(tmp_path / "r", pairs_tsv)).out_dir, "cpu")
    assert lm.reply_ids([[{"role": "user", "content": "hi"}]],
                        SampleConfig(length="auto", steps=4)).shape[1] == lm.default_length
    with pytest.raises(ConfigError, match="length"):
        SampleConfig(length="long")
    with pytest.raises(ConfigError, match="length_head"):
        train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar", length_head=True))
