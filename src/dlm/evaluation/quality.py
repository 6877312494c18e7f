"""Quality of generated replies: generative perplexity under an AR judge, beside entropy,
distinct-n, repetition, length and how often a reply ends; and the denoising-steps sweep.

Generative perplexity is `exp(mean token NLL)` of the replies, retokenised with the
judge's tokenizer and scored as the judge's own reply to the same prompt (text after
the first eos is already dropped, and the reply's closing eos is scored too). It
rewards dull, repetitive text, so it is always reported with unigram entropy.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dlm.config import SampleConfig
from dlm.evaluation.judge import judge_nlls, mauve_score
from dlm.evaluation.metrics import (
    bleu_2,
    broken_end,
    distinct_n,
    f1_scores,
    mean_and_stderr,
    ratio_stderr,
    relevance_gap,
    repetition_rate,
    share,
    shuffled_f1,
    stutters,
    unigram_entropy,
    unigram_f1,
    words,
)


@dataclass
class Quality:
    steps: int
    """Denoising steps (for AR: one model call per token)."""
    replies: int
    gen_ppl: float | None
    """Generative perplexity under the judge (None without a judge)."""
    entropy: float
    distinct_1: float
    distinct_2: float
    repetition: float
    mean_words: float
    ends_with_eos: float
    """Share of replies whose canvas holds an eos (the reply ended, was not cut)."""
    seconds: float = 0.0
    """Wall time of generating the replies (judging excluded)."""
    empty: float = 0.0
    """Share of replies with no word."""
    f1: float | None = None
    """Unigram F1 against the reference replies (relevance; None without references)."""
    bleu_2: float | None = None
    """Corpus BLEU-2 against the reference replies (None without references)."""
    f1_shuffled: float | None = None
    """The control: unigram F1 against other prompts' references (`metrics.shuffled_f1`)."""
    stutter: float = 0.0
    """Share of replies with a word three times in a row (a coherence failure)."""
    broken_end: float = 0.0
    """Share of non-empty replies that stop mid-sentence (no ., ! or ? at the end)."""
    gen_ppl_se: float | None = None
    """Standard error of `gen_ppl` over the prompts (delta method on the pooled NLL)."""
    f1_se: float | None = None
    """Standard error of `f1` over the prompts."""
    relevance_gap: float | None = None
    """`f1` minus the shuffled-reference F1, paired per prompt (`metrics.relevance_gap`)."""
    relevance_gap_se: float | None = None
    """Its standard error over the prompts: a gap above two of them is beyond chance."""
    mauve: float | None = None
    """MAUVE of the replies against the references on the judge's features (None
    without a judge, references, or the `mauve-text` package)."""


def judge_nll(judge, histories: Sequence[Sequence[dict]], replies: Sequence[str],
              batch_size: int = 32) -> tuple[float, int]:
    """Summed NLL (nats) of the replies (each with its closing end token) under the
    causal `judge` (`dlm.evaluation.judge`), and the number of tokens scored."""
    per_reply = judge_nlls(judge, histories, replies, batch_size)
    return sum(n for n, _ in per_reply), sum(c for _, c in per_reply)


def mauve_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("mauve") is not None


