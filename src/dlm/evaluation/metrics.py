"""Quality measures of generated text: pure functions of strings or token ids.

Each is defined so a hand-computed case can check it (see tests/test_metrics.py):

- `distinct_n`: unique n-grams / all n-grams, pooled over the replies (Li et al., 2016).
- `unigram_entropy`: the entropy (nats) of each reply's own token distribution,
  averaged over replies; a reply that repeats one token has 0. Generative perplexity
  is only meaningful next to it: a repetitive reply gets a low perplexity.
- `self_bleu`: BLEU-4 (sacrebleu, 0-100) of each sample against the other samples of
  the same prompt, averaged; higher means the samples are more alike.
- `repetition_rate`: the share of word bigrams of a reply that already occurred
  earlier in the same reply, averaged over replies.
- `bits_per_byte`: nats per token turned into bits per UTF-8 byte, so models with
  different tokenizers compare.
- `unigram_f1`: relevance to the reference reply: the F1 of the reply's and the
  reference's word multisets (lowercased, punctuation stripped; SQuAD's token F1),
  averaged over replies; an empty reply scores 0.
- `bleu_2`: corpus BLEU with 1- and 2-grams of the replies against the references
  (sacrebleu, 0-100).
- `relevance_gap`: F1 minus the F1 against other prompts' references, with its paired
  standard error (relevance beyond what common words give).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence

from dlm.util.statistics import mean_and_stderr


def words(text: str) -> list[str]:
    return text.split()


def ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all word n-grams of all texts (0 when there are none)."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def unigram_entropy(token_lists: Sequence[Sequence[int]]) -> float:
    """Mean over replies of the entropy (nats) of the reply's token frequencies."""
    values = [entropy(Counter(tokens)) for tokens in token_lists if len(tokens)]
    return statistics.fmean(values) if values else 0.0


def repetition_rate(texts: Sequence[str]) -> float:
    """Mean over replies of the share of word bigrams seen earlier in the same reply."""
    rates = []
    for text in texts:
        grams = ngrams(words(text), 2)
        if not grams:
            continue
        seen: set[tuple] = set()
        repeats = 0
        for g in grams:
            repeats += g in seen
            seen.add(g)
        rates.append(repeats / len(grams))
    return statistics.fmean(rates) if rates else 0.0


def self_bleu(samples: Sequence[str]) -> float:
    """Mean BLEU-4 of each sample against the others (sacrebleu, exponential smoothing)."""
    from sacrebleu.metrics import BLEU

    if len(samples) < 2:
        raise ValueError("self-BLEU needs at least two samples")
    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(s, [o for j, o in enumerate(samples) if j != i]).score
              for i, s in enumerate(samples)]
    return statistics.fmean(scores)


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    """Total nats over the text's UTF-8 bytes, in bits."""
    return nats_per_token * tokens / (n_bytes * math.log(2)) if n_bytes else float("nan")


def content_words(text: str) -> list[str]:
    """Lowercased words with punctuation stripped (what relevance compares)."""
    return [w for w in re.sub(r"[^\w\s']", " ", text.lower()).split() if w.strip("'")]


def f1_of(reply: str, reference: str) -> float:
    ours, theirs = Counter(content_words(reply)), Counter(content_words(reference))
    overlap = sum((ours & theirs).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(ours.values()), overlap / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


def f1_scores(replies: Sequence[str], references: Sequence[str]) -> list[float]:
    """The word-overlap F1 of each reply with its reference."""
    if len(replies) != len(references):
        raise ValueError(f"{len(replies)} replies for {len(references)} references")
    return [f1_of(r, ref) for r, ref in zip(replies, references, strict=True)]


def unigram_f1(replies: Sequence[str], references: Sequence[str]) -> float:
    """Mean word-overlap F1 of each reply with its reference."""
    scores = f1_scores(replies, references)
    return statistics.fmean(scores) if scores else 0.0


def bleu_2(replies: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-2 (sacrebleu, 0-100) of the replies against one reference each."""
    from sacrebleu.metrics import BLEU

    if len(replies) != len(references):
        raise ValueError(f"{len(replies)} replies for {len(references)} references")
    return BLEU(max_ngram_order=2).corpus_score(list(replies), [list(references)]).score


def stutters(text: str) -> bool:
    """A word said three times in a row ("the the the", case and punctuation ignored)."""
    ws = content_words(text)
    return any(a == b == c for a, b, c in zip(ws, ws[1:], ws[2:], strict=False))


def broken_end(text: str) -> bool:
    """A reply that stops mid-sentence: it has words but does not end with ., ! or ?
    (closing quotes and brackets after them allowed)."""
    stripped = text.rstrip().rstrip("\"')]\u201d\u2019")
    return bool(words(text)) and not stripped.endswith((".", "!", "?", "\u2026"))


def share(texts: Sequence[str], test) -> float:
    """The share of `texts` for which `test` holds (0 for none)."""
    return sum(bool(test(t)) for t in texts) / len(texts) if texts else 0.0


def shuffled_references(references: Sequence[str], seed: int = 0) -> list[str]:
    """Each prompt's reference replaced by another prompt's (a fixed derangement: never
    its own, so a reply scored against it can only overlap by common words)."""
    import random

    n = len(references)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    position = {i: k for k, i in enumerate(order)}
    return [references[order[(position[i] + 1) % n]] for i in range(n)]


def shuffled_f1(replies: Sequence[str], references: Sequence[str], seed: int = 0) -> float:
    """The relevance control: unigram F1 of each reply against another prompt's reference
    (`shuffled_references`). A model whose F1 is no higher than this is fluent, not
    relevant: its overlap with the reference comes from common words alone."""
    n = len(references)
    if len(replies) != n:
        raise ValueError(f"{len(replies)} replies for {n} references")
    if n < 2:
        return float("nan")
    return unigram_f1(replies, shuffled_references(references, seed))


def relevance_gap(replies: Sequence[str], references: Sequence[str],
                  seed: int = 0) -> tuple[float, float]:
    """F1 minus the shuffled-reference F1, and its standard error over prompts (paired:
    both scores of one reply come from the same prompt, so the prompt's difficulty
    cancels). A gap more than two standard errors above 0 is relevance beyond chance."""
    if len(replies) < 2:
        return float("nan"), float("nan")
    own = f1_scores(replies, references)
    other = f1_scores(replies, shuffled_references(references, seed))
    return mean_and_stderr([a - b for a, b in zip(own, other, strict=True)])


def ratio_stderr(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Standard error of sum(numerators) / sum(denominators) over independent items (the
    delta method: per-token NLL pooled over replies of different lengths)."""
    n = len(numerators)
    if n < 2 or not sum(denominators):
        return float("nan")
    ratio = sum(numerators) / sum(denominators)
    mean_d = sum(denominators) / n
    residuals = [a - ratio * b for a, b in zip(numerators, denominators, strict=True)]
    return math.sqrt(sum(r * r for r in residuals) / (n * (n - 1))) / mean_d
