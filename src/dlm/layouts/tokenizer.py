"""An imported checkpoint's own tokenizer behind dlm's tokenizer interface.

`tokenizer.json` and `tokenizer_config.json` are read by `transformers`' tokenizer backend
(the file's fast tokenizer: no tokenizer class or code of the checkpoint runs), so text
encodes, and a chat renders through the checkpoint's chat template, exactly as
`transformers` does it. The special ids dlm's samplers need come from the checkpoint's
files: the mask (`mask_token_id` in config.json, else the tokenizer's mask token), eos
and the end of a turn (config.json's and generation_config.json's `eos_token_id`, which
may list several, plus the tokenizer's eos).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlm.errors import CheckpointError, ConfigError, first_line
from dlm.tokenizer import ChatEncoding, DLMTokenizer
from dlm.util.wellformed import check_text

SPECIAL_IDS = "special_ids.json"
"""Beside a checkpoint dlm saves with an imported tokenizer: the ids its config gave."""


def ids_of(value: Any) -> list[int]:
    """`eos_token_id` as configs write it: one id, a list of ids, or none."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


class HFTokenizer(DLMTokenizer):
    """A checkpoint's tokenizer (see the module docstring): text as is, with no leading
    space added, and prompts rendered by its chat template."""

    def __init__(self, backend, folder: Path, config: Mapping[str, Any]):
        # dlm's own special tokens are not looked for: this vocabulary has its own
        self.backend, self.folder = backend, folder
        self.hf = backend.backend_tokenizer if hasattr(backend, "backend_tokenizer") \
            else backend._tokenizer
        self.hf.encode_special_tokens = True  # text that looks like a special token is text
        generation = folder / "generation_config.json"
        gen = json.loads(generation.read_text(encoding="utf-8")) if generation.is_file() else {}
        ends = ids_of(config.get("eos_token_id")) + ids_of(gen.get("eos_token_id"))
        if backend.eos_token_id is not None:
            ends.append(backend.eos_token_id)
        self.end_ids = list(dict.fromkeys(ends))
        """Tokens that end a reply: eos and the end of a turn."""
        if not self.end_ids:
            raise CheckpointError(f"{folder}: no eos token (config.json's eos_token_id, or "
                                  "the tokenizer's eos_token); dlm cannot tell where a reply "
                                  "ends")
        self.eos_id = self.end_ids[0]
        # how a rendered assistant turn ends (an instruct tokenizer's eos is its turn end)
        self.turn_end_id = backend.eos_token_id if backend.eos_token_id is not None \
            else self.eos_id
        mask = config.get("mask_token_id")
        self.mask_id = int(mask) if mask is not None else backend.mask_token_id
        self.bos_id = config.get("bos_token_id", backend.bos_token_id)
        self.pad_id = backend.pad_token_id if backend.pad_token_id is not None else self.eos_id
        self.pad_cycle: list[int] = []
        self.special_ids = frozenset(backend.all_special_ids) | set(self.end_ids)
        if self.mask_id is not None:
            self.special_ids |= {self.mask_id}
        # what the sampler never writes: the template's markers, never eos or the mask
        self.never_generated = tuple(i for i in (self.bos_id,) if i is not None
                                     and i not in self.end_ids)
        self.user_id = self.assistant_id = None  # roles are spelled by the template
        self.has_template = bool(getattr(backend, "chat_template", None))

    @classmethod
    def load_folder(cls, folder: str | Path, config: Mapping[str, Any] | None = None
                    ) -> HFTokenizer:
        """The tokenizer files of `folder`; `config`: the checkpoint's config.json (none: the
        `SPECIAL_IDS` file a dlm checkpoint keeps)."""
        from transformers import PreTrainedTokenizerFast

        folder = Path(folder)
        if config is None:
            special = folder / SPECIAL_IDS
            config = json.loads(special.read_text(encoding="utf-8")) if special.is_file() else {}
        if not (folder / "tokenizer.json").is_file():
            raise CheckpointError(f"{folder}: no tokenizer.json; dlm reads a checkpoint's "
                                  "fast tokenizer file")
        try:
            backend = PreTrainedTokenizerFast.from_pretrained(str(folder))
        except Exception as exc:  # transformers' own reading errors
            raise CheckpointError(f"{folder}: cannot read the tokenizer files "
                                  f"({first_line(exc)})") from None
        return cls(backend, folder, config)

    @property
    def vocab_size(self) -> int:
        return len(self.backend)

    def need_mask(self) -> int:
        """The mask id, for a diffusion reading; an AR checkpoint has none."""
        if self.mask_id is None:
            raise ConfigError(f"{self.folder}: the tokenizer has no mask token (an AR "
                              "checkpoint); adapt it to diffusion with `dlm train "
                              "--init-from`", "mask_token_id")
        return self.mask_id

    def with_rainbow(self, k: int) -> DLMTokenizer:
        if k:
            raise ConfigError("rainbow padding adds dlm's pad tokens, which an imported "
                              "vocabulary does not have; use padding eos", "padding")
        return self

    def save(self, path: str | Path) -> None:
        """tokenizer.json at `path`, the rest of the tokenizer's files beside it, and the
        special ids read from the checkpoint's config (`SPECIAL_IDS`), which a checkpoint
        dlm saves from this one keeps."""
        path = Path(path)
        self.backend.save_pretrained(str(path.parent))
        special = {"mask_token_id": self.mask_id, "eos_token_id": self.end_ids,
                   "bos_token_id": self.bos_id}
        (path.parent / SPECIAL_IDS).write_text(json.dumps(special, indent=2) + "\n")

    def fingerprint(self) -> str:
        template = getattr(self.backend, "chat_template", None) or ""
        return hashlib.sha256((self.hf.to_str() + str(template)).encode()).hexdigest()

    # ------------------------------------------------------------------- text
    def encode(self, text: str) -> list[int]:
        check_text(text, "text")
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        check_text(text, "text")
        enc = self.hf.encode(text, add_special_tokens=False)
        return list(enc.ids), list(enc.offsets)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        check_text(list(texts), "texts")
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], whole: bool = True) -> str:
        """Text of `ids`, special tokens dropped; a whole text loses one leading space
        (the chat template of a vocabulary dlm exported puts one before every turn)."""
        text = self.hf.decode([i for i in ids if i not in self.special_ids],
                              skip_special_tokens=False)
        return text[1:] if whole and text.startswith(" ") else text

    # ------------------------------------------------------------------- chat
    def encode_prompt(self, history: Sequence[dict[str, str]],
                      encoded: Sequence[list[int]] | None = None) -> list[int]:
        """The chat template's ids for `history` with the generation prompt after it, as
        `apply_chat_template(history, add_generation_prompt=True)` gives them. A base
        model with no template: its bos, then the turns' text one per line."""
        if not self.has_template:
            text = "\n".join(turn["content"] for turn in history)
            return ([self.bos_id] if self.bos_id is not None else []) + self.encode(text)
        ids = self.backend.apply_chat_template([dict(t) for t in history],
                                               add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)

    def encode_chat(self, messages: Sequence[dict[str, str]],
                    encoded: Sequence[list[int]] | None = None) -> ChatEncoding:
        """A whole chat as the chat template renders it: the reply is what follows the
        prompt (`encode_prompt`), its turn's end included. Without a template (or one
        whose rendering of the prompt is not a prefix of the whole), the prompt, then the
        reply's text and the end of a turn."""
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("the last message of a chat example must be the assistant's")
        prompt = self.encode_prompt(messages[:-1])
        if self.has_template:
            whole = self.backend.apply_chat_template([dict(m) for m in messages],
                                                     tokenize=True)
            whole = list(whole["input_ids"] if isinstance(whole, Mapping) else whole)
            if whole[:len(prompt)] == prompt and len(whole) > len(prompt):
                response = whole[len(prompt):]
                return ChatEncoding(whole, [False] * len(prompt) + [True] * len(response))
        reply = (list(encoded[-1]) if encoded is not None
                 else self.encode(messages[-1]["content"]))
        response = reply + [self.turn_end_id]
        return ChatEncoding(prompt + response, [False] * len(prompt) + [True] * len(response))