def generation_quality(lm, histories: Sequence[Sequence[dict]], config: SampleConfig,
                       judge=None, batch_size: int = 32, on_step=None,
                       references: Sequence[str] | None = None,
                       ) -> tuple[Quality, list[str]]:
    """Reply to every history with `config` and measure the replies (against the human
    `references` too, when given: unigram F1 and BLEU-2)."""
    tok = lm.tokenizer
    replies, canvases = [], []
    started = time.perf_counter()
    for i in range(0, len(histories), batch_size):
        ids = lm.reply_ids(list(histories[i : i + batch_size]), config, on_step)
        canvases += ids.tolist()
        replies += [tok.decode_response(row) for row in ids.tolist()]
    seconds = time.perf_counter() - started
    gen_ppl = gen_ppl_se = None
    if judge is not None:
        per_reply = judge_nlls(judge, histories, replies, batch_size)
        nlls, counts = [n for n, _ in per_reply], [c for _, c in per_reply]
        gen_ppl = math.exp(min(sum(nlls) / max(sum(counts), 1), 50))
        gen_ppl_se = gen_ppl * ratio_stderr(nlls, counts)  # d exp(x) = exp(x) dx
    f1_se = gap = gap_se = mauve = None
    if references is not None:
        f1_se = mean_and_stderr(f1_scores(replies, references))[1] if replies else None
        gap, gap_se = relevance_gap(replies, references)
        if judge is not None and len(replies) >= 10 and mauve_installed():
            mauve = mauve_score(judge, histories, replies, references)
    token_lists = [tok.encode(r) if r else [] for r in replies]
    quality = Quality(
        steps=config.length if lm.objective.one_call_per_token else config.steps,
        replies=len(replies),
        gen_ppl=gen_ppl, entropy=unigram_entropy(token_lists),
        distinct_1=distinct_n(replies, 1), distinct_2=distinct_n(replies, 2),
        repetition=repetition_rate(replies),
        mean_words=sum(len(words(r)) for r in replies) / max(len(replies), 1),
        ends_with_eos=sum(any(t in tok.end_ids for t in c) for c in canvases)
        / max(len(canvases), 1),
        seconds=seconds, empty=sum(not words(r) for r in replies) / max(len(replies), 1),
        f1=None if references is None else unigram_f1(replies, references),
        bleu_2=None if references is None else bleu_2(replies, references),
        f1_shuffled=None if references is None else shuffled_f1(replies, references),
        stutter=share(replies, stutters),
        broken_end=share([r for r in replies if words(r)], broken_end),
        gen_ppl_se=gen_ppl_se, f1_se=f1_se, relevance_gap=gap, relevance_gap_se=gap_se,
        mauve=mauve)
    return quality, replies


def steps_sweep(length: int) -> list[int]:
    """1, 2, 4, ... up to `length`, and `length` itself."""
    out, s = [], 1
    while s < length:
        out.append(s)
        s *= 2
    return [*out, length]


def samples_of(lm, history: Sequence[dict], n: int, config: SampleConfig) -> list[str]:
    """`n` replies to one history, drawn in one batch (for self-BLEU and distinct-n)."""
    ids = lm.reply_ids([list(history)] * n, config)
    return [lm.tokenizer.decode_response(row) for row in ids.tolist()]


def first_number(text: str) -> str | None:
    found = re.search(r"-?\d+", text)
    return found.group(0) if found else None


def run_suite(lm, config: SampleConfig, judge=None) -> dict[str, dict]:
    """The fixed suite (`dlm.suite`): per category the quality of the greedy replies,
    arithmetic's exact-match accuracy (the first number in the reply), and for the
    diversity prompts self-BLEU and distinct-2 of samples at temperature 1."""
    from dlm.evaluation.metrics import self_bleu
    from dlm.suite import CATEGORIES, load_suite

    suite = load_suite()
    out: dict[str, dict] = {}
    for category in CATEGORIES:
        items = [r for r in suite if r["category"] == category]
        if category == "diversity":
            sampled = dataclasses.replace(config, temperature=1.0, seed=0)
            rows = []
            for item in items:
                history = [{"role": "user", "content": item["prompt"]}]
                samples = samples_of(lm, history, item["samples"], sampled)
                rows.append({"prompt": item["prompt"], "self_bleu": self_bleu(samples),
                             "distinct_2": distinct_n(samples, 2), "replies": samples})
            out[category] = {
                "self_bleu": sum(r["self_bleu"] for r in rows) / len(rows),
                "distinct_2": sum(r["distinct_2"] for r in rows) / len(rows), "prompts": rows}
            continue
        histories = [[{"role": "user", "content": r["prompt"]}] for r in items]
        quality, replies = generation_quality(lm, histories, config, judge)
        result: dict = {"quality": dataclasses.asdict(quality),
                        "replies": [{"prompt": r["prompt"], "reply": reply}
                                    for r, reply in zip(items, replies, strict=True)]}
        if category == "arithmetic":
            hits = [first_number(reply) == r["answer"]
                    for r, reply in zip(items, replies, strict=True)]
            result["exact_match"] = sum(hits) / len(hits)
        out[category] = result
    return out
