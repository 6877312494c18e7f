"""Text cleaning and the keys that decide when two examples are the same."""

from __future__ import annotations

import re
import unicodedata

from dlm.data.example import Example

QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00b4": "'",
                        "\u00a0": " ", "\u2013": "-", "\u2014": " - "})
SPACE_BEFORE_PUNCT = re.compile(r" +([,.!?;:%)\]}])")
SPACE_AFTER_OPEN = re.compile(r"([(\[{$]) +")
SPLIT_CONTRACTION = re.compile(r"(\w) ?' ?(s|t|m|re|ve|ll|d)\b", re.IGNORECASE)
MISSING_SPACE = re.compile(r"([a-z]{2,})([.?!])([A-Z][a-z])")
SPACES = re.compile(r"[ \t]+")


def clean_text(text: str) -> str:
    """Normalise quotes and whitespace, and undo the tokenised spacing of corpora like
    DailyDialog ("I ' m fine , thanks ." becomes "I'm fine, thanks.")."""
    text = unicodedata.normalize("NFC", text).translate(QUOTES)
    text = SPACES.sub(" ", text)
    text = SPLIT_CONTRACTION.sub(r"\1'\2", text)
    text = SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = SPACE_AFTER_OPEN.sub(r"\1", text)
    text = MISSING_SPACE.sub(r"\1\2 \3", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def clean_example(ex: Example) -> Example:
    if ex.messages is not None:
        return Example(messages=[{**m, "content": clean_text(m["content"])} for m in ex.messages],
                       symmetric=ex.symmetric)
    return Example(text=clean_text(ex.text or ""))


def letters_key(ex: Example) -> str:
    """Letters and digits only, lowercased: the same dialogue with other spacing or
    punctuation is the same (how validation is checked against train)."""
    parts = [m["content"] for m in ex.messages] if ex.messages is not None else [ex.text or ""]
    return "\x1e".join(re.sub(r"[\W_]+", "", p.lower()) for p in parts)
