"""dlm models as an lm-evaluation-harness model (`lm_eval.api.model.LM`).

    dlm eval --harness dlm_dailydialog_next --ckpt runs/chat --harness-args mc_num=128
    lm_eval.simple_evaluate(model=DLMHarness(pretrained="runs/chat"), tasks=[...])

The three request types:
- `loglikelihood`: exact for an AR checkpoint; for masked diffusion the mean of `mc_num`
  Monte Carlo draws of the ELBO (`Objective.sequence_nll`, t stratified per request), its
  standard error kept per request (`self.scores`). `is_greedy`: for AR, every
  continuation token is the argmax; for diffusion, greedy unmasking of the continuation
  (all masked, the surest position committed to its argmax, one per call) writes it
  exactly.
- `loglikelihood_rolling`: lm-eval's own disjoint rolling windows (as its `hf` backend
  makes them), each scored as a pair, summed per document.
- `generate_until`: a reply by the model's own sampler with its default decoding, every
  `SampleConfig` field settable as a model argument; the reply is at most `max_gen_toks`
  tokens (the model's own canvas, or `max_gen_toks` where that is shorter: a diffusion
  model's canvas past the one it was trained on is one it never learnt), and the first
  stop string (`until`) cuts it.

`chat` (default: on for a chat checkpoint of dlm's, off for an imported folder without a
chat template): the context is a user turn rendered with the chat template and the
continuation is the assistant's reply, which is how a dlm chat model was trained; off,
both are plain text, encoded as lm-eval's `hf` backend encodes them (the context's
trailing spaces moved to the continuation, the continuation's ids taken from the whole).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lm_eval.api.model import LM
from tqdm import tqdm

from dlm.config import SampleConfig, from_dict
from dlm.errors import ConfigError
from dlm.evaluation.scoring import Score, positions, score_pairs

SAMPLE_FIELDS = {f.name for f in dataclasses.fields(SampleConfig)}


class DLMHarness(LM):
    """A dlm checkpoint (or an imported folder) behind lm-eval's `LM` interface."""

    def __init__(self, pretrained: str | None = None, device: str = "cpu",
                 dtype: str = "float32", batch_size: int | str = 16, mc_num: int = 32,
                 chat: bool | None = None, greedy_check: bool = True, seed: int = 0,
                 max_batch_size: int | None = None, **sample: Any):
        super().__init__()
        from dlm.pipeline import DiffusionLM

        unknown = sorted(set(sample) - SAMPLE_FIELDS)
        if unknown:
            raise ConfigError(f"model argument {unknown[0]!r} is neither a harness setting "
                              "(pretrained, device, dtype, batch_size, mc_num, chat, "
                              "greedy_check, seed) nor a SampleConfig field", unknown[0])
        self.lm = DiffusionLM.load(pretrained, device or "cpu", dtype=dtype)
        self.batch = 16 if batch_size in (None, "auto") or str(batch_size).startswith(
            "auto") else int(batch_size)
        self.mc_num, self.seed, self.greedy_check = int(mc_num), int(seed), greedy_check
        tok = self.lm.tokenizer
        self.chat = (chat if chat is not None
                     else getattr(tok, "has_template", tok.assistant_id is not None))
        self.sample = from_dict(SampleConfig, {**vars(self.lm.decoding()), **sample},
                                "model_args")
        self.scores: list[Score] = []
        """Every loglikelihood request's score (log-prob, stderr, draws), in order."""

    # ---- what lm-eval asks of a model
    @property
    def tokenizer_name(self) -> str:
        return f"dlm-{self.lm.tokenizer.fingerprint()[:12]}"

    @property
    def eot_token_id(self) -> int:
        return self.lm.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self.lm.model.config.max_seq_len

    def describe(self) -> dict[str, Any]:
        """What every figure of a run rests on: the estimator, draws, precision, seed."""
        exact = self.lm.objective.exact_likelihood
        return {"checkpoint": str(self.lm.source), "objective": self.lm.objective.name,
                "estimator": "exact" if exact else "Monte Carlo ELBO (t stratified)",
                "draws": 1 if exact else self.mc_num, "dtype": str(self.lm.dtype),
                "device": str(self.lm.device), "seed": self.seed, "chat": self.chat}

    # ---- encoding
    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.lm.tokenizer
        if self.chat:  # the continuation is the assistant's reply to the context
            return (tok.encode_prompt([{"role": "user", "content": context}]),
                    tok.encode(continuation.lstrip()))
        spaces = len(context) - len(context.rstrip())
        if spaces:  # as lm-eval's hf backend: trailing spaces belong to the continuation
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [tok.eos_id], tok.encode(continuation)
        whole, head = tok.encode(context + continuation), tok.encode(context)
        return head, whole[len(head):]

    def _score(self, pairs, disable_tqdm: bool, what: str) -> list[Score]:
        bar = tqdm(total=len(pairs), disable=disable_tqdm, desc=f"dlm {what}")
        scores = score_pairs(self.lm, pairs, self.mc_num, self.batch, self.seed,
                             greedy=self.greedy_check and what == "loglikelihood",
                             progress=bar.update)
        bar.close()
        return scores

    # ---- the three request types
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self.pair(*req.args) for req in requests]
        scores = self._score(pairs, disable_tqdm, "loglikelihood")
        self.scores += scores
        return [(s.logprob, bool(s.greedy)) for s in scores]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        tok, windows, owner = self.lm.tokenizer, [], []
        for n, req in enumerate(requests):
            for window in get_rolling_token_windows(
                    token_list=tok.encode(req.args[0]), prefix_token=tok.eos_id,
                    max_seq_len=positions(self.lm) - 1, context_len=1):
                windows.append(make_disjoint_window(window))
                owner.append(n)
        scores = self._score(windows, disable_tqdm, "loglikelihood_rolling")
        totals = [0.0] * len(requests)
        for n, score in zip(owner, scores, strict=True):
            totals[n] += score.logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        for req in tqdm(requests, disable=disable_tqdm, desc="dlm generate_until"):
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            config = self.sample
            if "max_gen_toks" in kwargs:  # at most that many: a canvas past the model's
                most = int(kwargs.pop("max_gen_toks"))  # own would be one it never learnt
                own = config.length if isinstance(config.length, int) else most
                config = dataclasses.replace(config, length=min(most, own))
            if kwargs.pop("do_sample", False) and "temperature" in kwargs:
                config = dataclasses.replace(config, temperature=float(kwargs["temperature"]))
            history = [{"role": "user", "content": context}]
            text = self.lm.reply(history, config)
            for stop in until:
                text = text.split(stop)[0] if stop else text
            out.append(text)
        return out


def run_harness(ckpt: str | None, tasks: list[str], model_args: dict[str, Any] | None = None,
                limit: int | None = None, device: str = "cpu",
                include_path: str | None = None) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` on `tasks` with dlm's model (and dlm's local tasks,
    `dlm.evaluation.harness_tasks`, beside lm-eval's own)."""
    from pathlib import Path

    import lm_eval
    from lm_eval.tasks import TaskManager

    local = Path(__file__).with_name("harness_tasks")
    paths = [str(local)] + ([include_path] if include_path else [])
    model = DLMHarness(pretrained=ckpt, device=device, **(model_args or {}))
    results = lm_eval.simple_evaluate(model=model, tasks=tasks, limit=limit,
                                      task_manager=TaskManager(include_path=paths),
                                      random_seed=model.seed, numpy_random_seed=model.seed,
                                      torch_random_seed=model.seed, log_samples=False)
    results["dlm"] = {**model.describe(), "requests_scored": len(model.scores),
                      "mean_stderr": (sum(s.stderr for s in model.scores)
                                      / max(len(model.scores), 1))}
    return results

