"""Speculative decoding: a diffusion drafter, an AR verifier, the verifier's output exactly."""

import itertools
import math

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.ar import ar_decode
from dlm.sampling.sampler import final_tokens
from dlm.sampling.speculative import next_draft_length, speculative_decode
from dlm.sampling.verify import verify_drafts

from .conftest import tiny_config


def prompts(tok, texts):
    rows = [tok.encode(t) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tok.pad_id] * (width - len(r)) + r for r in rows])
    return ids, (ids != tok.pad_id) if any(len(r) < width for r in rows) else None


class Oracle:
    """A drafter that knows the verifier's reply and proposes it at each position with
    probability `right`, else a random token: it exercises both kept and refused drafts."""

    def __init__(self, reference: torch.Tensor, P: int, vocab: int, right: float, seed: int):
        self.reference, self.P, self.vocab, self.right = reference, P, vocab, right
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, canvas, key_padding, select=None):
        B, T = canvas.shape
        logits = torch.randn(B, T, self.vocab, generator=self.generator, dtype=torch.float64)
        hit = torch.rand(B, T, generator=self.generator) < self.right
        L = self.reference.shape[1]
        for b, i in itertools.product(range(B), range(L)):
            if hit[b, self.P + i]:
                logits[b, self.P + i, int(self.reference[b, i])] = 50.0
        return logits if select is None else logits[select]


def ar_reply(verifier, prompt, padding, config, tok):
    return final_tokens(ar_decode(verifier, prompt, padding, config, tok.mask_id, tok.eos_id))


def spec_reply(drafter, verifier, prompt, padding, config, tok, generator=None, on_step=None):
    steps = speculative_decode(drafter, verifier, prompt, padding, config, tok.mask_id,
                               tok.eos_id, generator=generator)
    return final_tokens(steps, on_step)


TEXTS = ["hello", "how are you doing", "hi", "tell me a joke", "what time is it", "bye",
         "thank you", "good morning"]


@pytest.mark.parametrize("k, adaptive, right", [(1, False, 0.5), (2, False, 0.8),
                                                (4, True, 0.8), (7, False, 0.95),
                                                (16, True, 0.3), (4, True, 1.0)])
def test_greedy_speculative_output_is_ar_greedy_output(models, tok, k, adaptive, right):
    verifier, _ = models
    for first in range(0, len(TEXTS), 2):  # batches of two prompts of unequal lengths
        prompt, padding = prompts(tok, TEXTS[first : first + 2])
        config = SampleConfig(length=24, decode="speculative", draft_length=k,
                              adaptive_draft=adaptive, max_draft_length=16, eos="ban")
        reference = ar_reply(verifier, prompt, padding, config, tok)
        drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, right, seed=first + k)
        got = spec_reply(drafter, verifier, prompt, padding, config, tok)
        assert torch.equal(got, reference), (k, right, got, reference)


@pytest.mark.parametrize("draft_steps", [1, 3])
def test_greedy_with_a_real_drafter_and_each_prompt_alone(models, tok, draft_steps):
    """The random full-attention drafter (mostly refused), one prompt at a time and all in
    one left-padded batch: the same replies as AR decoding of that batch."""
    verifier, drafter = models
    config = SampleConfig(length=20, decode="speculative", draft_length=3,
                          draft_steps=draft_steps)
    prompt, padding = prompts(tok, TEXTS)
    reference = ar_reply(verifier, prompt, padding, config, tok)
    rows = []

    def recording(canvas, key_padding, select=None):
        rows.append(canvas.shape[0])
        return drafter(canvas, key_padding, select)

    assert torch.equal(spec_reply(recording, verifier, prompt, padding, config, tok), reference)
    # rows that have ended are left out of the drafter's batch
    assert (reference == tok.eos_id).any(1).sum() >= 1 and min(rows) < len(TEXTS)
    for text in TEXTS[:3]:
        one, _ = prompts(tok, [text])
        assert torch.equal(spec_reply(drafter, verifier, one, None, config, tok),
                           ar_reply(verifier, one, None, config, tok))


