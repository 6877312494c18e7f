"""The drafter's prefix cache across speculative rounds, and bfloat16 inference weights."""

import dataclasses

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.diffusion.shift import Shifted
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.draft import draft
from dlm.sampling.draft_cache import PrefixCachedDrafter, prefix_cached

from .conftest import tiny_config
from .test_speculative import TEXTS, ar_reply, prompts, spec_reply


def counting(drafter):
    """The drafter, recording how many query positions each call computes."""
    seen = []

    def call(canvas, key_padding, select=None):
        seen.append(canvas.shape[0] * canvas.shape[1])
        return drafter(canvas, key_padding, select)
    return call, seen


@pytest.mark.parametrize("draft_steps, window, shift", [(1, 0, False), (3, 0, False),
                                                        (1, 4, False), (2, 0, True)])
def test_greedy_with_a_cached_drafter_is_still_ar_greedy(models, tok, draft_steps, window,
                                                         shift):
    """Left-padded rows of unequal lengths that finish at different rounds: the reply is
    the verifier's, and the cached drafter computes fewer positions than the uncached."""
    verifier, drafter = models
    model = Transformer(dataclasses.replace(drafter.config, shift=True)).double().eval() \
        if shift else drafter
    drafter = Shifted(model) if shift else model
    prompt, padding = prompts(tok, TEXTS)
    config = SampleConfig(length=20, decode="speculative", draft_length=3,
                          draft_steps=draft_steps, draft_window=window)
    reference = ar_reply(verifier, prompt, padding, config, tok)
    plain, plain_seen = counting(drafter)
    assert torch.equal(spec_reply(plain, verifier, prompt, padding, config, tok), reference)
    cached = dataclasses.replace(config, cache="prefix")
    calls = []
    original = PrefixCachedDrafter.__call__

    def spy(self, canvas, key_padding, window):
        out = original(self, canvas, key_padding, window)
        calls.append(self)
        return out
    PrefixCachedDrafter.__call__ = spy
    try:
        got = spec_reply(drafter, verifier, prompt, padding, cached, tok)
    finally:
        PrefixCachedDrafter.__call__ = original
    assert torch.equal(got, reference)
    assert (reference == tok.eos_id).any(1).sum() >= 1  # some rows left the batch early
    assert calls and calls[-1].positions_computed < 0.6 * sum(plain_seen)


def test_the_first_call_is_exact_and_later_calls_read_the_cache(models, tok):
    """Call 1 computes the whole canvas (the uncached logits); call 2, after tokens were
    committed, computes only from the last window on, and matches a forward over the
    whole canvas whose prefix keys are those of call 1."""
    _, model = models
    prompt, padding = prompts(tok, TEXTS[:3])
    B, P = prompt.shape
    reply = torch.full((B, 12), tok.mask_id)
    canvas = torch.cat([prompt, reply], 1)
    full_padding = torch.cat([padding, torch.ones_like(reply, dtype=torch.bool)], 1)
    window = torch.zeros_like(canvas, dtype=torch.bool)
    window[:, P : P + 4] = True
    cached = PrefixCachedDrafter(model, B, P + 12)
    torch.testing.assert_close(cached(canvas, full_padding, window),
                               model(canvas, full_padding, window), atol=1e-12, rtol=0)
    assert cached.cache.length == P  # the prompt is what every row has committed
    canvas[:, P : P + 2] = torch.tensor(tok.encode("hello there")[:2])
    window[:] = False
    window[:, P + 2 : P + 6] = True
    before = cached.positions_computed
    got = cached(canvas, full_padding, window)
    assert cached.positions_computed - before == B * 12  # not the prompt again
    cache = model.new_cache(B, P + 12)
    model(torch.cat([prompt, torch.full((B, 12), tok.mask_id)], 1), full_padding,
          cache=cache)  # the prompt's keys as call 1 computed them
    cache.truncate(P)
    expected = model(canvas[:, P:], full_padding, window[:, P:], cache=cache, start=P)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_finished_rows_leave_the_cache(models, tok):
    _, model = models
    prompt, _ = prompts(tok, ["hello", "hi there", "bye now"])
    cached = PrefixCachedDrafter(model, 3, prompt.shape[1] + 8)
    reply = torch.full((3, 8), tok.mask_id)
    counts = torch.tensor([2, 2, 2])
    written = torch.zeros(3, dtype=torch.int64)
    config = SampleConfig(length=8, decode="speculative")
    draft(cached, prompt, None, reply, written, counts, 2, config, tok.mask_id, tok.eos_id,
          (), (), None)
    keys = cached.cache.keys[0].clone()
    alone = draft(cached, prompt, None, reply, written, torch.tensor([0, 0, 2]), 2, config,
                  tok.mask_id, tok.eos_id, (), (), None)[0]
    assert cached.rows.tolist() == [2] and cached.cache.keys[0].shape[0] == 1
    assert torch.equal(cached.cache.keys[0][0, :, : prompt.shape[1]],
                       keys[2, :, : prompt.shape[1]])
    assert alone[:2].eq(tok.eos_id).all()  # finished rows draft nothing


