"""The decoding settings every door starts from: `DiffusionLM.generate` and the other
Python calls (`lm.decoding()`), `dlm generate`, `chat`, `infill`, `edit`, `sweep`,
`distill`, `serve` (and its page) and `dlm demo`. One place, chosen by measurement, so
the same prompt and seed give the same reply whichever door it comes through.

The values come from the decoding sweep on the validation split of the chat mix
(`benchmarks/reply-quality/decoding/`, its README gives the command): the setting with
the best reply quality at the budget (judged perplexity next to relevance, distinct-2,
the share of empty replies and reply length). Only the choices that differ from
SampleConfig's own defaults are written here; the rest are SampleConfig's. A flag or
request field given explicitly always wins.
"""

from __future__ import annotations

from typing import Any

from dlm.config import SampleConfig

MEASURED = dict(repetition_penalty=1.2)
"""The measured choices that differ from SampleConfig's defaults, for every objective.
Diffusion, on the shipped model (benchmarks/reply-quality/budget): repetition penalty
1.2 gave the best relevance (unigram F1 0.089 vs 0.077), BLEU-2 and distinct-2 of the
settings tried; SampleConfig's defaults held for the rest (greedy, low_confidence over
the whole canvas: blocks of 8 changed nothing; eos allow beat defer). The autoregressive
baseline, given the same care: 1.2 beat greedy alone (F1 0.075 vs 0.068, distinct-2 0.279
vs 0.242); no-repeat 3-grams changed little."""
BY_OBJECTIVE: dict[str, dict[str, Any]] = {
    "dual": dict(temperature=0.3, seed=0),
}
"""Measured choices for one objective, over MEASURED. Dual (the shipped chat-small, from
its AR teacher; benchmarks/chat-budget/decoding-student.md, 128 validation prompts):
temperature 0.3 beat greedy on distinct-2 (0.372 vs 0.319) and words (4.9 vs 4.5) at the
same relevance (F1 - shuffled +0.015) for a judged perplexity of 5.8 vs 5.4; 0.5 cost
more perplexity (7.2) than it gave, top-p 0.9 and no repetition penalty changed little.
Steps, rules and blocks do not apply: it drafts blocks of its training block size and
verifies them. A fixed seed keeps a prompt's reply the same through every door (a
request or flag giving its own seed, or temperature 0, wins)."""
EOS_PADDED = "defer"
"""eos for a diffusion model trained with LLaDA's eos padding (no rainbow pads): at 800
steps defer gave 9.4 words and F1 0.079 where allow gave one-word replies (eos
overflow)."""


def chat_decoding(lm, **given: Any) -> SampleConfig:
    """The measured defaults for `lm`, updated by the `given` fields (None means not
    given).

    The canvas is the model's own (`lm.default_length`, its training canvas), with a
    length head too: sized by the head (`length="auto"`, eos kept out of it), 14.5% of
    the shipped model's replies to 256 validation prompts stopped mid-sentence, where the
    whole canvas with eos allowed ends them itself. `length="auto"` stays available when
    asked for. Steps default to one per reply token (the canvas, for auto)."""
    given = {k: v for k, v in given.items() if v is not None}
    # AR, and speculative decoding (whose reply is its AR verifier's), write left to
    # right: eos padding does not bear on them
    left_to_right = lm.objective.one_call_per_token or given.get("decode") == "speculative"
    fields: dict[str, Any] = dict(MEASURED)
    fields.update(BY_OBJECTIVE.get(lm.objective.name, {}))
    if not left_to_right and not lm.tokenizer.pad_cycle:
        fields["eos"] = EOS_PADDED
    fields.update(lm.objective.decoding_defaults)  # a model of the field decodes its own way
    fields.update(given)
    fields.setdefault("length", lm.default_length)
    if "steps" not in fields:
        fields["steps"] = (lm.default_length if fields["length"] == "auto"
                           else int(fields["length"]))
    return SampleConfig(**fields)
