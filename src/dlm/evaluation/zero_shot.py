"""Zero-shot perplexity: one checkpoint's likelihood on corpora it was not trained on,
per token and in bits per byte, with its kind (exact, or a bound from K draws).

A corpus is a text file (documents separated by blank lines) or a name: `pydoc`, the
documentation text CPython itself ships (`pydoc_data.topics`), which no recipe trains
on, an out-of-domain set in the way MDLM's zero-shot table uses PubMed and arXiv. Each
document is scored in lm-eval's disjoint rolling windows (`dlm.evaluation.harness`'s
`loglikelihood_rolling`), so a figure here equals the harness's on the same text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from dlm.errors import DataError
from dlm.evaluation.scoring import positions, score_pairs


def pydoc_documents() -> list[str]:
    """The topics of CPython's own help text, one document each."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


NAMED = {"pydoc": pydoc_documents}
"""Corpora read from the Python installation, by name."""


def documents(corpus: str) -> list[str]:
    if corpus in NAMED and not Path(corpus).exists():
        return NAMED[corpus]()
    path = Path(corpus)
    if not path.is_file():
        raise DataError(f"{corpus}: no such file, and not a named corpus "
                        f"({', '.join(NAMED)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    docs = [d.strip() for d in text.split("\n\n") if d.strip()]
    if not docs:
        raise DataError(f"{path}: no text")
    return docs


def training_sources(lm) -> list[Path]:
    """The files the checkpoint's recorded training data came from (its `dlm data`
    directories' sources, or the files given directly)."""
    out = []
    for entry in (lm.meta.get("train") or {}).get("data") or []:
        folder = Path(entry)
        record = folder / "data.json"
        if record.is_file():
            config = json.loads(record.read_text(encoding="utf-8")).get("config", {})
            for spec in config.get("sources", []):
                location = spec.split("=", 1)[-1].rsplit("@", 1)[0]
                out.append(Path(location))
        else:
            out.append(folder)
    return out


def seen_in_training(lm, corpus: str) -> bool:
    """Whether `corpus` is among the checkpoint's recorded training files."""
    if corpus in NAMED and not Path(corpus).exists():
        return False
    target = Path(corpus).resolve()
    return any(p.exists() and p.resolve() == target for p in training_sources(lm))


@dataclass
class ZeroShot:
    corpus: str
    documents: int
    tokens: int
    bytes: int
    nats_per_token: float
    stderr: float
    """Standard error of the per-token figure (Monte Carlo draws; 0 when exact)."""
    bits_per_byte: float
    kind: str
    """exact, or bound (the ELBO's Monte Carlo estimate)."""
    draws: int
    in_training_data: bool


def zero_shot(lm, corpus: str, draws: int = 8, batch_size: int = 16, seed: int = 0,
              max_documents: int | None = None) -> ZeroShot:
    """`lm` on every document of `corpus` (the first `max_documents`)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    tok = lm.tokenizer
    docs = documents(corpus)[:max_documents]
    windows = []
    for doc in docs:
        windows += [make_disjoint_window(w) for w in get_rolling_token_windows(
            token_list=tok.encode(doc), prefix_token=tok.eos_id,
            max_seq_len=positions(lm) - 1, context_len=1)]
    scores = score_pairs(lm, windows, draws, batch_size, seed)
    tokens = sum(s.tokens for s in scores)
    nats = -sum(s.logprob for s in scores)
    # windows' estimates are independent: their variances add
    stderr = math.sqrt(sum(s.stderr ** 2 for s in scores)) / max(tokens, 1)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    return ZeroShot(corpus, len(docs), tokens, n_bytes, nats / max(tokens, 1), stderr,
                    nats / math.log(2) / max(n_bytes, 1),
                    "exact" if lm.objective.exact_likelihood else "bound",
                    scores[0].draws if scores else 0, seen_in_training(lm, corpus))

