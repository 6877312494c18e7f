"""The judge of reply quality: a dlm AR checkpoint, an imported Llama/Qwen folder, or any
causal LM that `transformers` loads (the field's usual judge is gpt2-large), never one of
the models it judges.

A judge gives two things: the NLL of each reply given its chat history (judged
perplexity, read beside unigram entropy: a judge prefers generic replies), and a feature
vector per reply (its final hidden state at the reply's last token) for MAUVE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from dlm.errors import CheckpointError, ConfigError


class TransformersCausal(torch.nn.Module):
    """A `transformers` causal LM with the calls a judge makes of dlm's Transformer:
    `(ids, key_padding)` -> logits, `head="hidden"` -> final hidden states, and
    `config.max_seq_len`."""

    def __init__(self, model):
        super().__init__()
        self.inner = model.eval()
        c = model.config
        most = (getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
                or 1024)
        self.config = SimpleNamespace(max_seq_len=int(most), causal=True)

    def forward(self, ids, key_padding=None, head: str = "tokens"):
        mask = positions = None
        if key_padding is not None:  # left padding: each row's positions start at its text
            mask = key_padding.long()
            positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.inner(input_ids=ids, attention_mask=mask, position_ids=positions,
                         output_hidden_states=head == "hidden")
        return out.hidden_states[-1] if head == "hidden" else out.logits


class TransformersJudge:
    """A judge `transformers` loads (`AutoModelForCausalLM`, no remote code), with the
    folder's own tokenizer and chat template (`dlm.layouts.tokenizer.HFTokenizer`)."""

    def __init__(self, path: str, device: str):
        from transformers import AutoModelForCausalLM

        from dlm.layouts.tokenizer import HFTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():  # a hub id: fetched by transformers
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(path))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=False,
                                                         dtype=torch.float32)
        except Exception as exc:  # transformers' own: not a causal LM, remote code, ...
            raise ConfigError(f"{path}: not a causal LM that transformers loads without "
                              f"remote code ({str(exc).splitlines()[0]})", "judge") from None
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.model = TransformersCausal(model).to(self.device)
        self.tokenizer = HFTokenizer.load_folder(folder, config)
        self.source = str(path)


def load_judge(path, device: str = "auto"):
    """The judge at `path` (None for None): a dlm AR checkpoint or an imported Llama/Qwen
    folder (read into dlm's Transformer), else any causal LM `transformers` loads."""
    if not path:
        return None
    from dlm.pipeline import DiffusionLM

    try:
        judge = DiffusionLM.load(path, device)
    except CheckpointError as exc:
        if "not a layout dlm reads" not in str(exc):
            raise
        return TransformersJudge(str(path), device)
    if not judge.objective.needs.causal:
        raise ConfigError(f"{path}: the judge must be an AR model (dlm train --objective ar, "
                          "or a causal LM folder)", "judge")
    return judge


def encoded_replies(judge, histories: Sequence[Sequence[dict]], replies: Sequence[str]
                    ) -> list[tuple[list[int], int]]:
    """Each reply rendered after its history by the judge's chat template (the reply and
    its closing end token), cut from the left to the judge's positions, with the index
    where the reply starts."""
    tok, most = judge.tokenizer, judge.model.config.max_seq_len
    out = []
    for history, reply in zip(histories, replies, strict=True):
        enc = tok.encode_chat([*history, {"role": "assistant", "content": reply}])
        ids = enc.ids[-most:]
        out.append((ids, len(ids) - len(enc.response_ids)))
    return out


def batch_of(judge, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and their key-padding mask (by position: a pad id may also be
    a real token of a rendered chat)."""
    width = max(len(r) for r in rows)
    pad = judge.tokenizer.pad_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=judge.device)
    real = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows],
                        device=judge.device)
    return ids, real


@torch.no_grad()
def judge_nlls(judge, histories: Sequence[Sequence[dict]], replies: Sequence[str],
               batch_size: int = 32) -> list[tuple[float, int]]:
    """Per reply: its summed NLL (nats) under the judge and its number of scored tokens
    (the reply and its closing end token)."""
    out: list[tuple[float, int]] = []
    encoded = encoded_replies(judge, histories, replies)
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i:i + batch_size]
        ids, real = batch_of(judge, [r for r, _ in chunk])
        logits = judge.model(ids, real).float()  # (B, T, V)
        width = ids.shape[1]
        for b, (row, start) in enumerate(chunk):
            offset = width - len(row)
            target = ids[b, offset + start:]
            pred = logits[b, offset + start - 1:width - 1]
            out.append((float(F.cross_entropy(pred, target, reduction="sum")),
                        target.numel()))
    return out


@torch.no_grad()
def judge_features(judge, histories: Sequence[Sequence[dict]], replies: Sequence[str],
                   batch_size: int = 32) -> torch.Tensor:
    """(N, width) features for MAUVE: the judge's final hidden state at each reply's last
    token, read after its history (as MAUVE featurises a text by its last token)."""
    rows = []
    encoded = encoded_replies(judge, histories, replies)
    for i in range(0, len(encoded), batch_size):
        ids, real = batch_of(judge, [r for r, _ in encoded[i:i + batch_size]])
        rows.append(judge.model(ids, real, head="hidden")[:, -1].float().cpu())
    return torch.cat(rows)


def mauve_score(judge, histories: Sequence[Sequence[dict]], replies: Sequence[str],
                references: Sequence[str], seed: int = 0) -> float:
    """MAUVE (Pillutla et al. 2021; the `mauve-text` package) of the replies against the
    human references to the same histories, on the judge's features."""
    import mauve

    p = judge_features(judge, histories, replies).numpy()
    q = judge_features(judge, histories, references).numpy()
    out = mauve.compute_mauve(p_features=p, q_features=q, device_id=-1, verbose=False,
                              seed=seed)
    return float(out.mauve)
