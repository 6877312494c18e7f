"""What an objective is to the rest of dlm: the one interface that training, evaluation,
the pipeline, the sweep, the quality report and the server ask, instead of branching on
an objective's name (SEDD's noise / loss / sampling split, diffusers' model / scheduler /
pipeline cut).

An objective says
- what its model needs: causal or bidirectional attention, time conditioning, token or
  embedding input (`Needs`);
- its training noise and loss for a batch (`noise`, `loss`);
- its likelihood on held-out data and its kind (`held_out`: exact, or an upper bound over
  K draws with a standard error);
- its sampler: a generator of the `Step`s that traces, the server and the sweep consume
  (`reply_steps`);
- what else it can do: infill and edit (`can_fill`), take forced and required words
  (`can_constrain`), train a length head (`length_head`).

An objective is bound once: a run's start and a checkpoint's load make the instance
(`bind`: its own settings, such as the block size, from the run's config) that is then
passed on; its methods take one typed `Context` (`dlm.objectives.context`).

Adding one is a file in this package, its test and a line in `REGISTRY`
(`dlm/objectives/__init__.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from dlm.errors import ConfigError
from dlm.objectives.context import Context

if TYPE_CHECKING:
    from dlm.config import SampleConfig, TrainConfig
    from dlm.data import Batch, EncodedSet
    from dlm.diffusion import LossOutput, Noise
    from dlm.model import Transformer
    from dlm.sampling import Step
    from dlm.tokenizer import DLMTokenizer


@dataclass(frozen=True)
class Needs:
    """What the model must offer an objective."""

    causal: bool
    """Causal attention (left to right) rather than bidirectional."""
    time: bool = False
    """A time / noise-level input (adaLN); masked diffusion infers it from the masks."""
    inputs: str = "tokens"
    """"tokens" (ids) or "embeddings" (continuous diffusion)."""


@dataclass(frozen=True)
class HeldOut:
    """An objective's likelihood on held-out data, with its kind."""

    nats_per_token: float
    stderr: float
    """Standard error over the `draws` passes (0 when exact)."""
    draws: int
    exact: bool
    """True: the exact NLL. False: an upper bound (exp of it bounds the perplexity)."""


