"""Turn a canvas state into text: plain (`t=8  hello [MASK] are you`) or coloured (Rich).

Shared by every command that shows a trace. Masks are grey;
newly committed tokens are coloured by the model's confidence; tokens that were
committed earlier and masked again (remasking) are marked; text after a committed
eos is hidden, because it will be dropped from the reply. Speculative decoding has
three more kinds: drafted (the drafter's proposal, not yet verified), accepted (a draft
the verifier kept) and rejected (the verifier's own token where it refused the draft).
"""

from __future__ import annotations

from rich.text import Text

from dlm.sampling import Step
from dlm.tokenizer import DLMTokenizer

MASK_TEXT = "[MASK]"
REMASK_TEXT = "[REMASK]"


def _pieces(step: Step, row: int, tok: DLMTokenizer, stop_at_eos: bool = True,
            ) -> list[tuple[str, str, float]]:
    """(text, kind, confidence) runs; kind is 'mask', 'remasked', 'new', 'old', or in
    speculative decoding 'drafted', 'accepted', 'rejected'."""
    ids = step.tokens[row].tolist()
    new = step.newly_committed[row].tolist()
    conf = step.confidences[row].tolist()
    nothing = [False] * len(ids)

    def flags(x):
        return x[row].tolist() if x is not None else nothing

    remasked, drafted, rejected = flags(step.remasked), flags(step.drafted), flags(step.rejected)
    verified = "accepted" if step.rejected is not None else "new"
    pieces: list[tuple[str, str, float]] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            pieces.append((tok.decode(run, whole=False), "old", 1.0))
            run.clear()

    for i, token in enumerate(ids):
        if token in tok.end_ids and stop_at_eos:
            break
        if token == tok.mask_id:
            flush()
            pieces.append((REMASK_TEXT, "remasked", 0.0) if remasked[i]
                          else (MASK_TEXT, "mask", 0.0))
        elif drafted[i]:
            flush()
            pieces.append((tok.decode([token], whole=False), "drafted", 0.0))
        elif new[i]:
            flush()
            pieces.append((tok.decode([token], whole=False),
                           "rejected" if rejected[i] else verified, conf[i]))
        else:
            run.append(token)
    flush()
    return pieces


MASKS = ("mask", "remasked")


def _join(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Put a space around masks so they read as words; byte-level text keeps its own spaces."""
    out: list[tuple[str, str]] = []
    for i, (text, kind) in enumerate(parts):
        after_mask = i > 0 and parts[i - 1][1] in MASKS
        if kind in MASKS or (after_mask and not text.startswith(" ")):
            text = " " + text
        out.append((text, kind))
    return out


def label(step: Step) -> str:
    """`t=N`: the number of steps still to run, as in the seed prototype's traces."""
    return f"t={step.steps - step.step_index:<3d}"


def render_plain(step: Step, row: int, tok: DLMTokenizer, stop_at_eos: bool = True) -> str:
    parts = _join([(text, kind) for text, kind, _ in _pieces(step, row, tok, stop_at_eos)])
    return "".join(text for text, _ in parts).strip()


def confidence_style(p: float) -> str:
    """Red when unsure, yellow in between, green when sure."""
    return "bold green" if p >= 0.7 else "bold yellow" if p >= 0.3 else "bold red"


STYLES = {"mask": "grey50", "remasked": "bold magenta", "old": "", "drafted": "italic cyan",
          "accepted": "bold green", "rejected": "bold white on red"}


def render_rich(step: Step, row: int, tok: DLMTokenizer, stop_at_eos: bool = True) -> Text:
    pieces = _pieces(step, row, tok, stop_at_eos)
    joined = _join([(text, kind) for text, kind, _ in pieces])
    out = Text()
    for (text, kind), (_, _, conf) in zip(joined, pieces, strict=True):
        style = STYLES.get(kind) or confidence_style(conf)
        out.append(text, style=style)
    if out.plain.startswith(" "):
        out = out[1:]
    return out


def trace_line(step: Step, row: int, tok: DLMTokenizer, stop_at_eos: bool = True) -> str:
    return f"{label(step)} {render_plain(step, row, tok, stop_at_eos)}"


def step_record(step: Step, row: int, tok: DLMTokenizer, stop_at_eos: bool = True) -> dict:
    """One step of one row as JSON: what `--trace-file` writes (the server streams the
    per-token `dlm.server.stream.frame` instead).

    pieces: [text, kind, confidence] runs, kind in mask/remasked/new/old (speculative:
    drafted/accepted/rejected)."""
    pieces = _pieces(step, row, tok, stop_at_eos)
    return {"row": row, "step": step.step_index, "steps": step.steps, "nfe": step.nfe,
            "text": render_plain(step, row, tok, stop_at_eos),
            "committed": int(step.newly_committed[row].sum()),
            "remasked": 0 if step.remasked is None else int(step.remasked[row].sum()),
            **({} if step.drafted is None else {"drafted": int(step.drafted[row].sum())}),
            **({} if step.rejected is None else {"rejected": int(step.rejected[row].sum()),
                                                 "verifier_calls": step.verifier_calls}),
            "pieces": [[text, kind, round(conf, 4)] for text, kind, conf in pieces]}