@pytest.mark.parametrize("window", [1, 3])
def test_a_draft_window_shortens_the_drafters_canvas_and_keeps_the_reply(models, tok, window):
    """draft_window: the drafter sees `window` reply positions past its drafts, never the
    whole canvas (rows of a batch draft at different places); the reply stays AR's."""
    verifier, drafter = models
    seen = []

    def recording(canvas, key_padding, select=None):
        seen.append(canvas.shape[1])
        return drafter(canvas, key_padding, select)

    prompt, padding = prompts(tok, TEXTS[:4])
    config = SampleConfig(length=20, decode="speculative", draft_length=3,
                          draft_window=window, eos="ban")
    reference = ar_reply(verifier, prompt, padding, config, tok)
    assert torch.equal(spec_reply(recording, verifier, prompt, padding, config, tok), reference)
    assert max(seen) == prompt.shape[1] + 20  # the last drafts reach the canvas end
    assert min(seen) <= prompt.shape[1] + 3 + window  # the first round: k drafts + window
    assert len(set(seen)) > 2  # it moves with the reply


def test_rules_of_ar_decoding_hold_in_verification(models, tok):
    """Repetition penalty and the n-gram ban depend on the drafts before each position."""
    verifier, _ = models
    prompt, padding = prompts(tok, TEXTS[:4])
    config = SampleConfig(length=24, decode="speculative", draft_length=5,
                          repetition_penalty=1.5, no_repeat_ngram=2)
    reference = ar_reply(verifier, prompt, padding, config, tok)
    drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, 0.8, seed=3)
    assert torch.equal(spec_reply(drafter, verifier, prompt, padding, config, tok), reference)


def test_the_cache_rolls_back_after_a_refusal(models, tok):
    """After each round the verifier's cache holds exactly the keys of the written tokens:
    a fresh prefill of the prompt and reply gives the same next-token logits."""
    verifier, _ = models
    prompt, _ = prompts(tok, ["how are you doing"])
    config = SampleConfig(length=16, decode="speculative", draft_length=4,
                          adaptive_draft=False, eos="ban")
    reference = ar_reply(verifier, prompt, None, config, tok)
    drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, 0.6, seed=1)
    caches = []
    original = verifier.new_cache

    def recording(batch, max_len):
        caches.append(original(batch, max_len))
        return caches[-1]

    verifier.new_cache = recording
    checked = refusals = 0
    P = prompt.shape[1]

    def check(step):
        nonlocal checked, refusals
        if step.rejected is None:
            return
        refusals += int(step.rejected.sum())
        cache = caches[-1]
        n = int((step.tokens[0] != tok.mask_id).sum())
        assert cache.length == P + n - 1  # everything written but the pending last token
        context = torch.cat([prompt, step.tokens[:, : n]], 1)
        fresh = verifier(context)[:, -1]
        cached = verifier(context[:, -1:], cache=cache, start=cache.length)[:, -1]
        cache.truncate(P + n - 1)  # undo this probe's write
        torch.testing.assert_close(cached, fresh, atol=1e-9, rtol=1e-9)
        checked += 1

    try:
        got = spec_reply(drafter, verifier, prompt, None, config, tok, on_step=check)
    finally:
        del verifier.new_cache
    assert torch.equal(got, reference)
    assert checked >= 3 and refusals >= 1


def test_batch_rows_with_gaps_attend_as_alone(models, tok):
    """Rows keep different counts, so refused slots stay hidden in the middle of a row's
    cache; their own rotary positions make it attend as if alone (float64: equal)."""
    verifier, _ = models
    prompt, padding = prompts(tok, ["hi", "how are you doing"])
    config = SampleConfig(length=16, decode="speculative", draft_length=6, eos="ban")
    reference = ar_reply(verifier, prompt, padding, config, tok)
    drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, 0.6, seed=5)
    kept = []
    got = spec_reply(drafter, verifier, prompt, padding, config, tok,
                     on_step=lambda s: kept.append(s.newly_committed.sum(1).tolist()))
    assert any(a != b for a, b in kept[1:]), "rows never kept different counts"
    assert torch.equal(got, reference)


# ---- sampling: the output is distributed as the verifier's --------------------------
V, EOS, MASK = 6, 4, 5  # ids 0-3 are text


class Bigram:
    """A mock verifier: the next token's distribution depends on the previous token only
    (so its 'cache' need only count positions)."""

    def __init__(self, table: torch.Tensor):
        self.table = table.log()  # (V, V): row = previous token
        self.config = type("C", (), {"max_seq_len": 1000})()

    def new_cache(self, batch, max_len):
        from dlm.model import KVCache

        return KVCache(type("C", (), {"kv_heads": 1, "head_width": 1, "n_layers": 0})(), batch,
                       max_len, "cpu", torch.float64)

    def __call__(self, ids, key_padding=None, cache=None, start=None, positions=None):
        if cache is not None:
            start = cache.length if start is None else start
            cache.length = max(cache.length, start + ids.shape[1])
        return self.table[ids]