def test_only_full_attention_drafters_take_a_cache(models, tok):
    verifier, drafter = models
    assert prefix_cached(drafter, 1, 32) is not None
    assert prefix_cached(verifier, 1, 32) is None  # causal
    assert prefix_cached(lambda canvas, padding, select=None: None, 1, 32) is None
    prompt, _ = prompts(tok, ["hello"])
    config = SampleConfig(length=8, decode="speculative", cache="prefix")
    with pytest.raises(ConfigError, match="cache"):
        spec_reply(lambda canvas, padding, select=None: None, verifier, prompt, None, config,
                   tok)


def test_bfloat16_weights(tmp_path, tok):
    """load(dtype=...) casts the weights (the verifier follows the drafter's dtype); the
    bfloat16 model still replies through every decoding, and a bad name is refused."""
    from dlm.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "d", Transformer(tiny_config(tok.vocab_size)), tok,
                    {"objective": "diffusion"})
    save_checkpoint(tmp_path / "ar", Transformer(tiny_config(tok.vocab_size, causal=True)),
                    tok, {"objective": "ar"})
    lm = DiffusionLM.load(tmp_path / "d", "cpu", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16
    lm.with_verifier(tmp_path / "ar")
    assert lm.verifier.dtype == torch.bfloat16
    ar = DiffusionLM.load(tmp_path / "ar", "cpu", dtype=torch.bfloat16)
    config = SampleConfig(length=8, eos="ban")
    spec = dataclasses.replace(config, decode="speculative", draft_length=3, cache="prefix")
    assert len(lm.reply_ids([[{"role": "user", "content": "hello"}]], spec)[0]) == 8
    assert len(ar.generate("hello", config)) == 1
    assert len(lm.generate("hello", SampleConfig(length=8, steps=4))) == 1
    with pytest.raises(ConfigError, match="dtype"):
        DiffusionLM.load(tmp_path / "d", "cpu", dtype="float16")


def test_the_verifier_cache_grows_when_refusals_leave_gaps(models, tok, monkeypatch):
    """Rows that keep different counts leave hidden slots; the cache starts at the reply's
    size and grows (keeping what is written), and the reply is still AR's."""
    from dlm.model import KVCache

    from .test_speculative import Oracle

    grown = []
    reserve = KVCache.reserve

    def spy(self, capacity):
        grown.append((self.capacity, capacity))
        reserve(self, capacity)
    monkeypatch.setattr(KVCache, "reserve", spy)
    verifier, _ = models
    prompt, padding = prompts(tok, TEXTS)
    config = SampleConfig(length=40, decode="speculative", draft_length=16,
                          adaptive_draft=False, max_draft_length=16, eos="ban")
    reference = ar_reply(verifier, prompt, padding, config, tok)
    drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, 0.8, seed=3)
    assert torch.equal(spec_reply(drafter, verifier, prompt, padding, config, tok), reference)
    assert grown and all(new > old for old, new in grown)
