"""The diffusion sampler: a stateless generator that fills the masks of a canvas step by step.

Each step predicts every masked position at once, samples a token for each, and
commits some of them (which ones: a named commit rule from `rules.RULES`). Given
tokens are carried over unchanged, so replies, infilling, editing and constraints
are all the same loop over different canvases. Every state is yielded, so a caller
can draw the denoising as it happens. Nothing here holds state between calls,
so one sampler serves concurrent requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from dlm.config import SampleConfig
from dlm.errors import ConfigError
from dlm.sampling.cache import CachedDenoiser
from dlm.sampling.rules import (
    block_budgets,
    bottom_k_mask,
    get_rule,
    penalise_repeats,
    remask_count,
    sample_tokens,
    score_low_confidence,
    seen_tokens,
    top_k_mask,
)

Denoiser = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class Step:
    """One state of the canvas.

    tokens: (B, L) ids, mask id where still masked. newly_committed: (B, L) bool,
    what this step committed. confidences: (B, L) the probability of each committed
    token when it was committed (0 for masks and given tokens). step_index: 0 is
    the start; `steps` is the step budget. remasked: (B, L) bool, committed tokens
    this step masked again for revision. nfe: model calls so far (2 per step with
    classifier-free guidance; drafter and verifier calls in speculative decoding).
    Speculative decoding only: drafted, (B, L) bool, positions holding a draft token
    not yet verified (shown in `tokens`); rejected, (B, L) bool, positions whose draft
    the verifier refused this step (their token is now the verifier's own).
    verifier_calls: the verifier's forwards so far.
    """

    tokens: torch.Tensor
    newly_committed: torch.Tensor
    confidences: torch.Tensor
    step_index: int
    steps: int
    remasked: torch.Tensor | None = None
    nfe: int = 0
    drafted: torch.Tensor | None = None
    rejected: torch.Tensor | None = None
    verifier_calls: int = 0

    def _select(self, index) -> Step:
        def part(x):
            return None if x is None else x[index]

        return Step(self.tokens[index], self.newly_committed[index], self.confidences[index],
                    self.step_index, self.steps, part(self.remasked), self.nfe,
                    part(self.drafted), part(self.rejected), self.verifier_calls)

    def crop(self, start: int) -> Step:
        """The same state from position `start` on (a reply without its prompt)."""
        return self._select((slice(None), slice(start, None)))

    def rows(self, first: int, end: int) -> Step:
        """The same state for rows [first, end) only (one request of a shared batch)."""
        return self._select(slice(first, end))


@dataclass
class Canvas:
    """What the sampler fills.

    tokens: (B, T) ids with `mask_id` at every position to fill; all others are
    given and never change. key_padding: (B, T) True on real tokens (None: no
    padding). start: where the decoded region begins (a reply: after the prompt);
    blocks count from here, and the first block also takes any mask before it.
    prompt: (B, T) bool, what classifier-free guidance drops for its unconditional
    pass. no_eos: (B, T) bool, positions where eos may not be sampled (constraints).
    banned: ids never sampled anywhere (the chat template's markers and padding).
    pads: the rainbow pad ids of a model trained with them: like eos they end a reply,
    so `eos` ban and defer treat them as eos.
    """

    tokens: torch.Tensor
    mask_id: int
    eos_id: int | None = None
    key_padding: torch.Tensor | None = None
    start: int = 0
    prompt: torch.Tensor | None = None
    no_eos: torch.Tensor | None = None
    banned: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()


def reply_canvas(prompt: torch.Tensor, key_padding: torch.Tensor | None, length: int,
                 mask_id: int, eos_id: int | None = None, banned: tuple[int, ...] = (),
                 pads: tuple[int, ...] = ()) -> Canvas:
    """A left-padded prompt (B, P) followed by `length` masks."""
    B, P = prompt.shape
    masks = torch.full((B, length), mask_id, dtype=prompt.dtype, device=prompt.device)
    real = (key_padding if key_padding is not None
            else torch.ones(B, P, dtype=torch.bool, device=prompt.device))
    is_prompt = torch.cat([real, torch.zeros_like(masks, dtype=torch.bool)], 1)
    padding = None if key_padding is None else torch.cat(
        [key_padding, torch.ones_like(masks, dtype=torch.bool)], 1)
    return Canvas(torch.cat([prompt, masks], 1), mask_id, eos_id, padding, P, is_prompt,
                  banned=banned, pads=pads)


def window_logits(denoiser: Denoiser | CachedDenoiser, tokens: torch.Tensor,
                  key_padding: torch.Tensor | None, lo: int, hi: int) -> torch.Tensor:
    """Logits (B, hi - lo, V) of the window [lo, hi): a cached denoiser computes only what
    it must, a plain one the whole canvas."""
    if getattr(denoiser, "windowed", False):
        return denoiser(tokens, key_padding, lo, hi)
    return denoiser(tokens, key_padding)[:, lo:hi]


def guided_logits(denoiser: Denoiser | CachedDenoiser, tokens: torch.Tensor, canvas: Canvas,
                  scale: float, lo: int = 0, hi: int | None = None) -> tuple[torch.Tensor, int]:
    """Logits (B, W, V) of the window [lo, hi) and the model calls they cost.

    With classifier-free guidance the prompt-less canvas (prompt replaced by masks,
    as training drops it) runs in the same batch:
    uncond + (scale + 1) * (cond - uncond).
    """
    hi = tokens.shape[1] if hi is None else hi
    if scale == 0 or canvas.prompt is None:
        return window_logits(denoiser, tokens, canvas.key_padding, lo, hi).float(), 1
    uncond = tokens.masked_fill(canvas.prompt, canvas.mask_id)
    padding = (None if canvas.key_padding is None
               else torch.cat([canvas.key_padding, canvas.key_padding]))
    both = window_logits(denoiser, torch.cat([tokens, uncond]), padding, lo, hi)
    cond, free = both.float().chunk(2)
    return free + (scale + 1) * (cond - free), 2


def denoise(denoiser: Denoiser, canvas: Canvas, config: SampleConfig,
            generator: torch.Generator | None = None) -> Iterator[Step]:
    """Yield the canvas after every step until no mask is left.

    Blocks of `config.block_length` are decoded left to right (LLaDA's
    semi-autoregressive mode), each with an equal share of `config.steps`; within a
    block a step commits what the rule counts, so the block is full after its
    share (a threshold rule may finish it sooner). With `config.remask` the
    least confident tokens the sampler committed earlier in the block are masked
    again, at a rate that decays to zero by the block's last step.
    """
    rule = get_rule(config.rule)
    if config.no_repeat_ngram:
        raise ConfigError("no_repeat_ngram is for left-to-right (AR) decoding; a diffusion "
                          "reply has no order to ban n-grams in (use repetition_penalty)")
    if config.cache != "none":
        denoiser = CachedDenoiser(denoiser, config.cache)
    mask_id, eos_id = canvas.mask_id, canvas.eos_id
    tokens = canvas.tokens.clone()
    B, T = tokens.shape
    nothing = torch.zeros_like(tokens, dtype=torch.bool)
    confidences = torch.zeros(B, T, dtype=torch.float64, device=tokens.device)
    filled = nothing.clone()  # what the sampler committed (remasking may revise only these)
    no_eos = canvas.no_eos if canvas.no_eos is not None else nothing
    if config.eos == "ban":
        no_eos = no_eos | (tokens == mask_id)
    ban_eos = eos_id is not None and bool(no_eos.any())  # decided once, not per step
    ends = [] if eos_id is None else [eos_id, *canvas.pads]  # what ends a reply
    region = T - canvas.start
    budgets = block_budgets(region, config.block_length or region, config.steps)
    budget = sum(n for _, _, n in budgets)
    yield Step(tokens.clone(), nothing, confidences.clone(), 0, budget, nothing, 0)
    blanks = (tokens == mask_id).any(0).nonzero()
    if len(blanks) == 0:
        return
    first_mask = int(blanks[0])  # masks only ever appear at or after the first one
    index = nfe = 0
    for b, (start, end, block_steps) in enumerate(budgets):
        # the window: nothing left of the first mask or right of the block is sampled
        lo = first_mask if b == 0 else max(first_mask, canvas.start + start)
        hi = canvas.start + end
        in_block = nothing.clone()
        in_block[:, 0 if b == 0 else canvas.start + start : hi] = True
        for j in range(block_steps):
            masked = (tokens == mask_id) & in_block  # later blocks wait their turn
            if not bool(masked.any()):
                break
            steps_left = block_steps - j
            logits, calls = guided_logits(denoiser, tokens, canvas, config.cfg_scale, lo, hi)
            nfe += calls  # logits: (B, W, V) for the window [lo, hi)
            logits[..., mask_id] = float("-inf")  # SUBS: never predict a mask
            if canvas.banned:
                logits[..., list(canvas.banned)] = float("-inf")
            if ban_eos:
                logits[..., ends] = logits[..., ends].masked_fill(no_eos[:, lo:hi, None],
                                                                  float("-inf"))
            if config.repetition_penalty != 1.0:  # ids already committed in the reply
                committed = tokens[:, canvas.start:].masked_fill(~filled[:, canvas.start:], -1)
                logits = penalise_repeats(logits, seen_tokens(
                    committed, logits.shape[-1], tuple(ends)),
                    config.repetition_penalty)
            window, probs = sample_tokens(logits, config.temperature, config.top_k,
                                          config.top_p, generator)  # (B, W), (B, W, V)
            window_scores = rule.score(window, probs, generator)
            sampled = tokens.clone()
            sampled[:, lo:hi] = window.to(tokens.dtype)
            scores = torch.full_like(confidences, float("-inf"))
            scores[:, lo:hi] = window_scores
            scores = scores.masked_fill(~masked, float("-inf"))
            token_prob = torch.zeros_like(confidences)  # shown in traces, whatever the rule
            token_prob[:, lo:hi] = score_low_confidence(window, probs)
            first = masked  # the candidates ranked first (what a threshold counts among)
            deferred = None
            if config.eos == "defer" and eos_id is not None:
                # eos ranks below every word (but above the positions not to commit), and
                # counts only once a row has no word left to commit
                deferred = masked & torch.isin(sampled, torch.tensor(ends, device=sampled.device))
                words = masked & ~deferred
                first = torch.where(words.any(1, keepdim=True), words, masked)
            k = rule.count(scores, masked, first, steps_left, config.threshold)  # (B,)
            if deferred is not None:
                scores = torch.where(deferred, scores - 1e6, scores)
            commit = top_k_mask(scores, k) & masked
            tokens = torch.where(commit, sampled, tokens)
            confidences = torch.where(commit, token_prob, confidences)
            remasked = nothing
            if config.remask > 0:
                earlier = filled & in_block  # not what this step just committed
                r = remask_count(earlier.sum(1), config.remask, steps_left, block_steps)
                remasked = bottom_k_mask(confidences.masked_fill(~earlier, float("inf")),
                                         r) & earlier
                tokens = tokens.masked_fill(remasked, mask_id)
                confidences = confidences.masked_fill(remasked, 0.0)
            filled = (filled | commit) & ~remasked
            index += 1
            yield Step(tokens.clone(), commit, confidences.clone(), index, budget,
                       remasked, nfe)


def sample(denoiser: Denoiser, canvas: Canvas, config: SampleConfig,
           generator: torch.Generator | None = None,
           on_step: Callable[[Step], None] | None = None) -> torch.Tensor:
    """The final canvas (B, T); `on_step` sees every intermediate state."""
    return final_tokens(denoise(denoiser, canvas, config, generator), on_step)


def final_tokens(steps: Iterator[Step], on_step: Callable[[Step], None] | None = None,
                 ) -> torch.Tensor:
    """Run a step generator (diffusion or AR) to its end; `on_step` sees every state."""
    last = None
    for step in steps:
        if on_step is not None:
            on_step(step)
        last = step
    assert last is not None
    return last.tokens
