"""The user-facing object: a trained model with its tokenizer, ready to generate and chat.

    from dlm import DiffusionLM, SampleConfig
    lm = DiffusionLM.from_pretrained("runs/dlm")      # a directory, or a hub id
    print(lm.generate("hello", SampleConfig(steps=16)))
    lm.save_pretrained("my-model")                    # lm.push_to_hub("me/my-model")

`save_pretrained`/`from_pretrained`/`push_to_hub` come from `huggingface_hub`'s
`ModelHubMixin`; the directory is a dlm checkpoint (config.json, model.safetensors,
tokenizer.json) plus a model card, so what is pushed loads back with `from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin

from dlm.checkpoint import load_checkpoint, save_checkpoint
from dlm.config import SampleConfig
from dlm.control import Constraints, Edit, Infill, edit, infill
from dlm.diffusion.shift import as_denoiser
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.objectives import Context, Objective, bind_objective
from dlm.sampling import Canvas, Step, denoise, final_tokens
from dlm.tokenizer import DLMTokenizer
from dlm.util.wellformed import check_text


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


# Weight precisions a model can be loaded in for inference. bfloat16 halves the bytes read
# per forward and uses the CPU's bf16 matrix units; greedy replies can differ from float32's
# where two tokens are nearly tied, so a comparison holds the precision fixed.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pick_dtype(name: str | torch.dtype) -> torch.dtype:
    """float32 or bfloat16 (a name or the torch dtype); anything else is refused."""
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use {' or '.join(DTYPES)}", "dtype")
    return DTYPES[name]


MODEL_CARD = """---
{{ card_data }}
---

A masked (absorbing-state) diffusion language model trained with
dlm. Replies start as `[MASK]` tokens and are denoised in a few
parallel steps.

```python
from dlm import DiffusionLM, SampleConfig
lm = DiffusionLM.from_pretrained("{{ repo_id | default('path/to/this/model') }}")
print(lm.generate("hello", SampleConfig(steps=16)))
```

