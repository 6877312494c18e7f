"""Byte-level BPE tokenizer (Hugging Face `tokenizers`) with chat roles and a mask token.

Byte-level BPE covers every byte, so any Unicode text encodes and decodes back
unchanged. Every text is encoded with one leading space, which decoding removes:
a word then has the same token at the start of a reply as in its middle ("Ġhi"),
so a small model does not have to learn each word twice. Special tokens are only
ever inserted by id (the chat template), never parsed from user text: typing
"<|mask|>" in a prompt is just text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from dlm.errors import CheckpointError, first_line
from dlm.util.wellformed import check_text

PAD, MASK, BOS, EOS, USER, ASSISTANT = (
    "<|pad|>",
    "<|mask|>",
    "<|bos|>",
    "<|eos|>",
    "<|user|>",
    "<|assistant|>",
)
SPECIAL_TOKENS = [PAD, MASK, BOS, EOS, USER, ASSISTANT]
# Rainbow padding's cycle of distinct pad tokens (`DiffusionConfig.padding = "rainbow"`),
# added after the vocabulary when a run asks for them; like eos, each ends a reply.
RAINBOW = "<|pad_{}|>"
ROLE_TOKENS = {"user": USER, "assistant": ASSISTANT}


@dataclass
class ChatEncoding:
    """A rendered chat: token ids and, for each id, whether it belongs to the response."""

    ids: list[int]
    response_mask: list[bool]

    @property
    def prompt_ids(self) -> list[int]:
        return [i for i, r in zip(self.ids, self.response_mask, strict=True) if not r]

    @property
    def response_ids(self) -> list[int]:
        return [i for i, r in zip(self.ids, self.response_mask, strict=True) if r]


class DLMTokenizer:
    """Wraps a `tokenizers.Tokenizer` with the ids of the special tokens and the chat template."""

    def __init__(self, tokenizer: Tokenizer):
        self.hf = tokenizer
        # Special tokens are added by id only; text that looks like one stays text.
        self.hf.encode_special_tokens = True
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if any(i is None for i in ids):
            missing = [t for t, i in zip(SPECIAL_TOKENS, ids, strict=True) if i is None]
            raise CheckpointError(f"tokenizer lacks special tokens {missing}; retrain it with dlm")
        self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.user_id, self.assistant_id = ids
        # the rainbow pads this vocabulary holds, in cycle order
        self.pad_cycle: list[int] = []
        while (found := tokenizer.token_to_id(RAINBOW.format(len(self.pad_cycle)))) is not None:
            self.pad_cycle.append(found)
        self.end_ids = [self.eos_id, *self.pad_cycle]
        """Tokens that end a reply: eos, and the rainbow pads."""
        self.special_ids = frozenset(ids + self.pad_cycle)
        # Markers of the chat template: never text, so the sampler never writes them.
        self.never_generated = (self.pad_id, self.bos_id, self.user_id, self.assistant_id)

    # ----------------------------------------------------------------- building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
        """Train a byte-level BPE of at most `vocab_size` ids on `texts` (the configs hold
        the default: `TrainConfig.vocab_size`); the special tokens take ids 0..5."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator((" " + t for t in texts), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> DLMTokenizer:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: tokenizer file not found")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:  # the tokenizers library's parse error, not JSON's
            raise CheckpointError(f"{path}: cannot read the tokenizer ({first_line(exc)}); "
                                  "the file is damaged") from None

    def with_rainbow(self, k: int) -> DLMTokenizer:
        """This tokenizer with rainbow pad tokens 0..k-1 (added after the vocabulary if
        missing; the ids of every other token are unchanged)."""
        if len(self.pad_cycle) >= k:
            return self
        copy = Tokenizer.from_str(self.hf.to_str())
        copy.add_special_tokens([AddedToken(RAINBOW.format(i), special=True)
                                 for i in range(len(self.pad_cycle), k)])
        return DLMTokenizer(copy)

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    # ------------------------------------------------------------------- text
    def encode(self, text: str) -> list[int]:
        """Ids of `text`; text that is not well-formed Unicode is a `TextError` (the doors
        refuse it first, naming their field: this is for direct callers)."""
        try:
            return self.hf.encode(" " + text, add_special_tokens=False).ids
        except TypeError:  # the Rust library's only word for a str it cannot read
            check_text(text, "text")
            raise

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """`encode`'s ids and each one's (start, end) characters in `text`."""
        enc = self.hf.encode(" " + text, add_special_tokens=False)
        return list(enc.ids), [(max(s - 1, 0), e - 1) for s, e in enc.offsets]  # space: -1

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts in one call, which the Rust library spreads over all cores."""
        try:
            encoded = self.hf.encode_batch([" " + t for t in texts], add_special_tokens=False)
        except TypeError:
            check_text(list(texts), "texts")
            raise
        return [e.ids for e in encoded]

    def fingerprint(self) -> str:
        """A hash of the whole tokenizer (vocabulary, merges, settings): token caches key on it."""
        return hashlib.sha256(self.hf.to_str().encode()).hexdigest()

    def decode(self, ids: Sequence[int], whole: bool = True) -> str:
        """Text of `ids`, special tokens dropped.

        whole: the ids start a text, so the leading space `encode` added is removed;
        False for a piece from the middle of a text (trace rendering).
        """
        text = self.hf.decode([i for i in ids if i not in self.special_ids],
                              skip_special_tokens=False)
        return text[1:] if whole and text.startswith(" ") else text

    def decode_response(self, ids: Sequence[int]) -> str:
        """Text of a generated response: everything up to the first eos (or rainbow pad)."""
        ids = list(ids)
        end = next((i for i, t in enumerate(ids) if t in self.end_ids), len(ids))
        return self.decode(ids[:end])

    # ------------------------------------------------------------------- chat
    def encode_prompt(self, history: Sequence[dict[str, str]],
                      encoded: Sequence[list[int]] | None = None) -> list[int]:
        """Ids of a chat history ending in a user turn, followed by the assistant marker.

        `<bos> <user> u1 <assistant> a1 <eos> <user> u2 <assistant>`: the reply
        to be generated comes right after.
        """
        ids = [self.bos_id]
        for j, turn in enumerate(history):
            role = turn["role"]
            if role not in ROLE_TOKENS:
                raise ValueError(f"unknown chat role {role!r}; use 'user' or 'assistant'")
            ids.append(self.hf.token_to_id(ROLE_TOKENS[role]))
            ids.extend(encoded[j] if encoded is not None else self.encode(turn["content"]))
            if role == "assistant":
                ids.append(self.eos_id)
        ids.append(self.assistant_id)
        return ids

    def encode_chat(self, messages: Sequence[dict[str, str]],
                    encoded: Sequence[list[int]] | None = None) -> ChatEncoding:
        """Render a chat whose last message is the assistant's response.

        The response ids are its text followed by one eos; the caller pads the
        response with further eos tokens to the canvas length. `encoded`: the
        messages' ids already computed (by `encode_many`).
        """
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("the last message of a chat example must be the assistant's")
        if encoded is None:
            encoded = self.encode_many([m["content"] for m in messages])
        prompt = self.encode_prompt(messages[:-1], encoded[:-1])
        response = list(encoded[-1]) + [self.eos_id]
        return ChatEncoding(prompt + response, [False] * len(prompt) + [True] * len(response))
