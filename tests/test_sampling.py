import pytest
import torch

from dlm.config import SampleConfig
from dlm.sampling import RULES, commit_counts, denoise, filter_logits, sample, sample_tokens

MASK, V = 1, 12


def mock_denoiser(seed=0):
    """Fixed random logits per position: stands in for a trained model."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(64, V, generator=g) * 3

    def fn(ids, key_padding):
        B, T = ids.shape
        return table[:T].expand(B, T, V).clone()
    return fn


def run(config, prompt=None, rule="low_confidence", seed=None, denoiser=None, eos_id=None):
    prompt = torch.tensor([[2, 3, 4], [5, 6, 7]]) if prompt is None else prompt
    config = SampleConfig(**{**vars(config), "rule": rule})
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return list(denoise(denoiser or mock_denoiser(), prompt, None, config, MASK, g, eos_id))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_position_committed_exactly_once_and_no_mask_left(rule):
    steps = run(SampleConfig(length=10, steps=4, temperature=1.0), rule=rule, seed=0)
    committed = torch.stack([s.newly_committed for s in steps]).sum(0)
    assert (committed == 1).all()
    assert not (steps[-1].tokens == MASK).any()
    for prev, cur in zip(steps, steps[1:], strict=False):  # committed tokens never change
        kept = prev.tokens != MASK
        assert torch.equal(cur.tokens[kept], prev.tokens[kept])


@pytest.mark.parametrize("length,steps,counts", [(10, 4, [3, 3, 2, 2]), (8, 8, [1] * 8),
                                                 (32, 16, [2] * 16), (5, 8, [1] * 5)])
def test_commit_counts_per_step(length, steps, counts):
    states = run(SampleConfig(length=length, steps=steps))
    got = [int(s.newly_committed[0].sum()) for s in states[1:]]
    assert got == counts


def test_first_state_is_all_masks_and_step_indices_count_up():
    states = run(SampleConfig(length=6, steps=3))
    assert (states[0].tokens == MASK).all() and states[0].step_index == 0
    assert [s.step_index for s in states] == [0, 1, 2, 3]


def test_seed_reproduces_and_temperature_zero_is_deterministic():
    cfg = SampleConfig(length=12, steps=6, temperature=1.0)
    assert torch.equal(run(cfg, seed=7)[-1].tokens, run(cfg, seed=7)[-1].tokens)
    assert not torch.equal(run(cfg, seed=7)[-1].tokens, run(cfg, seed=8)[-1].tokens)
    greedy = SampleConfig(length=12, steps=6)
    assert torch.equal(run(greedy)[-1].tokens, run(greedy)[-1].tokens)


def test_greedy_picks_the_argmax_and_never_the_mask():
    prompt = torch.tensor([[2, 3]])
    final = run(SampleConfig(length=8, steps=8), prompt=prompt)[-1].tokens
    logits = mock_denoiser()(torch.zeros(1, 10, dtype=torch.long), None)[:, 2:]
    logits[..., MASK] = float("-inf")
    assert torch.equal(final, logits.argmax(-1))


def test_low_confidence_commits_the_most_confident_first():
    states = run(SampleConfig(length=8, steps=8), prompt=torch.tensor([[2, 3]]))
    first = states[1].newly_committed[0].nonzero().item()
    logits = mock_denoiser()(torch.zeros(1, 10, dtype=torch.long), None)[0, 2:]
    logits[:, MASK] = float("-inf")
    assert first == logits.softmax(-1).max(-1).values.argmax().item()


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


def test_commit_counts_spread_the_remainder_first():
    assert commit_counts(torch.tensor([10]), 4).item() == 3
    assert commit_counts(torch.tensor([0]), 4).item() == 0


def test_sample_reports_every_state_to_the_callback():
    seen = []
    final = sample(mock_denoiser(), torch.tensor([[2, 3]]), None, SampleConfig(length=4, steps=2),
                   MASK, on_step=seen.append)
    assert len(seen) == 3 and torch.equal(final, seen[-1].tokens)


def test_blocks_are_decoded_left_to_right_with_their_share_of_steps():
    states = run(SampleConfig(length=12, steps=6, block_length=4))
    for s in states[1:]:
        committed = s.newly_committed[0].nonzero().flatten().tolist()
        block = (s.step_index - 1) // 2  # 3 blocks, 2 steps each
        assert committed and all(4 * block <= i < 4 * block + 4 for i in committed)
        if s.step_index % 2 == 0:  # a block is finished after its two steps
            assert not (s.tokens[0, : 4 * block + 4] == MASK).any()
        assert (s.tokens[0, 4 * block + 4:] == MASK).all()  # later blocks untouched
    with pytest.raises(Exception, match="fewer than the 3 blocks"):
        run(SampleConfig(length=12, steps=2, block_length=4))


def test_defer_eos_commits_the_words_before_the_eos():
    EOS = 0

    def eos_everywhere_but_first(ids, key_padding):
        logits = torch.zeros(*ids.shape, V)
        logits[..., EOS] = 9.0  # eos is the surest prediction at every position
        logits[:, -6, EOS] = 0.0
        logits[:, -6, 5] = 2.0  # ... except the first response position, a word
        return logits

    config = SampleConfig(length=6, steps=6, defer_eos=False)
    plain = run(config, denoiser=eos_everywhere_but_first, eos_id=EOS)
    deferred = run(SampleConfig(**{**vars(config), "defer_eos": True}),
                   denoiser=eos_everywhere_but_first, eos_id=EOS)
    assert not plain[1].newly_committed[0, 0]  # eos first, the word last
    assert deferred[1].newly_committed[0, 0] and deferred[1].tokens[0, 0] == 5
    assert torch.equal(plain[-1].tokens, deferred[-1].tokens)  # same tokens, other order