The training settings are in `config.json` (`train`).
"""


class DiffusionLM(ModelHubMixin, library_name="dlm", model_card_template=MODEL_CARD,
                  tags=["text-diffusion", "masked-diffusion", "dlm"]):
    """A masked-diffusion chat model: `generate` for one-shot prompts, `reply` for chats."""

    def __init__(self, model: Transformer, tokenizer: DLMTokenizer, max_prompt_len: int = 32,
                 default_length: int = 32, lowercase: bool = False,
                 objective: str | Objective = "diffusion"):
        self.model, self.tokenizer = model.eval(), tokenizer
        # how it was trained, hence how it samples and what it can do (`dlm.objectives`);
        # `load` binds it to the checkpoint's settings (a block size, ...)
        self.objective = (bind_objective({"objective": objective})
                          if isinstance(objective, str) else objective)
        self.max_prompt_len, self.default_length = max_prompt_len, default_length
        self.lowercase = lowercase  # the model was trained on lowercased text
        self.source: Path | None = None  # the checkpoint it was loaded from, if any
        self.meta: dict = {}  # its config.json, kept when saved again
        self.verifier: DiffusionLM | None = None  # the AR model of `decode="speculative"`

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", best: bool = True,
             dtype: str | torch.dtype = "float32", fill: bool = False) -> DiffusionLM:
        """Load a checkpoint directory, or a run directory: its `best/` (the lowest
        validation NELBO) when it has one and `best`, else its `last/`; the weights in
        `dtype` (float32, or bfloat16 for faster inference). No path: the shipped chat
        model, as every command uses without `--ckpt`; with `fill`, the shipped model that
        fills masks anywhere (`infill`, `edit`)."""
        from dlm.shipped import shipped_checkpoint

        dtype = pick_dtype(dtype)
        ckpt = load_checkpoint(path or shipped_checkpoint(fill), pick_device(device), best,
                               dtype)
        ckpt.model.to(dtype)
        train = ckpt.meta.get("train", {})
        objective = bind_objective({**train, "objective": ckpt.meta.get("objective",
                                                                         "diffusion")})
        lm = cls(ckpt.model, ckpt.tokenizer, train.get("prompt_len", 32),
                 train.get("response_len", 32), train.get("lowercase", False), objective)
        lm.source, lm.meta = ckpt.path, ckpt.meta
        return lm

    # ---- hub layout (the mixin's save_pretrained / from_pretrained / push_to_hub call these)
    def _save_pretrained(self, save_directory: Path) -> None:
        train = {**self.meta.get("train", {}), "prompt_len": self.max_prompt_len,
                 "response_len": self.default_length, "lowercase": self.lowercase}
        meta = {k: v for k, v in self.meta.items()
                if k not in ("model", "format_version", "dlm_version")}
        meta["objective"] = self.objective.name
        save_checkpoint(save_directory, self.model, self.tokenizer, {**meta, "train": train})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path | None = None,
                        **kwargs) -> DiffusionLM:
        """A local directory or a hub id (the hub mixin's loader); none: the shipped chat
        model, like `load()`."""
        if pretrained_model_name_or_path is None:
            return cls.load(None, kwargs.get("device", "auto"))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None,
                         cache_dir: str | Path | None, force_download: bool,
                         local_files_only: bool, token: str | bool | None,
                         device: str = "auto", **kwargs) -> DiffusionLM:
        path = Path(model_id)
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(
                repo_id=model_id, revision=revision, cache_dir=cache_dir,
                force_download=force_download, local_files_only=local_files_only, token=token))
        return cls.load(path, device)

    def source_note(self) -> str | None:
        """Which of a run's checkpoints this is, when it is the kept best one."""
        if self.source is None or self.source.name != "best":
            return None
        best = self.meta.get("best") or {}
        last = self.source.parent / "last" / "config.json"
        last_step = json.loads(last.read_text()).get("step") if last.is_file() else None
        return (f"using {self.source} (step {best.get('step')}, {best.get('metric')} "
                f"{best.get('value', float('nan')):.3f}); last/ is step {last_step}")

    @property
    def denoiser(self):
        """The model as the sampler calls it (logits aligned when it is shifted)."""
        return as_denoiser(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def block_size(self) -> int:
        """A block-wise objective's block length (0: not block-wise)."""
        return self.objective.block_size

    @property
    def context(self) -> Context:
        """What its objective samples with: the model, tokenizer, the noise schedule it
        was trained with, the length head's predictions."""
        from dlm.diffusion import get_schedule

        train = self.meta.get("train", {})
        schedule = get_schedule(train.get("diffusion", {}).get("schedule", "linear"))
        return Context(self.model, self.tokenizer, schedule, self.device,
                       predict_lengths=self.predict_lengths, lowercase=self.lowercase)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _prompt_batch(self, histories: Sequence[Sequence[dict[str, str]]],
                      max_prompt_len: int | None = None):
        tok = self.tokenizer
        max_prompt_len = max_prompt_len or self.max_prompt_len
        rows = []
        for history in histories:
            if not history or not any(m["content"].strip() for m in history):
                raise ConfigError("the prompt is empty; type some text to reply to")
            if self.lowercase:
                history = [{**m, "content": m["content"].lower()} for m in history]
            ids = tok.encode_prompt(history)
            rows.append(ids[-max_prompt_len:])
        width = max(len(r) for r in rows)
        prompt = torch.tensor([[tok.pad_id] * (width - len(r)) + r for r in rows])
        # by position, not by id: an imported vocabulary may pad with its eos, which a
        # rendered chat also holds
        key_padding = torch.tensor([[False] * (width - len(r)) + [True] * len(r)
                                    for r in rows])
        if bool(key_padding.all()):
            key_padding = None
        return prompt.to(self.device), None if key_padding is None else key_padding.to(self.device)

    def with_verifier(self, verifier: DiffusionLM | str | Path) -> DiffusionLM:
        """Attach the autoregressive model that `SampleConfig(decode="speculative")` verifies
        this model's drafts with (a loaded model or a checkpoint path); returns self.
        Refused unless this model drafts (full attention), the verifier is causal, and
        both share one tokenizer (the drafts are its ids; the drafter's may add rainbow pads,
        which it proposes as eos). A path is loaded in this model's dtype."""
        if not isinstance(verifier, DiffusionLM):
            verifier = DiffusionLM.load(verifier, str(self.device), dtype=self.dtype)
        if self.objective.drafter(self.context, 1) is None:
            raise ConfigError(f"this model ({self.objective.name}) cannot draft for "
                              "speculative decoding: use a masked-diffusion (diffusion, "
                              "AR-adapted diffusion) or block-diffusion checkpoint")
        if not (verifier.model.config.causal and verifier.objective.one_call_per_token):
            raise ConfigError(f"the verifier {verifier.source or ''} is not an "
                              "autoregressive checkpoint (objective "
                              f"{verifier.objective.name}); train one with --objective ar")
        # the same tokenizer, or the drafter's with its rainbow pads added (proposed as eos,
        # so every drafted id is one the verifier reads)
        pads = len(self.tokenizer.pad_cycle)
        if verifier.tokenizer.with_rainbow(pads).hf.to_str() != self.tokenizer.hf.to_str():
            raise ConfigError(f"the verifier {verifier.source or ''} has another tokenizer "
                              f"than this model {self.source or ''} (vocabularies "
                              f"{verifier.tokenizer.vocab_size} and {self.tokenizer.vocab_size}"
                              "): speculative decoding needs both to read the same ids; train "
                              "them on one `dlm data` directory")
        verifier.model.to(self.device)
        self.verifier = verifier
        return self

    def _steps(self, prompt: torch.Tensor, key_padding: torch.Tensor | None,
               config: SampleConfig, constraints: Constraints | None = None):
        """The step generator of `config.decode`: the objective's sampler, or speculative."""
        generator = self._generator(config)
        if config.decode != "speculative":
            return self.objective.reply_steps(self.context, prompt, key_padding, config,
                                              generator,
                                              constraints)
        from dlm.sampling.speculative import speculative_decode

        if self.verifier is None:
            raise ConfigError("decode speculative needs a verifier: pass --verifier AR_CKPT "
                              "(Python: lm.with_verifier(path))", "decode")
        if constraints:
            raise ConfigError("speculative decoding takes no forced or required words: the "
                              "verifier writes left to right")
        if config.length == "auto":  # the verifier ends the reply; the length is a bound
            config = dataclasses.replace(config, length=self.default_length)
        tok = self.tokenizer
        drafter = self.objective.drafter(self.context, prompt.shape[1])
        return speculative_decode(drafter, self.verifier.model, prompt, key_padding,
                                  config, tok.mask_id, tok.eos_id, tok.never_generated,
                                  tuple(tok.pad_cycle), generator)

    @torch.inference_mode()
    def reply_ids(
        self, histories: Sequence[Sequence[dict[str, str]]], config: SampleConfig | None = None,
        on_step: Callable[[Step], None] | None = None, constraints: Constraints | None = None,
    ) -> torch.Tensor:
        """Response canvases (B, L) for a batch of chat histories, denoised in one batch."""
        check_text(histories, "histories")
        if constraints:
            check_text({"force": constraints.force, "require": constraints.require},
                       "constraints")
        config = self.resolve_length(config or self.decoding())
        # speculative decoding writes the verifier's reply: to the prompt as it reads it
        speculative = config.decode == "speculative" and self.verifier is not None
        most = self.verifier.max_prompt_len if speculative else self.max_prompt_len
        if isinstance(config.length, int):  # the prompt keeps its latest tokens that fit
            room = self.model.config.max_seq_len - config.length
            if room < 1:
                raise ConfigError(f"length {config.length} leaves no room for a prompt in "
                                  f"the model's {self.model.config.max_seq_len} positions",
                                  "length")
            most = min(most, room)
        prompt, key_padding = self._prompt_batch(histories, most)
        return final_tokens(self._steps(prompt, key_padding, config, constraints), on_step)

    @torch.inference_mode()
    def unconditional_ids(self, n: int, config: SampleConfig,
                          on_step: Callable[[Step], None] | None = None) -> torch.Tensor:
        """`n` samples (n, config.length) from nothing but a document boundary (the eos
        that joins a text model's packed documents), for generative perplexity and
        entropy: the same start for every objective, AR included."""
        prompt = torch.full((n, 1), self.tokenizer.eos_id, device=self.device)
        return final_tokens(self._steps(prompt, None, config), on_step)

    def predict_lengths(self, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                        config: SampleConfig | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) reply lengths in tokens from the length head on the (B, P) prompts: the
        argmax, or drawn from the head's distribution (`length_sample`), plus
        `length_margin`, kept within the model's positions."""
        config = config or SampleConfig()
        logits = self.model(prompt, key_padding, head="length").float()  # (B, classes)
        if config.length_sample:
            picked = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
        else:
            picked = logits.argmax(-1)
        room = self.model.config.max_seq_len - prompt.shape[1]
        return (picked + 1 + config.length_margin).clamp(1, room)

    def decoding(self, **given) -> SampleConfig:
        """The settings a reply takes when none are passed: the measured defaults every
        door starts from (this API, the commands, the server and its page;
        `dlm.defaults.chat_decoding`: the model's own canvas, not the length head's),
        updated by `given` fields (None: not given)."""
        from dlm.defaults import chat_decoding

        return chat_decoding(self, **given)

    def resolve_length(self, config: SampleConfig) -> SampleConfig:
        """`length="auto"` stays for a model with a length head; others get their default."""
        if config.length == "auto" and (not self.objective.length_head
                                        or getattr(self.model, "length_head", None) is None):
            return dataclasses.replace(config, length=self.default_length)
        return config

    def _generator(self, config: SampleConfig) -> torch.Generator | None:
        if config.seed is None:
            return None
        return torch.Generator(self.device).manual_seed(config.seed)

    @torch.inference_mode()
    def fill(self, canvas: Canvas, config: SampleConfig,
             on_step: Callable[[Step], None] | None = None) -> torch.Tensor:
        """Fill every mask of `canvas` (B, T), given tokens unchanged (infill, edit)."""
        self.objective.refuse_fill()
        return final_tokens(denoise(self.denoiser, canvas, config, self._generator(config)),
                            on_step)

    def decode_reply(self, ids: Sequence[int], config: SampleConfig | None = None) -> str:
        """Reply text of a canvas row: up to the first eos, or (trim_eos off) every token."""
        if config is not None and not config.trim_eos:
            return self.tokenizer.decode(ids)
        return self.tokenizer.decode_response(ids)

    def reply(self, history: Sequence[dict[str, str]], config: SampleConfig | None = None,
              on_step: Callable[[Step], None] | None = None,
              constraints: Constraints | None = None) -> str:
        """The assistant's next turn for a chat history (a list of {"role", "content"})."""
        check_text(history, "history")
        ids = self.reply_ids([history], config, on_step, constraints)
        return self.decode_reply(ids[0].tolist(), config)

    def generate(self, prompts: str | Sequence[str], config: SampleConfig | None = None,
                 n: int = 1, on_step: Callable[[Step], None] | None = None,
                 constraints: Constraints | None = None) -> list[str]:
        """Replies to one or more single-turn prompts, `n` samples each, in one batch."""
        check_text(prompts, "prompts")
        if isinstance(prompts, str):
            prompts = [prompts]
        histories = [[{"role": "user", "content": p}] for p in prompts for _ in range(n)]
        ids = self.reply_ids(histories, config, on_step, constraints)
        return [self.decode_reply(row.tolist(), config) for row in ids]

    def infill(self, template: str, prompt: str | None = None,
               config: SampleConfig | None = None, max_span: int = 8,
               on_step: Callable[[Step], None] | None = None) -> Infill:
        """Fill the `[MASK]`, `[MASK*n]` and `[MASK*?]` blanks of `template` (see
        `dlm.control.infill`); given text is never changed."""
        check_text({"template": template, "prompt": prompt}, "")
        return infill(self, template, prompt, config or self.decoding(), max_span, on_step)

    def edit(self, text: str, span: str | None = None, low_confidence: int = 0,
             prompt: str | None = None, config: SampleConfig | None = None,
             length: int | None = None, on_step: Callable[[Step], None] | None = None) -> Edit:
        """Regenerate a span of `text` (regex or A:B) or its `low_confidence` least likely
        tokens (see `dlm.control.edit`); the rest is kept."""
        check_text({"text": text, "span": span, "prompt": prompt}, "")
        return edit(self, text, span, low_confidence, prompt, config or self.decoding(),
                    length, on_step)