class Drafter:
    """A mock drafter unlike the verifier: its proposal depends on the tokens to the left
    and to the right when those are already written or drafted (so a draft committed
    before the one on its left would bias the acceptance rule)."""

    def __init__(self, table: torch.Tensor, right: torch.Tensor, blank: torch.Tensor):
        self.table, self.right, self.blank = table.log(), 3 * right.log(), blank.log()

    def __call__(self, canvas, key_padding, select=None):
        left = torch.cat([canvas[:, :1], canvas[:, :-1]], 1)
        right = torch.cat([canvas[:, 1:], torch.full_like(canvas[:, :1], MASK)], 1)
        logits = torch.where((left == MASK)[..., None], self.blank, self.table[left])
        logits = logits + torch.where((right == MASK)[..., None], 0.0, self.right[right])
        return logits if select is None else logits[select]


def exact_distribution(table, first, L):
    """P(reply) of a bigram model from token `first`, eos absorbing, over all replies."""
    out = {}
    for reply in itertools.product(range(V - 1), repeat=L):
        p, prev, ended = 1.0, first, False
        for t in reply:
            if ended:
                p *= float(t == EOS)
            else:
                p *= float(table[prev, t])
                ended = t == EOS
            prev = t
        if p > 0:
            out[reply] = p
    return out


@pytest.mark.parametrize("k, draft_steps, temperature", [(1, 1, 1.0), (3, 1, 1.0),
                                                        (3, 3, 1.0), (2, 2, 0.7)])
def test_sampled_replies_follow_the_verifier_distribution(k, draft_steps, temperature):
    g = torch.Generator().manual_seed(0)
    table = torch.rand(V, V, generator=g, dtype=torch.float64) ** 2
    table[:, MASK] = 0
    table = table / table.sum(1, keepdim=True)
    draft_table = torch.rand(V, V, generator=g, dtype=torch.float64) + 0.05
    right = torch.rand(V, V, generator=g, dtype=torch.float64) + 0.05
    blank = torch.rand(V, generator=g, dtype=torch.float64) + 0.05
    verifier, drafter = Bigram(table), Drafter(draft_table, right, blank)
    n, L = 20000, 3
    prompt = torch.full((n, 2), 1)
    config = SampleConfig(length=L, decode="speculative", draft_length=k,
                          draft_steps=draft_steps, temperature=temperature)
    steps = speculative_decode(drafter, verifier, prompt, None, config, MASK, EOS,
                               generator=torch.Generator().manual_seed(1))
    replies = final_tokens(steps)
    tempered = table.log() / temperature
    tempered[:, MASK] = -math.inf
    expected = exact_distribution(tempered.softmax(1), 1, L)
    counts: dict = {}
    for row in replies.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert set(counts) <= set(expected), set(counts) - set(expected)
    chi2 = sum((counts.get(c, 0) - n * p) ** 2 / (n * p) for c, p in expected.items())
    dof = len(expected) - 1
    # the 99.9% quantile of chi-square (Wilson-Hilferty), so a correct sampler fails 1/1000
    z = 3.09
    bound = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < bound, (chi2, bound, dof)


def test_the_acceptance_rule_by_hand():
    """p = (0.5, 0.5), q = (1, 0): the draft 0 is kept with probability 1/2; a refusal
    takes 1 (the residual), never 0."""
    drafts = torch.zeros(40000, 1, dtype=torch.int64)
    target = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64).expand(40000, 2, 2)
    proposal = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(40000, 1, 2)
    verdict = verify_drafts(drafts, torch.ones(40000, dtype=torch.int64), target, proposal,
                            torch.Generator().manual_seed(0))
    kept = verdict.accepted.double().mean()
    assert abs(kept - 0.5) < 0.01
    assert bool((verdict.next_tokens[verdict.accepted == 0] == 1).all())
    free = verdict.next_tokens[verdict.accepted == 1].double().mean()  # drawn from (.2, .8)
    assert abs(free - 0.8) < 0.015


