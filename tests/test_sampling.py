"""The sampler against mock denoisers: every commit rule must pass `TestEveryRule`."""

import pytest
import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.sampling import (
    RULES,
    Canvas,
    commit_counts,
    denoise,
    filter_logits,
    reply_canvas,
    sample,
    sample_tokens,
)
from dlm.sampling.rules import block_budgets, remask_count
from dlm.sampling.sampler import guided_logits

MASK, EOS, V = 1, 0, 12
FIXED_COUNT_RULES = sorted(r for r in RULES if r != "threshold")


def mock_denoiser(seed=0, calls=None):
    """Fixed random logits per position: stands in for a trained model."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(64, V, generator=g) * 3

    def fn(ids, key_padding):
        if calls is not None:
            calls.append(ids.shape[0])
        B, T = ids.shape
        return table[:T].expand(B, T, V).clone()
    return fn


PROMPT = torch.tensor([[2, 3, 4], [5, 6, 7]])


def run(config, prompt=None, rule=None, seed=None, denoiser=None, eos_id=None, canvas=None):
    prompt = PROMPT if prompt is None else prompt
    if rule is not None:
        config = SampleConfig(**{**vars(config), "rule": rule})
    g = None if seed is None else torch.Generator().manual_seed(seed)
    canvas = canvas or reply_canvas(prompt, None, config.length, MASK, eos_id)
    return list(denoise(denoiser or mock_denoiser(), canvas, config, g))


def committed_per_step(states, row=0):
    return [int(s.newly_committed[row].sum()) for s in states[1:]]


@pytest.mark.parametrize("rule", sorted(RULES))
class TestEveryRule:
    """What any commit rule must do; a new rule in RULES is tested here automatically."""

    def test_no_mask_left_and_each_position_committed_once(self, rule):
        states = run(SampleConfig(length=10, steps=4, temperature=1.0), rule=rule, seed=0)
        committed = torch.stack([s.newly_committed for s in states]).sum(0)
        assert (committed[:, 3:] == 1).all() and (committed[:, :3] == 0).all()
        assert not (states[-1].tokens == MASK).any()

    def test_given_tokens_and_committed_tokens_never_change(self, rule):
        tokens = torch.tensor([[2, MASK, 4, MASK, MASK, 5, MASK, 6]])
        canvas = Canvas(tokens, MASK, EOS)
        states = run(SampleConfig(length=1, steps=3, temperature=1.0), rule=rule, seed=1,
                     canvas=canvas)
        given = tokens != MASK
        for prev, cur in zip(states, states[1:], strict=False):
            assert torch.equal(cur.tokens[given], tokens[given])
            kept = prev.tokens != MASK
            assert torch.equal(cur.tokens[kept], prev.tokens[kept])
        assert not (states[-1].tokens == MASK).any()

    def test_seed_reproduces(self, rule):
        cfg = SampleConfig(length=12, steps=6, temperature=1.0)
        assert torch.equal(run(cfg, rule=rule, seed=7)[-1].tokens,
                           run(cfg, rule=rule, seed=7)[-1].tokens)
        assert not torch.equal(run(cfg, rule=rule, seed=7)[-1].tokens,
                               run(cfg, rule=rule, seed=8)[-1].tokens)

    def test_temperature_zero_is_deterministic_and_argmax(self, rule):
        greedy = SampleConfig(length=8, steps=4)
        a, b = run(greedy, rule=rule, seed=1), run(greedy, rule=rule, seed=2)
        assert torch.equal(a[-1].tokens, b[-1].tokens)
        logits = mock_denoiser()(torch.zeros(1, 11, dtype=torch.long), None)[0, 3:]
        logits[:, MASK] = float("-inf")
        assert torch.equal(a[-1].tokens[0, 3:], logits.argmax(-1))

    def test_blocks_are_decoded_left_to_right(self, rule):
        states = run(SampleConfig(length=12, steps=6, block_length=4), rule=rule)
        seen_block = 0
        for s in states[1:]:
            committed = (s.newly_committed[0].nonzero().flatten() - 3).tolist()
            block = committed[0] // 4
            assert block >= seen_block and all(i // 4 == block for i in committed)
            seen_block = block
            assert (s.tokens[0, 3 + 4 * block + 4:] == MASK).all()  # later blocks untouched
            assert not (s.tokens[0, : 3 + 4 * block] == MASK).any()  # earlier ones full
        assert not (states[-1].tokens == MASK).any()

    def test_step_indices_count_up_and_nfe_counts_calls(self, rule):
        calls = []
        states = run(SampleConfig(length=6, steps=3), rule=rule,
                     denoiser=mock_denoiser(calls=calls))
        assert (states[0].tokens[:, 3:] == MASK).all() and states[0].step_index == 0
        assert [s.step_index for s in states] == list(range(len(states)))
        assert states[-1].nfe == len(calls) == len(states) - 1


@pytest.mark.parametrize("rule", FIXED_COUNT_RULES)
def test_fixed_count_rules_commit_exact_counts_per_step(rule):
    for length, steps, counts in [(10, 4, [3, 3, 2, 2]), (8, 8, [1] * 8),
                                  (32, 16, [2] * 16), (5, 8, [1] * 5)]:
        states = run(SampleConfig(length=length, steps=steps), rule=rule, seed=0)
        assert committed_per_step(states) == counts


def test_threshold_commits_every_sure_token_and_at_least_one_per_step():
    def sure_at(positions):  # the positions in `positions` are 99% sure, the rest flat
        def fn(ids, key_padding):
            logits = torch.zeros(*ids.shape, V)
            for p in positions:
                logits[:, p, 5] = 10.0
            return logits
        return fn

    config = SampleConfig(length=8, steps=8, rule="threshold", threshold=0.9)
    states = run(config, prompt=torch.tensor([[2, 3]]), denoiser=sure_at([2, 4, 5, 9]))
    assert committed_per_step(states)[0] == 4  # all four sure ones at once
    assert committed_per_step(states)[1:] == [1, 1, 1, 1]  # then one per step
    assert states[-1].nfe == 5 < config.steps  # steps was only an upper bound
    # With nothing sure, the step budget still holds: an even share per step.
    flat = run(SampleConfig(length=8, steps=2, rule="threshold"),
               prompt=torch.tensor([[2, 3]]), denoiser=sure_at([]))
    assert committed_per_step(flat) == [4, 4]


def test_remasking_revises_the_least_confident_earlier_commits_and_still_finishes():
    config = SampleConfig(length=16, steps=8, remask=0.5, temperature=1.0)
    states = run(config, seed=3)
    assert not (states[-1].tokens == MASK).any()
    total = sum(int(s.remasked.sum()) for s in states[1:])
    assert total > 0
    for prev, cur in zip(states, states[1:], strict=False):
        if cur.remasked.any():
            assert (prev.tokens[cur.remasked] != MASK).all()  # only committed tokens
            assert not (cur.newly_committed & cur.remasked).any()  # not this step's commits
            assert (cur.tokens[cur.remasked] == MASK).all()
            # the least confident of the earlier commits are the ones re-masked
            earlier = (prev.tokens != MASK) & (reply_positions(prev))
            for b in range(2):
                r = cur.remasked[b]
                if r.any():
                    kept = earlier[b] & ~r
                    assert prev.confidences[b][r].max() <= prev.confidences[b][kept].min()
        assert torch.equal(cur.tokens[:, :3], PROMPT)  # the prompt is never re-masked
    assert not states[-1].remasked.any()  # the rate decays to zero on the last step
    assert states[-1].nfe == config.steps  # revision costs no extra model call


def reply_positions(step):
    mask = torch.ones_like(step.tokens, dtype=torch.bool)
    mask[:, :3] = False
    return mask


def test_remask_rate_decays_to_zero():
    committed = torch.tensor([10])
    counts = [int(remask_count(committed, 0.5, left, 8)) for left in range(8, 0, -1)]
    assert counts[0] > counts[3] >= counts[-2] and counts[-1] == 0


def test_eos_ban_defer_and_allow():
    def eos_everywhere_but_first(ids, key_padding):
        logits = torch.zeros(*ids.shape, V)
        logits[..., EOS] = 9.0  # eos is the surest prediction at every position
        logits[:, -6, EOS] = 0.0
        logits[:, -6, 5] = 2.0  # ... except the first response position, a word
        return logits

    config = SampleConfig(length=6, steps=6)
    plain = run(config, denoiser=eos_everywhere_but_first, eos_id=EOS)
    deferred = run(SampleConfig(length=6, steps=6, eos="defer"),
                   denoiser=eos_everywhere_but_first, eos_id=EOS)
    banned = run(SampleConfig(length=6, steps=6, eos="ban"),
                 denoiser=eos_everywhere_but_first, eos_id=EOS)
    assert not plain[1].newly_committed[0, 3]  # eos first, the word last
    assert deferred[1].newly_committed[0, 3] and deferred[1].tokens[0, 3] == 5
    assert torch.equal(plain[-1].tokens, deferred[-1].tokens)  # same tokens, other order
    assert not (banned[-1].tokens[:, 3:] == EOS).any()  # exactly `length` tokens of text


def test_classifier_free_guidance_contrasts_with_the_prompt_dropped():
    seen = []

    def prompt_sensitive(ids, key_padding):
        seen.append(ids.clone())
        logits = torch.zeros(*ids.shape, V)
        has_prompt = (ids[:, :3] != MASK).all(1)  # (B,)
        logits[has_prompt, :, 5] = 2.0  # with the prompt: token 5 a little likelier
        logits[..., 6] = 1.0
        return logits

    canvas = reply_canvas(PROMPT, None, 4, MASK, EOS)
    guided, calls = guided_logits(prompt_sensitive, canvas.tokens, canvas, scale=2.0)
    assert calls == 2 and seen[-1].shape[0] == 4  # cond and uncond in one batch
    assert (seen[-1][2:, :3] == MASK).all() and torch.equal(seen[-1][:2], canvas.tokens)
    # uncond + (s + 1)(cond - uncond): token 5 gets 0 + 3 * 2 = 6
    assert torch.allclose(guided[..., 5], torch.full((2, 7), 6.0))
    states = run(SampleConfig(length=4, steps=2, cfg_scale=2.0), denoiser=prompt_sensitive)
    assert states[-1].nfe == 4
    assert (states[-1].tokens[:, 3:] == 5).all()
    plain_logits, one = guided_logits(prompt_sensitive, canvas.tokens, canvas, scale=0.0)
    assert one == 1


def test_sampling_is_float64_and_filters_work():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    tokens, probs = sample_tokens(logits, temperature=1.0, generator=torch.Generator())
    assert probs.dtype == torch.float64
    assert (filter_logits(logits, top_k=2) > float("-inf")).tolist() == [[True, True, False,
                                                                           False]]
    p = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, 0.03
    kept = filter_logits(logits, top_p=float(p[0] + p[1]) - 1e-3) > float("-inf")
    assert kept.tolist() == [[True, True, False, False]]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(logits, 1.0, top_k=1, generator=g)[0] for _ in range(20)])
    assert (draws == 0).all()


def test_low_confidence_commits_the_most_confident_first():
    states = run(SampleConfig(length=8, steps=8), prompt=torch.tensor([[2, 3]]))
    first = states[1].newly_committed[0].nonzero().item() - 2
    logits = mock_denoiser()(torch.zeros(1, 10, dtype=torch.long), None)[0, 2:]
    logits[:, MASK] = float("-inf")
    assert first == logits.softmax(-1).max(-1).values.argmax().item()


def test_commit_counts_and_block_budgets():
    assert commit_counts(torch.tensor([10]), 4).item() == 3
    assert commit_counts(torch.tensor([0]), 4).item() == 0
    assert block_budgets(12, 4, 7) == [(0, 4, 3), (4, 8, 2), (8, 12, 2)]
    with pytest.raises(ConfigError, match="fewer than the 3 blocks"):
        block_budgets(12, 4, 2)


def test_sample_reports_every_state_to_the_callback():
    seen = []
    canvas = reply_canvas(torch.tensor([[2, 3]]), None, 4, MASK)
    final = sample(mock_denoiser(), canvas, SampleConfig(length=4, steps=2),
                   on_step=seen.append)
    assert len(seen) == 3 and torch.equal(final, seen[-1].tokens)
    assert seen[-1].crop(2).tokens.shape == (1, 4)


@pytest.mark.parametrize("field,value,message", [
    ("rule", "best", "unknown commit rule"), ("eos", "never", "eos must be one of"),
    ("threshold", 0.0, "threshold"), ("remask", 1.0, "remask"), ("cfg_scale", -1, "cfg_scale"),
    ("temperature", float("nan"), "temperature"), ("temperature", float("inf"), "finite"),
    ("cfg_scale", float("nan"), "cfg_scale"), ("seed", 2**64, "64-bit")])
def test_bad_sample_config_is_refused_naming_its_field(field, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        SampleConfig(**{field: value})
    assert caught.value.field == field


def test_a_tiny_temperature_samples_like_greedy_instead_of_overflowing():
    from dlm.sampling.rules import sample_tokens

    logits = torch.tensor([[1.0, 3.0, float("-inf"), 2.0]])
    assert sample_tokens(logits, 1e-320)[0].tolist() == [1]


def test_threshold_with_deferred_eos_commits_words_first_then_the_sure_eos_at_once():
    def eos_sure_but_two(ids, key_padding):
        logits = torch.zeros(*ids.shape, V)
        logits[..., EOS] = 9.0  # eos is sure at every position...
        for p in (-6, -5):  # ... but the first two response positions are unsure words
            logits[:, p, EOS] = 0.0
            logits[:, p, 5] = 1.0
        return logits

    config = SampleConfig(length=6, steps=6, rule="threshold", threshold=0.9, eos="defer")
    states = run(config, denoiser=eos_sure_but_two, eos_id=EOS)
    assert committed_per_step(states) == [1, 1, 4]  # a word, a word, then every eos
    assert (states[2].tokens[:, 3:5] == 5).all() and (states[-1].tokens[:, 5:] == EOS).all()


def test_repetition_penalty_and_no_repeat_ngrams_are_pure_functions():
    from dlm.sampling.rules import penalise_repeats, repeated_ngram_bans, seen_tokens

    seen = seen_tokens(torch.tensor([[1, 3, -1, 9]]), 5, exempt=(3,))
    assert seen.tolist() == [[False, True, False, False, False]]  # 9 is out of range, 3 exempt
    logits = torch.tensor([[1.0, 2.0, -2.0, 0.5, 0.0]])
    out = penalise_repeats(logits, seen_tokens(torch.tensor([[1, 2]]), 5), 2.0)
    assert out.tolist() == [[1.0, 1.0, -4.0, 0.5, 0.0]]
    # "a b a" then b would repeat the bigram (a, b)
    bans = repeated_ngram_bans([[7, 8, 7], [7, 8]], 2, 10)
    assert bans[0].nonzero().flatten().tolist() == [8] and not bans[1].any()
    assert repeated_ngram_bans([[1, 2, 3]], 1, 5)[0].nonzero().flatten().tolist() == [1, 2, 3]


def test_diffusion_refuses_no_repeat_ngrams(tiny_model, tok):
    from dlm.errors import ConfigError
    from dlm.sampling import reply_canvas

    canvas = reply_canvas(torch.tensor([[tok.bos_id]]), None, 4, tok.mask_id, tok.eos_id)
    with pytest.raises(ConfigError, match="no_repeat_ngram"):
        list(denoise(tiny_model, canvas, SampleConfig(length=4, steps=2, no_repeat_ngram=2)))
    steps = list(denoise(tiny_model, canvas, SampleConfig(length=4, steps=4,
                                                          repetition_penalty=1e6)))
    reply = steps[-1].tokens[0, 1:].tolist()
    words = [t for t in reply if t != tok.eos_id]
    assert len(words) == len(set(words))  # a huge penalty never repeats a committed id
