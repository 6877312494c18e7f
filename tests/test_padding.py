"""Padding modes: rainbow cycles, eos weights, length-grouped batches, and training on each."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.config import DiffusionConfig
from dlm.diffusion.padding import (
    group_by_length,
    padding_weights,
    rainbow,
    reply_lengths,
    trim_to_longest,
)
from dlm.errors import ConfigError
from dlm.training.train import train
from tests.conftest import tiny_train_config

EOS = 3
PADS = [100, 101, 102]


def eos_padded(lengths: list[int], width: int) -> torch.Tensor:
    """Replies of these lengths (ids 10, 11, ...), a closing eos, then eos padding."""
    rows = torch.full((len(lengths), width), EOS)
    for i, n in enumerate(lengths):
        rows[i, : min(n, width)] = torch.arange(10, 10 + min(n, width))
    return rows


def test_rainbow_keeps_the_reply_and_one_eos_then_cycles_the_pads():
    rows = rainbow(eos_padded([2, 0, 6], 10), EOS, PADS)
    assert rows[0].tolist() == [10, 11, EOS, 100, 101, 102, 100, 101, 102, 100]
    assert rows[1].tolist() == [EOS, 100, 101, 102, 100, 101, 102, 100, 101, 102]
    assert rows[2].tolist() == [10, 11, 12, 13, 14, 15, EOS, 100, 101, 102]
    # a reply cut to the canvas has no eos and no padding
    cut = eos_padded([12], 10)
    assert torch.equal(rainbow(cut, EOS, PADS), cut)


@given(st.lists(st.integers(0, 12), min_size=1, max_size=6), st.integers(1, 12))
@settings(max_examples=50, deadline=None)
def test_reply_lengths_and_weights_agree_with_the_rows(lengths, width):
    rows = eos_padded(lengths, width)
    found = reply_lengths(rainbow(rows, EOS, PADS), [EOS, *PADS])
    assert found.tolist() == [min(n, width) for n in lengths]
    maskable = torch.ones_like(rows, dtype=torch.bool)
    weights = padding_weights(rows, maskable, EOS)
    for i, n in enumerate(lengths):
        kept = min(n + 1, width)  # the reply and its closing eos, when it fits
        padding = width - kept
        assert weights[i, :kept].eq(1).all()
        # the padding weighs one token in all (nothing when there is none)
        assert float(weights[i].sum()) == pytest.approx(kept + (1 if padding else 0))


def test_trim_to_longest_cuts_the_canvas_after_the_longest_reply():
    assert trim_to_longest(eos_padded([2, 5, 1], 10), EOS).shape == (3, 6)
    assert trim_to_longest(eos_padded([12, 1], 10), EOS).shape == (2, 10)


def test_group_by_length_is_a_permutation_of_sorted_batches():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (103,))
    order = group_by_length(torch.randperm(103, generator=g), lengths, 8, g, pool=4)
    assert sorted(order.tolist()) == list(range(103))
    batches = order.split(8)
    assert len(batches[-1]) == 103 % 8  # the short batch stays last
    spread = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert sum(spread) / len(spread) < int(lengths.max() - lengths.min()) / 2


def test_an_unknown_padding_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="diffusion.padding"):
        DiffusionConfig(padding="zeros")


@pytest.mark.parametrize("padding", ["rainbow", "eos_weight", "batch"])
def test_each_padding_trains_and_reports_a_per_reply_token_nelbo(tmp_path, pairs_tsv, padding):
    cfg = tiny_train_config(tmp_path / padding, pairs_tsv, max_steps=4, eval_every=2)
    cfg.diffusion = DiffusionConfig(padding=padding, rainbow_pads=3)
    result = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / padding / "metrics.jsonl").open()]
    evals = [r for r in rows if "val_nelbo" in r]
    assert all(r["val_nelbo_reply"] >= r["val_nelbo"] for r in evals)  # fewer tokens than canvas
    from dlm import DiffusionLM

    lm = DiffusionLM.load(result.out_dir, "cpu")
    assert (len(lm.tokenizer.pad_cycle) == 3) == (padding == "rainbow")
    assert isinstance(lm.generate("hello")[0], str)


def test_rainbow_pads_end_a_reply_like_eos_in_the_sampler():
    """A model sure of a pad token: `eos ban` keeps every pad out, `defer` commits them last."""
    from dlm.config import SampleConfig
    from dlm.sampling import denoise, reply_canvas

    class PadLover(torch.nn.Module):
        def forward(self, ids, key_padding=None):
            logits = torch.zeros(*ids.shape, 120)
            logits[..., 50] = 3.0
            logits[:, 5:, PADS[1]] = 9.0  # the end of the canvas: a pad, surer than any word
            return logits

    canvas = reply_canvas(torch.tensor([[1, 2]]), None, 6, 0, EOS, pads=tuple(PADS))
    banned = list(denoise(PadLover(), canvas, SampleConfig(length=6, steps=6, eos="ban")))
    assert not torch.isin(banned[-1].tokens, torch.tensor([EOS, *PADS])).any()
    deferred = list(denoise(PadLover(), canvas, SampleConfig(length=6, steps=6, eos="defer")))
    first = deferred[1].tokens[0, 2:]  # one token per step: a word, not the surer pad
    assert (first == 50).sum() == 1 and not torch.isin(first, torch.tensor(PADS)).any()
    allowed = list(denoise(PadLover(), canvas, SampleConfig(length=6, steps=6, eos="allow")))
    assert torch.isin(allowed[1].tokens[0, 2:], torch.tensor(PADS)).sum() == 1