def test_adaptive_draft_length():
    config = SampleConfig(decode="speculative", draft_length=4, max_draft_length=16)
    counts = torch.tensor([4, 4])
    assert next_draft_length(4, torch.tensor([4, 4]), counts, config) == 8
    assert next_draft_length(16, torch.tensor([16, 16]), torch.tensor([16, 16]), config) == 16
    assert next_draft_length(8, torch.tensor([2, 0]), torch.tensor([8, 8]), config) == 3
    fixed = SampleConfig(decode="speculative", draft_length=4, adaptive_draft=False)
    assert next_draft_length(4, torch.tensor([4, 4]), counts, fixed) == 4
    with pytest.raises(ConfigError, match="max_draft_length"):
        SampleConfig(draft_length=8, max_draft_length=4)


# ---- the Python API ------------------------------------------------------------------
def test_the_api_refuses_what_cannot_verify(models, tok):
    verifier, drafter = models
    lm = DiffusionLM(drafter.float(), tok)
    with pytest.raises(ConfigError, match="needs a verifier"):
        lm.generate("hello", SampleConfig(decode="speculative"))
    with pytest.raises(ConfigError, match="not an autoregressive"):
        lm.with_verifier(DiffusionLM(drafter, tok))
    other = type(tok).train(["completely different words here"] * 20, vocab_size=280)
    with pytest.raises(ConfigError, match="another tokenizer"):
        lm.with_verifier(DiffusionLM(verifier, other, objective="ar"))
    ar = DiffusionLM(verifier, tok, objective="ar")
    with pytest.raises(ConfigError, match="cannot draft"):
        ar.with_verifier(ar)
    # a drafter trained with rainbow padding holds pad ids the verifier lacks: accepted
    # (pads are proposed as eos); a verifier with ids the drafter lacks is not
    padded = tok.with_rainbow(7)
    DiffusionLM(drafter, padded).with_verifier(ar)
    with pytest.raises(ConfigError, match="another tokenizer"):
        lm.with_verifier(DiffusionLM(verifier, padded, objective="ar"))
    drafter.double()


def test_the_api_reply_equals_the_verifier_greedy_reply(models, tok):
    verifier, drafter = models
    lm = DiffusionLM(drafter, tok).with_verifier(DiffusionLM(verifier, tok, objective="ar"))
    ar = DiffusionLM(verifier, tok, objective="ar")
    config = SampleConfig(length=16, decode="speculative", draft_length=4)
    for text in ["hello", "what is your name"]:
        assert lm.generate(text, config) == ar.generate(text, SampleConfig(length=16))


def test_the_verifier_reads_the_prompt_as_it_would_alone(models, tok):
    """A drafter trained on shorter prompts than its verifier: the prompt is cut where the
    verifier cuts it, so the reply is still the verifier's own."""
    verifier, drafter = models
    ar = DiffusionLM(verifier, tok, max_prompt_len=32, objective="ar")
    lm = DiffusionLM(drafter, tok, max_prompt_len=3).with_verifier(ar)
    config = SampleConfig(length=12, decode="speculative", draft_length=4)
    text = "what time is it now tell me a joke"
    assert lm.generate(text, config) == ar.generate(text, SampleConfig(length=12))


def test_traces_show_drafted_accepted_and_rejected_tokens(models, tok):
    """The trace (CLI and --trace-file) and the server's frames tell the three apart."""
    from dlm.cli.render import _pieces, step_record
    from dlm.server.stream import frame

    verifier, _ = models
    prompt, _ = prompts(tok, ["how are you doing"])
    config = SampleConfig(length=16, decode="speculative", draft_length=4, eos="ban")
    reference = ar_reply(verifier, prompt, None, config, tok)
    drafter = Oracle(reference, prompt.shape[1], tok.vocab_size, 0.6, seed=1)
    steps = []
    spec_reply(drafter, verifier, prompt, None, config, tok, on_step=steps.append)
    kinds = {kind for s in steps for _, kind, _ in _pieces(s, 0, tok, stop_at_eos=False)}
    assert {"drafted", "accepted", "rejected"} <= kinds
    records = [step_record(s, 0, tok, stop_at_eos=False) for s in steps[1:]]
    assert sum(r.get("drafted", 0) for r in records) >= sum(r.get("rejected", 0)
                                                              for r in records) >= 1
    frames = [frame(s, 0, tok) for s in steps[1:]]
    assert {f["phase"] for f in frames} == {"draft", "verify"}
    assert any(t["rejected"] for f in frames for t in f["tokens"])
    for f in frames:  # a draft frame commits nothing; a verify frame drafts nothing
        drafted = any(t["drafted"] for t in f["tokens"])
        new = any(t["new"] for t in f["tokens"])
        assert (drafted and not new) if f["phase"] == "draft" else (new and not drafted)