@dataclass(frozen=True)
class Objective:
    """The interface; see the module docstring. Subclasses set the class attributes,
    declare their own settings as dataclass fields and override the methods their
    objective has."""

    name: ClassVar[str]
    needs: ClassVar[Needs]
    summary: ClassVar[str]
    """One line for `--help` and errors."""
    can_fill: ClassVar[bool] = False
    """Fills masks anywhere (infill, edit): needs full attention."""
    can_constrain: ClassVar[bool] = False
    """Takes forced and required words."""
    length_head: ClassVar[bool] = False
    """May train and use a reply-length head."""
    drafts_itself: ClassVar[bool] = False
    """Drafts and verifies its own replies (`dlm bench --self-speculative`)."""
    one_call_per_token: ClassVar[bool] = False
    """Decodes one token per model call: `steps` does not apply; the sweep has one row."""
    export_layout: ClassVar[str | None] = None
    """How `dlm export` writes a checkpoint: "causal" (the Llama family), "masked" (LLaDA's
    layout, Dream's when shifted); None: no layout of the field holds it."""
    exact_likelihood: ClassVar[bool] = False
    """`sequence_nll` is exact (one column); otherwise Monte Carlo draws of a bound."""
    refusal: ClassVar[str] = ""
    """Why it cannot fill or constrain, said to a user who asks."""
    decoding_defaults: ClassVar[dict[str, Any]] = {}
    """Decoding settings of its own that replace dlm's measured ones (`dlm.defaults`)."""

    block_size = 0
    """The block length its sampler and bound use (0: not block-wise; a field of the
    block-wise objectives)."""

    def __str__(self) -> str:
        return self.name

    def bind(self, train: Mapping[str, Any]) -> Objective:
        """This objective with its own settings (its dataclass fields) taken from a run's
        config (`TrainConfig` fields, or a checkpoint's `train` record)."""
        own = {f.name: train[f.name] for f in dataclasses.fields(self) if f.name in train}
        return dataclasses.replace(self, **own)

    def __repr__(self) -> str:
        return f"<objective {self.name}: {self.summary}>"

    # ---- the model and the data
    def padding(self, cfg: TrainConfig) -> str:
        """How the run pads replies (`dlm.diffusion.padding`)."""
        return "eos"

    def can_start_from(self, causal: bool) -> bool:
        """Whether a checkpoint with this attention can be fine-tuned into this objective."""
        return causal == self.needs.causal

    def model_changes(self, causal: bool) -> dict[str, Any]:
        """ModelConfig changes that make a checkpoint of that attention this objective's."""
        return {}

    def check(self, cfg: TrainConfig, data_kind: str) -> None:
        """Refuse settings this objective cannot train with (ConfigError naming them)."""
        if cfg.length_head and not (self.length_head and data_kind == "chat"):
            raise ConfigError("length_head needs chat data and --objective diffusion")

    def scores_first_token(self, model: Transformer) -> bool:
        """Whether the loss scores position 0 (nothing precedes it in a causal or shifted
        model, so those do not)."""
        return not (self.needs.causal or model.config.shift)

    # ---- training
    def noise(self, ctx: Context, batch: Batch) -> Noise | None:
        """The corruption draws of a whole batch, made once per optimiser step."""
        return None

    def loss_weights(self, ctx: Context, batch: Batch) -> torch.Tensor | None:
        """Per-position loss weights (None: every scored token counts once)."""
        return None

    def loss(self, ctx: Context, batch: Batch, noise: Noise | None,
             normalizer: float | None) -> LossOutput:
        raise NotImplementedError

    def per_reply_token(self, nats_per_token: float, data: EncodedSet,
                        tok: DLMTokenizer) -> float:
        """A per-canvas-token figure re-expressed per reply token (the reply's text and its
        closing eos). The padding is a fixed function of the reply, so the canvas's NELBO
        bounds -log p(reply) too: per reply token it compares across padding modes, and
        with AR's exact NLL of the same canvas."""
        from dlm.data import iter_batches
        from dlm.diffusion.padding import reply_lengths

        # a causal model cannot predict a text row's first token: it is not scored
        unscored = self.needs.causal and not data.prompts.shape[1]
        canvas = 0
        for batch in iter_batches(data, 256, tok.pad_id):  # `batch` padding trims each batch
            canvas += int(batch.maskable.sum()) - (batch.ids.shape[0] if unscored else 0)
        lengths = reply_lengths(data.responses, tok.end_ids)
        reply = int((lengths + 1).clamp(max=data.responses.shape[1]).sum())
        return nats_per_token * canvas / max(reply, 1)

    def validation(self, ctx: Context, val: EncodedSet) -> dict[str, float]:
        """The figures of a training evaluation (`val_*` keys of metrics.jsonl)."""
        raise NotImplementedError

    # ---- evaluation
    def held_out(self, ctx: Context, data: EncodedSet, draws: int) -> HeldOut:
        """The likelihood of `data` under `ctx.model` (`draws` Monte Carlo passes for a
        bound; one for an exact figure), in `ctx.batch_size` batches."""
        raise NotImplementedError

    def sequence_nll(self, ctx: Context, ids: torch.Tensor, scored: torch.Tensor,
                     key_padding: torch.Tensor | None, draws: int,
                     generator: torch.Generator) -> torch.Tensor:
        """-log p of each row's `scored` tokens given the rest of the row, (B, draws)
        nats: an exact figure (one column) where the objective has it, else `draws` Monte
        Carlo draws of its bound (lm-eval's `loglikelihood`, zero-shot perplexity).
        ids, scored: (B, T); scored tokens come after every unscored real one."""
        raise ConfigError(f"a {self.name} checkpoint gives no per-sequence likelihood "
                          "(implemented for ar and masked diffusion)", "objective")

    def greedy_reproduces(self, ctx: Context, ids: torch.Tensor, scored: torch.Tensor,
                          key_padding: torch.Tensor | None) -> torch.Tensor:
        """(B,) whether the objective's greedy decoding of the scored tokens, given the
        rest, writes them exactly (lm-eval's `is_greedy`)."""
        raise ConfigError(f"a {self.name} checkpoint has no greedy check", "objective")

    def scored_tokens(self, data: EncodedSet) -> int:
        """How many response tokens `held_out` scores (for bits per byte)."""
        return int(data.responses.numel())

    # ---- sampling
    def reply_steps(self, ctx: Context, prompt: torch.Tensor, key_padding: torch.Tensor | None,
                    config: SampleConfig, generator: torch.Generator | None,
                    constraints=None) -> Iterator[Step]:
        """The denoising (or left-to-right) steps of replies to a (B, P) prompt batch;
        the last step's tokens are the (B, L) reply canvases."""
        raise NotImplementedError

    def drafter(self, ctx: Context, prompt_len: int):
        """The denoiser that drafts for speculative decoding (`dlm.sampling.speculative`):
        (canvas of the prompt and the reply, key padding) -> logits, drafting masks after
        the written reply; None when this objective cannot draft."""
        return None

    def refuse_fill(self) -> None:
        if not self.can_fill:
            raise ConfigError((self.refusal or f"a {self.name} checkpoint cannot fill masks")
                              + " (the shipped one: `DiffusionLM.load(fill=True)`, or "
                              "`dlm infill` / `dlm edit` without --ckpt)")

    def refuse_constraints(self) -> None:
        if not self.can_constrain:
            raise ConfigError(self.refusal or f"a {self.name} checkpoint takes no constraints")



