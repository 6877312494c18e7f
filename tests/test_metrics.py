"""Each quality measure against a case computed by hand."""

import math
import statistics

import pytest

from dlm.evaluation.metrics import (
    bits_per_byte,
    distinct_n,
    mean_and_stderr,
    repetition_rate,
    self_bleu,
    unigram_entropy,
)


def test_distinct_n_on_a_fixed_list():
    texts = ["a b a b", "a c"]
    # unigrams: a b a b a c -> 3 unique of 6; bigrams: ab ba ab | ac -> 3 unique of 4
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["a"], 2) == 0.0


def test_unigram_entropy_per_reply_then_averaged():
    # [1,1,1,1] has entropy 0; [1,2] has log 2; [1,2,3,4] has log 4
    assert unigram_entropy([[1, 1, 1, 1]]) == 0.0
    assert unigram_entropy([[1, 2], [1, 2, 3, 4]]) == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert unigram_entropy([[], [1, 2]]) == pytest.approx(math.log(2))  # empty replies skipped


def test_repetition_rate_counts_bigrams_seen_before_in_the_reply():
    # "a b a b a": bigrams ab ba ab ba -> the last two repeat: 2/4
    assert repetition_rate(["a b a b a"]) == pytest.approx(0.5)
    assert repetition_rate(["a b c d", "x y x y"]) == pytest.approx((0 + 1 / 3) / 2)


def test_self_bleu_is_100_for_identical_samples_and_low_for_unrelated_ones():
    same = ["the cat sat on the mat today"] * 3
    assert self_bleu(same) == pytest.approx(100.0)
    apart = ["the cat sat on the mat", "quantum fields obey gauge symmetry",
             "bake bread at two hundred degrees"]
    assert self_bleu(apart) < 10
    with pytest.raises(ValueError, match="at least two"):
        self_bleu(["only one"])


def test_bits_per_byte_and_standard_error():
    # 100 tokens at ln 2 nats each = 100 bits over 50 bytes = 2 bits per byte
    assert bits_per_byte(math.log(2), 100, 50) == pytest.approx(2.0)
    mean, se = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3) / 2)


def test_unigram_f1_and_bleu_2_against_references():
    from dlm.evaluation.metrics import bleu_2, unigram_f1

    # "I am fine." vs "I'm fine, thanks": overlap {fine} -> P 1/3, R 1/3 (i'm, fine, thanks)
    assert unigram_f1(["I am fine."], ["I'm fine, thanks"]) == pytest.approx(1 / 3)
    assert unigram_f1(["", "Yes, yes."], ["Sure.", "yes"]) == pytest.approx((0 + 2 / 3) / 2)
    assert bleu_2(["the cat sat"], ["the cat sat"]) == pytest.approx(100.0)
    assert bleu_2(["dog"], ["the cat sat"]) == 0.0
    with pytest.raises(ValueError, match="references"):
        unigram_f1(["a"], [])


def test_stutter_broken_end_and_the_shuffled_reference_control():
    from dlm.evaluation.metrics import broken_end, share, shuffled_f1, stutters, unigram_f1

    assert stutters("I am am am fine.") and stutters("No, no. No!")
    assert not stutters("I am am fine")  # two in a row is not three
    assert not stutters("well well, that is fine")
    assert broken_end("I think that") and not broken_end("Fine, thanks!")
    assert not broken_end('He said "yes."') and not broken_end("")
    assert share(["a a a", "b", "c c c"], stutters) == pytest.approx(2 / 3)
    refs = ["the cat sat", "a dog ran", "birds fly high"]
    assert shuffled_f1(refs, refs) < unigram_f1(refs, refs) == 1.0
    assert shuffled_f1(refs, refs) == 0.0  # every reply scored against another reference
    assert shuffled_f1(refs, refs, seed=1) == 0.0


def test_relevance_gap_is_paired_and_its_noise_is_stated():
    from dlm.evaluation.metrics import relevance_gap, shuffled_references

    refs = ["the cat sat", "a dog ran", "birds fly high", "fish swim deep"]
    others = shuffled_references(refs)
    assert sorted(others) == sorted(refs)
    assert all(o != r for o, r in zip(others, refs, strict=True))  # a derangement
    gap, se = relevance_gap(refs, refs)  # every reply is its own reference: F1 1 vs 0
    assert gap == pytest.approx(1.0) and se == pytest.approx(0.0)
    # half the replies right, half empty: per-prompt differences 1, 1, 0, 0
    gap, se = relevance_gap([refs[0], refs[1], "", ""], refs)
    assert gap == pytest.approx(0.5)
    assert se == pytest.approx(statistics.stdev([1, 1, 0, 0]) / 2)


def test_ratio_stderr_matches_the_delta_method_by_hand():
    from dlm.evaluation.metrics import ratio_stderr

    # equal lengths: the pooled ratio is a plain mean, and so is its standard error
    assert ratio_stderr([2.0, 4.0, 6.0], [1, 1, 1]) == pytest.approx(
        statistics.stdev([2.0, 4.0, 6.0]) / math.sqrt(3))
    assert ratio_stderr([3.0, 6.0], [1, 2]) == pytest.approx(0.0)  # every item at ratio 3
    assert math.isnan(ratio_stderr([1.0], [1]))
