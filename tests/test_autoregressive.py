"""The autoregressive baseline: KV cache, next-token loss, left-to-right decoding, training."""

import json
import math

import pytest
import torch

from dlm.config import SampleConfig
from dlm.data import EncodedSet
from dlm.model import Transformer
from dlm.objectives.next_token import ar_loss, evaluate_ar_nll
from dlm.sampling.ar import ar_decode

from .conftest import tiny_config, tiny_train_config


@pytest.fixture
def causal_model(tok) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config(tok.vocab_size, causal=True)).eval()


def left_padded(tok, rows):
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tok.pad_id] * (width - len(r)) + r for r in rows])
    return ids, ids != tok.pad_id


def test_kv_cache_gives_the_logits_of_the_full_causal_forward(causal_model, tok):
    ids, real = left_padded(tok, [tok.encode("hello there how are you"), tok.encode("hi")])
    full = causal_model(ids, real)
    cache = causal_model.new_cache(ids.shape[0], ids.shape[1])
    split = 3
    pieces = [causal_model(ids[:, :split], real[:, :split], cache=cache)]
    for i in range(split, ids.shape[1]):  # then one position at a time
        pieces.append(causal_model(ids[:, i : i + 1], real[:, : i + 1], cache=cache))
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == ids.shape[1]


def test_a_cached_block_rewritten_in_place_gives_the_full_forward(tiny_model, causal_model,
                                                                   tok):
    """Rewriting positions [a, b) of a filled cache attends over every position, as the
    full forward does (the dual cache's step); the high-water mark does not move."""
    ids, real = left_padded(tok, [tok.encode("hello there how are you"), tok.encode("hi")])
    for model in (tiny_model, causal_model):
        full = model(ids, real)
        cache = model.new_cache(ids.shape[0], ids.shape[1] + 4)
        model(ids, real, cache=cache)
        block = model(ids[:, 2:5], real, cache=cache, start=2)
        torch.testing.assert_close(block, full[:, 2:5], atol=1e-5, rtol=1e-5)
        assert cache.length == ids.shape[1]


def test_start_without_a_cache_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="needs a cache"):
        tiny_model(torch.zeros(1, 4, dtype=torch.long), start=2)


def test_uniform_logits_cost_log_vocab_per_predicted_token(causal_model, tok):
    with torch.no_grad():
        causal_model.embed.weight.zero_()  # tied head: every logit is 0
    ids = torch.randint(6, tok.vocab_size, (2, 10))
    chat = torch.zeros(2, 10, dtype=torch.bool)
    chat[:, 4:] = True  # a 4-token prompt, a 6-token response
    out = ar_loss(causal_model, ids, chat, None)
    assert out.n_tokens == 6 * 2  # the first response token is predicted from the prompt
    assert out.loss.item() == pytest.approx(math.log(tok.vocab_size), rel=1e-5)
    packed = ar_loss(causal_model, ids, torch.ones_like(chat), None)
    assert packed.n_tokens == 9 * 2  # a packed sequence's first token has no context
    data = EncodedSet(ids[:, :4], ids[:, 4:])
    assert evaluate_ar_nll(causal_model, data, tok.pad_id) == pytest.approx(
        math.log(tok.vocab_size), rel=1e-5)


def test_greedy_decoding_follows_the_argmax_and_pads_with_eos_after_it(causal_model, tok):
    ids, real = left_padded(tok, [tok.encode("hello"), tok.encode("how are you")])
    config = SampleConfig(length=6, temperature=0.0)
    steps = list(ar_decode(causal_model, ids, real, config, tok.mask_id, tok.eos_id))
    final = steps[-1].tokens
    assert steps[0].tokens.eq(tok.mask_id).all()
    assert all(s.newly_committed.sum() == 2 for s in steps[1:])  # one token per row per step
    # the same tokens from full forwards without a cache
    seq, mask = ids, real
    for i in range(final.shape[1]):
        logits = causal_model(seq, mask)[:, -1]
        logits[:, tok.mask_id] = float("-inf")
        want = logits.argmax(-1)
        ended = (final[:, :i] == tok.eos_id).any(1)
        assert torch.equal(final[:, i][~ended], want[~ended])
        seq = torch.cat([seq, final[:, i : i + 1]], 1)
        mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.bool)], 1)
    for row in final.tolist():  # everything after the first eos is eos
        if tok.eos_id in row:
            first = row.index(tok.eos_id)
            assert set(row[first:]) == {tok.eos_id}


def test_sampling_is_reproducible_with_a_seed(causal_model, tok):
    ids, real = left_padded(tok, [tok.encode("hello")])
    config = SampleConfig(length=8, temperature=1.0, top_p=0.9)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return list(ar_decode(causal_model, ids, real, config, tok.mask_id, tok.eos_id,
                              g))[-1].tokens

    assert torch.equal(run(3), run(3))


@pytest.mark.slow
def test_train_the_ar_baseline_then_generate_from_its_checkpoint(tmp_path, pairs_tsv):
    from dlm import DiffusionLM
    from dlm.errors import ConfigError
    from dlm.training.train import train

    result = train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar", max_steps=30,
                                     eval_every=30))
    rows = [json.loads(line) for line in (tmp_path / "ar" / "metrics.jsonl").open()]
    evals = [r for r in rows if "val_nll" in r]
    assert evals[0]["step"] == 0 and evals[-1]["val_nll"] < evals[0]["val_nll"]
    meta = json.loads((result.checkpoint / "config.json").read_text())
    assert meta["objective"] == "ar" and meta["model"]["causal"] is True
    lm = DiffusionLM.load(result.checkpoint, "cpu")
    assert lm.objective.name == "ar"
    steps = []
    reply = lm.generate("hello", SampleConfig(length=8), on_step=steps.append)[0]
    assert isinstance(reply, str) and len(steps) >= 2
    with pytest.raises(ConfigError, match="causal \\(ar\\) model"):
        train(tiny_train_config(tmp_path / "d", pairs_tsv, objective="uniform",
                                init_from=str(result.checkpoint)))
    with pytest.raises(ConfigError, match="unknown objective"):
        train(tiny_train_config(tmp_path / "x", pairs_tsv, objective="gpt"))
