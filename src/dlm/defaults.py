"""The decoding settings every chat surface starts from: `dlm generate`, `chat`, `infill`,
`edit`, `serve` (and its page) and `dlm demo`. One place, chosen by measurement.

The values come from the decoding sweep on the validation split of the chat mix
(`benchmarks/reply-quality/decoding/`, its README gives the command): the setting with
the best reply quality at the budget (judged perplexity next to relevance, distinct-2,
the share of empty replies and reply length). Steps default to one per reply token.
A flag or request field given explicitly always wins.
"""

from __future__ import annotations

from typing import Any

from dlm.config import SampleConfig

DIFFUSION = dict(rule="low_confidence", block_length=0, eos="allow", remask=0.0,
                 temperature=0.0, repetition_penalty=1.2)
"""Full-attention diffusion models (and block diffusion, where the fields apply). On the
shipped model (benchmarks/reply-quality/budget): repetition penalty 1.2 gave the best
relevance (unigram F1 0.089 vs 0.077), BLEU-2 and distinct-2 of the settings tried,
blocks of 8 changed nothing, and eos allow beat defer."""
EOS_PADDED = "defer"
"""eos for a model trained with LLaDA's eos padding (no rainbow pads): at 800 steps defer
gave 9.4 words and F1 0.079 where allow gave one-word replies (eos overflow)."""
AR = dict(temperature=0.0, top_p=1.0, repetition_penalty=1.2, no_repeat_ngram=0)
"""The autoregressive baseline, given the same care: repetition penalty 1.2 beat greedy
(F1 0.075 vs 0.068, distinct-2 0.279 vs 0.242); no-repeat 3-grams changed little."""
LENGTH_FROM_HEAD = True
"""A model with a length head sizes its canvas with it (`length="auto"`) by default."""


def chat_decoding(lm, **given: Any) -> SampleConfig:
    """The measured defaults for `lm`'s objective, updated by the `given` fields (None
    means not given). Steps default to the reply length (one token per step)."""
    given = {k: v for k, v in given.items() if v is not None}
    # AR, and speculative decoding (whose reply is its AR verifier's): AR's own defaults
    left_to_right = lm.objective.one_call_per_token or given.get("decode") == "speculative"
    base = dict(AR) if left_to_right else dict(DIFFUSION)
    if left_to_right:
        base["eos"] = "allow"
    elif not lm.tokenizer.pad_cycle:
        base["eos"] = EOS_PADDED
    fields = {**base, **given}
    if "length" not in fields:
        has_head = (lm.objective.length_head and getattr(lm.model, "length_head", None)
                    and not left_to_right)
        fields["length"] = "auto" if has_head and LENGTH_FROM_HEAD else lm.default_length
    if "steps" not in fields:
        fields["steps"] = (lm.default_length if fields["length"] == "auto"
                           else int(fields["length"]))
    return SampleConfig(**fields)
