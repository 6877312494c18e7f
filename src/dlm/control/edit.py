"""Editing: mask a span of an existing text (by regex, character range, or the tokens
the model finds least likely) and regenerate only that span.

    lm.edit("I am so happy today.", span="happy").after
    lm.edit("I am so happy today.", low_confidence=2).after
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.control.layout import text_layout
from dlm.errors import ConfigError
from dlm.sampling import Step


@dataclass
class Edit:
    before: str
    after: str
    masked: list[int]
    """Token positions (in the text) that were masked and regenerated."""
    before_tokens: list[str]
    after_tokens: list[str]
    """The text token by token, before and after (for the diff)."""
    start: int
    """Where the text begins in the canvas (after the prompt, if any)."""

    def diff(self) -> list[tuple[str, str]]:
        """(text, kind) runs, kind in {"same", "removed", "added"}, over the tokens."""
        out: list[tuple[str, str]] = []
        matcher = difflib.SequenceMatcher(a=self.before_tokens, b=self.after_tokens,
                                          autojunk=False)
        for op, a0, a1, b0, b1 in matcher.get_opcodes():
            if op == "equal":
                out.append(("".join(self.before_tokens[a0:a1]), "same"))
                continue
            if a1 > a0:
                out.append(("".join(self.before_tokens[a0:a1]), "removed"))
            if b1 > b0:
                out.append(("".join(self.after_tokens[b0:b1]), "added"))
        return out

    def diff_text(self) -> str:
        """The diff as plain text: [-removed-]{+added+}."""
        marks = {"same": "{}", "removed": "[-{}-]", "added": "{{+{}+}}"}
        return "".join(marks[kind].format(text) for text, kind in self.diff()).strip()


def char_span(text: str, span: str, search=None) -> tuple[int, int]:
    """`span` as characters [a, b): "A:B" or "A-B" (a range), else a regex (its first match).

    `search(pattern, text)`: the regex engine, returning a match or None and raising
    ValueError for a bad pattern; default Python's `re` (the CLI's, where the user is the
    one who waits). The server passes `linear_search` (RE2), whose time is linear in
    the text whatever the pattern."""
    found = re.fullmatch(r"\s*(\d+)\s*[:-]\s*(\d+)\s*", span)
    if found:
        a, b = int(found.group(1)), int(found.group(2))
        if not 0 <= a < b <= len(text):
            raise ConfigError(f"--span {span!r}: the range must lie within the text's "
                              f"{len(text)} characters, start before end")
        return a, b
    try:
        match = (search or python_search)(span, text)
    except ValueError as exc:
        raise ConfigError(f"--span {span!r} is neither a range A:B nor a valid regex: {exc}"
                          ) from None
    if match is None or match.end() == match.start():
        raise ConfigError(f"--span {span!r} matches nothing in the text")
    return match.start(), match.end()


def python_search(pattern: str, text: str):
    try:
        return re.search(pattern, text)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def linear_search(pattern: str, text: str):
    """The first match of `pattern` by RE2: no backtracking, so no pattern can stall it
    (backreferences and lookaround, which need backtracking, are refused)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the error is raised to the caller, not logged
    options.max_mem = 8 << 20
    try:
        return re2.compile(pattern, options).search(text)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise ValueError(f"{message} (this server runs patterns with RE2: no "
                         "backreferences or lookaround)") from None


def tokens_in(offsets: list[tuple[int, int]], a: int, b: int) -> list[int]:
    """Indices of the tokens whose characters overlap [a, b)."""
    return [i for i, (s, e) in enumerate(offsets) if s < b and e > a]


@torch.inference_mode()
def least_likely(lm, layout, positions: list[int], k: int) -> list[int]:
    """The k of `positions` (canvas indices) whose token the model finds least likely when
    that token alone is masked: one batched call, a row per position."""
    tok = lm.tokenizer
    rows = torch.tensor([layout.ids] * len(positions), device=lm.device)  # (N, T)
    index = torch.tensor(positions, device=lm.device)
    truth = rows[0, index]  # (N,)
    rows[torch.arange(len(positions)), index] = tok.mask_id
    logits = lm.denoiser(rows, None).float()  # (N, T, V)
    logits[..., tok.mask_id] = float("-inf")
    chosen = logits[torch.arange(len(positions)), index]  # (N, V)
    logp = chosen.log_softmax(-1).gather(-1, truth[:, None]).squeeze(-1)  # (N,)
    order = logp.argsort()[:k].tolist()
    return sorted(positions[i] for i in order)


def edit(lm, text: str, span: str | None = None, low_confidence: int = 0,
         prompt: str | None = None, config: SampleConfig | None = None,
         length: int | None = None, on_step: Callable[[Step], None] | None = None) -> Edit:
    """Re-mask a span of `text` (or its `low_confidence` least likely tokens) and denoise
    only those positions; everything else is given and kept.

    `length`: tokens for the new span (default: as many as it had). With a `prompt`
    the text is the assistant's reply to it; without, plain text.
    """
    if (span is None) == (low_confidence <= 0):
        raise ConfigError("say what to edit: a --span (regex or A:B) or --low-confidence K")
    if not text.strip():
        raise ConfigError("the text to edit is empty")
    tok = lm.tokenizer
    config = config or SampleConfig()
    source = text.lower() if lm.lowercase else text
    ids, offsets = tok.encode_with_offsets(source)
    before_tokens = [tok.decode([t], whole=False) for t in ids]
    prompt_ids = (tok.encode_prompt([{"role": "user", "content": prompt}])
                  if prompt is not None else None)
    replaced = None  # the span's characters, when its token count changes
    if span is not None:
        first_char, last_char = char_span(text, span)
        masked = tokens_in(offsets, first_char, last_char)
        if length is not None and length != len(masked):
            if length < 1:
                raise ConfigError(f"--new-length must be at least 1, got {length}")
            replaced = (offsets[masked[0]][0], offsets[masked[-1]][1])
            first = masked[0]
            ids = ids[:first] + [tok.mask_id] * length + ids[masked[-1] + 1:]
            masked = list(range(first, first + length))
    else:
        layout = text_layout(lm, ids, prompt_ids)
        k = min(low_confidence, len(ids))
        masked = [p - layout.start for p in
                  least_likely(lm, layout, [layout.start + i for i in range(len(ids))], k)]
    chosen = set(masked)
    ids = [tok.mask_id if i in chosen else t for i, t in enumerate(ids)]
    layout = text_layout(lm, ids, prompt_ids)
    canvas = layout.canvas(tok, [True] * len(layout.ids), lm.device)
    final = lm.fill(canvas, config, on_step)[0].tolist()
    new = final[layout.start: layout.start + len(ids)]
    after_tokens = [tok.decode([t], whole=False) for t in new]
    # Splice the new tokens' text into the original characters, so that everything
    # outside the span stays exactly as typed (case included, for lowercased models).
    if replaced is None:
        pieces = [(offsets[i], after_tokens[i]) for i in masked]
    else:
        pieces = [(replaced, "".join(after_tokens[i] for i in masked))]
    return Edit(text, _splice(text, pieces), masked, before_tokens, after_tokens, layout.start)


def _splice(text: str, pieces: list[tuple[tuple[int, int], str]]) -> str:
    """`text` with each character range [s, e) replaced by its new text; token texts carry
    their own leading space, except at the very start of the text."""
    out, pos = [], 0
    for (s, e), new in pieces:
        out += [text[pos:s], new.lstrip() if s == 0 else new]
        pos = e
    return "".join(out) + text[pos:]