class BoundObjective(Objective):
    """An objective whose held-out figure is an upper bound estimated by Monte Carlo: it
    says what one draw of its loss is on a batch (`bound_loss`); the passes, their
    standard error and the training evaluation are shared."""

    def bound_loss(self, ctx: Context, batch: Batch, generator: torch.Generator) -> LossOutput:
        """One draw of the bound's loss on `batch` under `ctx.model`."""
        raise NotImplementedError

    def noise(self, ctx: Context, batch: Batch) -> Noise | None:
        """One time per row and one uniform per position (objectives drawing more, such
        as prompt dropout or block times, override it)."""
        from dlm.diffusion.corruption import draw_noise

        d = ctx.diffusion
        return draw_noise(batch.ids.shape[0], batch.ids.shape[1], d.eps, d.antithetic,
                          ctx.noise, ctx.device)

    @torch.no_grad()
    def held_out(self, ctx: Context, data: EncodedSet, draws: int) -> HeldOut:
        """`draws` passes over `data`, each with its own (antithetic) draws: their spread
        is the standard error. The generator is reseeded each call, so successive
        evaluations of a run compare the model, not the luck of the draw."""
        from dlm.data import iter_batches
        from dlm.util.statistics import mean_and_stderr

        model = ctx.model
        generator = torch.Generator(ctx.device).manual_seed(ctx.seed + 12345)
        was_training = model.training
        model.eval()
        values = []
        for _ in range(draws):
            total, tokens = 0.0, 0
            for batch in iter_batches(data, ctx.batch_size, ctx.tokenizer.pad_id):
                out = self.bound_loss(ctx, batch.to(ctx.device), generator)
                total += float(out.loss) * out.n_tokens
                tokens += out.n_tokens
            values.append(total / max(tokens, 1))
        model.train(was_training)
        mean, stderr = mean_and_stderr(values)
        return HeldOut(mean, stderr, draws, exact=False)

    def validation(self, ctx: Context, val: EncodedSet) -> dict[str, float]:
        """The bound (4 draws), its perplexity bound and, for chat, the figure per reply
        token (comparable across paddings and with AR's exact NLL)."""
        import math

        with ctx.autocast():
            bound = self.held_out(ctx, val, 4)
        out = {"val_nelbo": bound.nats_per_token,
               "val_ppl_bound": math.exp(min(bound.nats_per_token, 50))}
        if ctx.data_kind == "chat":
            out["val_nelbo_reply"] = self.per_reply_token(bound.nats_per_token, val,
                                                          ctx.tokenizer)
        return out
