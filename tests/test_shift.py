"""AR -> diffusion adaptation: the shift operation, attention annealing, and the whole run."""

import json

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.diffusion.shift import Shifted, annealed_mask, as_denoiser, shift_select
from dlm.training.train import train
from tests.conftest import tiny_train_config


class Echo(torch.nn.Module):
    """Logits whose argmax at position i is the id at i (so a shift is visible)."""

    def forward(self, ids, key_padding=None, select=None, **kwargs):
        logits = torch.nn.functional.one_hot(ids, 16).float()  # (B, T, V)
        return logits[select] if select is not None else logits


def test_shifted_logits_at_j_come_from_position_j_minus_1():
    ids = torch.tensor([[1, 2, 3, 4]])
    aligned = Shifted(Echo())(ids)
    assert aligned.argmax(-1)[0, 1:].tolist() == [1, 2, 3]
    select = torch.tensor([[False, True, False, True]])
    picked = Shifted(Echo())(ids, None, select).argmax(-1)
    assert picked.tolist() == [1, 3]  # the outputs at positions 0 and 2
    with pytest.raises(ValueError, match="position 0"):
        shift_select(torch.tensor([[True, False]]))


def test_annealing_goes_from_causal_to_full():
    g = torch.Generator().manual_seed(0)
    causal = annealed_mask(8, 0.0, g)
    assert torch.equal(causal, torch.ones(8, 8, dtype=torch.bool).tril())
    assert annealed_mask(8, 1.0, g).all()
    half = annealed_mask(64, 0.5, g)
    above = half.triu(1).sum() / (64 * 63 / 2)
    assert 0.4 < float(above) < 0.6


def test_an_ar_checkpoint_becomes_a_shifted_diffusion_model(tmp_path, pairs_tsv):
    ar = train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar", max_steps=40))
    ar_lm = DiffusionLM.load(ar.checkpoint, "cpu")
    cfg = tiny_train_config(tmp_path / "d", pairs_tsv, init_from=str(ar.checkpoint),
                            max_steps=6, anneal_steps=4, eval_every=3)
    result = train(cfg)
    meta = json.loads((result.checkpoint / "config.json").read_text())
    assert meta["objective"] == "diffusion"
    assert meta["model"]["shift"] is True and meta["model"]["causal"] is False
    lm = DiffusionLM.load(result.out_dir, "cpu")
    assert isinstance(as_denoiser(lm.model), Shifted)
    # every trained weight is carried over unchanged (the AR head keeps its meaning)
    from dlm.objectives import bind_objective
    from dlm.training.start import adapt_model

    adapted = adapt_model(ar_lm.model, cfg, bind_objective(vars(cfg)), ar_lm.tokenizer.vocab_size)
    assert adapted.config.shift and not adapted.config.causal
    for name, tensor in ar_lm.model.state_dict().items():
        assert torch.equal(adapted.state_dict()[name], tensor), name
    rows = [json.loads(line) for line in (tmp_path / "d" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if "val_nelbo" in r] == [0, 3, 6]
    # sampling, infill and eval know shifted models
    assert isinstance(lm.generate("hello", SampleConfig(length=8, steps=4))[0], str)
    assert "today" in lm.infill("hello [MASK] today").text
    assert ar_lm.objective.name == "ar"
    from dlm.evaluation.likelihood import likelihood
    from dlm.evaluation.report import held_out

    val, _, _, _ = held_out(lm, None, 8)
    assert likelihood(lm, val, draws=2).nats_per_token > 0