def test_a_block_diffusion_drafter(tok):
    """BD3-LM drafts within each row's current block (its logits there are the BD3
    sampler's: the clean earlier blocks block-causally in the cache, then the block), and
    the reply is still the verifier's greedy reply."""
    from dlm.diffusion.block import block_causal_mask
    from dlm.sampling.block import BlockDrafter

    torch.manual_seed(2)
    bd3 = Transformer(tiny_config(tok.vocab_size)).double().eval()
    verifier = Transformer(tiny_config(tok.vocab_size, causal=True)).double().eval()
    with torch.no_grad():
        for p in verifier.parameters():
            p.mul_(6.0)
    prompt, padding = prompts(tok, ["hi", "how are you doing", "tell me a joke"])
    P, size = prompt.shape[1], 4
    drafter = BlockDrafter(bd3, size, P, tok.pad_id)
    # the layout: a row with 6 reply tokens written drafts positions 6, 7 of block 1
    reply = torch.full((1, 12), tok.mask_id)
    reply[0, :6] = torch.tensor(tok.encode("hello there how are you")[:6])
    canvas = torch.cat([prompt[1:2], reply], 1)
    got = drafter(canvas, None)[:, P + 4 : P + 8]
    left = -P % size
    ids = torch.cat([torch.full((1, left), tok.pad_id), canvas], 1)
    real = torch.cat([torch.zeros(1, left, dtype=torch.bool), torch.ones_like(canvas,
                                                                              dtype=torch.bool)], 1)
    a = left + P + 4  # the block's first position
    cache = bd3.new_cache(1, ids.shape[1])
    bd3(ids[:, :a], real[:, :a], cache=cache, start=0,
        attn_mask=block_causal_mask(a, size))
    expected = bd3(ids[:, a : a + 4], real[:, : a + 4], cache=cache, start=a)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)
    # the canvas cut after the block (what speculative decoding feeds it) changes nothing
    assert drafter.canvas_end(7) == 8
    torch.testing.assert_close(drafter(canvas[:, : P + 8], None)[:, P + 4 :], expected,
                               atol=1e-9, rtol=1e-9)
    assert drafter.limit(torch.tensor([0, 5, 7])).tolist() == [4, 3, 1]
    config = SampleConfig(length=20, decode="speculative", draft_length=8, eos="ban")
    steps = []
    got = spec_reply(drafter, verifier, prompt, padding, config, tok, on_step=steps.append)
    assert torch.equal(got, ar_reply(verifier, prompt, padding, config, tok))
    for s in steps:  # no draft crosses a block boundary
        if s.drafted is not None:
            for row in s.drafted.tolist():
                cols = [i for i, d in enumerate(row) if d]
                assert not cols or cols[0] // size == cols[-1] // size


def test_the_server_streams_only_verified_text_and_marks_the_drafts(tok):
    from fastapi.testclient import TestClient

    from dlm.config import ServeConfig
    from dlm.server import create_app
    from tests.server_util import sse_payloads, tiny_lm

    lm = tiny_lm(tok)
    torch.manual_seed(4)
    verifier = Transformer(tiny_config(tok.vocab_size, causal=True)).eval()
    with torch.no_grad():
        for p in verifier.parameters():
            p.mul_(6.0)
    lm.with_verifier(DiffusionLM(verifier, tok, objective="ar"))
    body = {"messages": [{"role": "user", "content": "how are you"}], "max_tokens": 16,
            "decode": "speculative", "draft_length": 4, "eos": "ban"}
    with TestClient(create_app(lm, ServeConfig())) as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        text = whole["choices"][0]["message"]["content"]
        streamed = sse_payloads(client.post("/v1/chat/completions",
                                            json={**body, "stream": True}).text)[:-1]
        frames = sse_payloads(client.post("/v1/denoise", json={**body, "stream": True}).text)
    assert text  # eos banned: 16 tokens of text
    pieces = [c["choices"][0]["delta"].get("content", "") for c in streamed]
    assert "".join(pieces) == text  # every delta was final: no draft was sent and undone
    steps = [f for f in frames if isinstance(f, dict) and f.get("type") == "step"]
    assert {f.get("phase") for f in steps} >= {"draft", "verify"}
    assert any(t["drafted"] for f in steps for t in f["tokens"])
