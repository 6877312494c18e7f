"""Hypothesis strategies for text at the doors: what broke once (unpaired surrogates,
which JSON can escape and argv bytes become) and valid text that is easy to mishandle
(NUL and other control characters, byte-order marks, the largest code points, strings
that Unicode normalisation would change). Shared by the API, reader and CLI fuzz suites.
"""

from __future__ import annotations

from hypothesis import strategies as st

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f",
                           "\x85", "\x9f", "\u200b", "\u2028", "\u2029", "\u202e"])
BOM = st.just("\ufeff")
LARGEST = st.sampled_from(["\U0010ffff", "\U0010fffd", "\U000fffff", "\U000e0001",
                           "\U0001f600", "\U0001f9d1\u200d\U0001f4bb", "\uffff", "\ufffe",
                           "\ufffd"])
# each differs from its NFC or NFKC form: decomposed accents, compatibility characters,
# singletons, reordered combining marks
NORMALISING = st.sampled_from(["e\u0301", "\u212b", "\u2126", "\ufb01", "\u1e9b\u0323",
                               "x\u0327\u0301", "\u2460", "\uff48\uff49", "\u00bd",
                               "\u0041\u030a", "\u1100\u1161\u11a8", "\u0958"])
ODD = st.one_of(CONTROL, BOM, LARGEST, NORMALISING)


def valid_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Well-formed Unicode, ordinary or odd (every piece above but the surrogates)."""
    piece = st.one_of(st.text(max_size=6), ODD)
    return st.lists(piece, max_size=max(1, max_size // 4)).map("".join).map(
        lambda t: t[:max_size])


def invalid_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Text with at least one unpaired surrogate, anywhere in it."""
    return st.tuples(valid_text(max_size), SURROGATES, st.integers(0, max_size),
                     st.booleans()).map(
        lambda p: p[0][:p[2]] + p[1] + p[0][p[2]:] + (p[1] if p[3] else ""))


def door_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """What a door may be sent: about half of it not valid Unicode."""
    return st.one_of(valid_text(max_size), invalid_text(max_size))


def is_unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (the test's own check, not dlm's)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
