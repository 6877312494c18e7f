"""Infilling: `[MASK]` one token, `[MASK*n]` n tokens, `[MASK*?]` a span of at most
`max_span` tokens whose length the sampler chooses (eos inside the span is dropped).

    from dlm import DiffusionLM
    lm = DiffusionLM.load("runs/dlm")
    lm.infill("The weather is [MASK] today, so [MASK*5] umbrella.").text

Given text is never changed: the result is the template's own characters with each
blank replaced by the text of its tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlm.config import SampleConfig
from dlm.control.layout import text_layout
from dlm.errors import ConfigError
from dlm.sampling import Step

# At most 6 digits: a longer count is not a blank (and never reaches int())
BLANK = re.compile(r"\[MASK(?:\*(?P<var>\?)?(?P<n>\d{1,6})?)?\]")


@dataclass(frozen=True)
class Blank:
    size: int
    """Tokens the blank holds (the most it may hold if `variable`)."""
    variable: bool = False


Piece = str | Blank


def parse_template(text: str, max_span: int = 8, where: str = "template") -> list[Piece]:
    """Split `text` into given strings and blanks; a malformed `[MASK...]` is an error
    naming its line and column."""
    pieces: list[Piece] = []
    pos = 0
    for found in re.finditer(r"\[MASK", text):
        if found.start() < pos:
            continue
        blank = BLANK.match(text, found.start())
        if blank is None or (blank.group(0) == "[MASK*]"):
            line = text.count("\n", 0, found.start()) + 1
            col = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
            bad = text[found.start(): text.find("]", found.start()) + 1 or None][:20]
            raise ConfigError(f"{where}:{line}:{col}: {bad!r} is not a blank; write [MASK], "
                              "[MASK*n] or [MASK*?] (up to n: [MASK*?n])")
        variable = blank.group("var") is not None
        size = int(blank.group("n")) if blank.group("n") else (max_span if variable else 1)
        if size < 1:
            raise ConfigError(f"{where}: {blank.group(0)} holds no token; use n >= 1")
        if found.start() > pos:
            pieces.append(text[pos: found.start()])
        pieces.append(Blank(size, variable))
        pos = blank.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def encode_pieces(tok, pieces: list[Piece], lowercase: bool = False,
                  ) -> tuple[list[int], list[tuple[int, int, Blank]]]:
    """Token ids with `mask_id` in each blank, and each blank's (start, end, blank) in them.

    Whitespace next to a blank is left to the blank's tokens (byte-level BPE puts a
    space before a word), so " is [MASK] today" encodes as " is", mask, " today".
    """
    ids: list[int] = []
    spans: list[tuple[int, int, Blank]] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, Blank):
            spans.append((len(ids), len(ids) + piece.size, piece))
            ids.extend([tok.mask_id] * piece.size)
            continue
        text = piece.lower() if lowercase else piece
        if i + 1 < len(pieces):
            text = text.rstrip()
        if i == 0:
            ids.extend(tok.encode(text))  # a text starts with a space-prefixed word
        elif text:
            ids.extend(tok.hf.encode(text, add_special_tokens=False).ids)
    return ids, spans


def join_pieces(tok, pieces: list[Piece], fills: list[list[int]]) -> tuple[str, list[str]]:
    """The template's own text with each blank replaced by the text of its tokens."""
    out, texts = [], []
    blanks = iter(fills)
    for i, piece in enumerate(pieces):
        if not isinstance(piece, Blank):
            out.append(piece)
            continue
        ids = [t for t in next(blanks) if t not in tok.special_ids]
        text = tok.decode(ids, whole=False)
        before = pieces[i - 1] if i > 0 else ""
        after = pieces[i + 1] if i + 1 < len(pieces) else ""
        if i == 0 or (isinstance(before, str) and before[-1:].isspace()):
            text = text.lstrip()
        if isinstance(after, str) and after[:1].isspace():
            text = text.rstrip()
        texts.append(text)
        out.append(text)
    return "".join(out), texts


@dataclass
class Infill:
    text: str
    """The template with every blank filled; given characters unchanged."""
    fills: list[str]
    """Each blank's text, in order."""
    prompt: str | None
    """The prompt, with its own blanks filled (None: plain text)."""
    ids: list[int]
    """The whole final canvas."""
    start: int
    """Where the template begins in `ids` (after the prompt)."""


def infill(lm, template: str, prompt: str | None = None, config: SampleConfig | None = None,
           max_span: int = 8, on_step: Callable[[Step], None] | None = None) -> Infill:
    """Fill every blank of `template` (and of `prompt`, if it has any) in one denoising run.

    With a `prompt` the template is the assistant's reply to it; without, plain text.
    Fixed blanks never hold eos; a `[MASK*?]` span may, and its eos tokens are dropped.
    """
    tok = lm.tokenizer
    config = config or SampleConfig()
    body_pieces = parse_template(template, max_span)
    body, body_spans = encode_pieces(tok, body_pieces, lm.lowercase)
    prompt_ids, prompt_pieces, prompt_spans = None, [], []
    if prompt is not None:
        prompt_pieces = parse_template(prompt, max_span, where="prompt")
        turn, spans = encode_pieces(tok, prompt_pieces, lm.lowercase)
        prompt_ids = tok.encode_prompt([{"role": "user", "content": ""}], encoded=[turn])
        offset = 2  # <bos> <user>
        prompt_spans = [(a + offset, b + offset, blank) for a, b, blank in spans]
    if not body_spans and not prompt_spans:
        raise ConfigError("the template has no blank to fill; mark one with [MASK], "
                          "[MASK*n] or [MASK*?]")
    layout = text_layout(lm, body, prompt_ids)
    body_spans = [(layout.start + a, layout.start + b, blank) for a, b, blank in body_spans]
    no_eos = [False] * len(layout.ids)  # only masks are sampled: given positions don't matter
    for a, b, blank in prompt_spans + body_spans:
        no_eos[a:b] = [not blank.variable] * (b - a)
    final = lm.fill(layout.canvas(tok, no_eos, lm.device), config, on_step)[0].tolist()
    text, fills = join_pieces(tok, body_pieces, [final[a:b] for a, b, _ in body_spans])
    filled_prompt = prompt
    if prompt_spans:
        filled_prompt, prompt_fills = join_pieces(tok, prompt_pieces,
                                                  [final[a:b] for a, b, _ in prompt_spans])
        fills = prompt_fills + fills
    return Infill(text, fills, filled_prompt, final, layout.start)


def read_template(text: str | None, path: Path | None) -> str:
    """The text to infill: given inline, or read from a template file."""
    if (text is None) == (path is None):
        raise ConfigError("give the text to infill, or --template FILE (one of the two)")
    if path is None:
        return text
    try:  # a leading BOM is dropped, as in data files
        return Path(path).read_text(encoding="utf-8-sig").rstrip("\n")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the template: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the template is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None


def check_template_result(text: str, path: Path | None) -> str | None:
    """For a .json template: why the filled text does not parse (None if it does)."""
    if path is None or Path(path).suffix.lower() != ".json":
        return None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{path}: the filled template is not valid JSON ({exc.msg} at line " \
               f"{exc.lineno}, column {exc.colno})"
    return None
