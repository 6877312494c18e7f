"""This server's limits, applied to one request: what is refused and what is clamped.

Refused with a 4xx naming the limit: a prompt over `max_prompt_tokens`, `max_tokens` over
its limit, `steps` over `max_steps`, `n` over `max_n` (and, in `app.py`, a body over
`max_request_bytes`). Clamped, and reported back in the reply's `dlm` field: a block
length longer than the reply, more steps than reply tokens (a step must commit a token),
a guidance scale over `max_cfg_scale`.
"""

from __future__ import annotations

from dataclasses import asdict

from dlm.config import SampleConfig, ServeConfig
from dlm.server.schemas import DiffusionSettings


class RequestError(Exception):
    """A request the server refuses (over a limit, malformed, unauthorised): answered
    with `status` and a JSON error whose `param` names the field."""

    def __init__(self, status: int, param: str, message: str, code: str = "limit_exceeded"):
        super().__init__(message)
        self.status, self.param, self.message, self.code = status, param, message, code


def check_count(value: int, limit: int, param: str, limit_name: str) -> None:
    if value > limit:
        raise RequestError(400, param, f"{param}={value} is over this server's limit "
                         f"{limit_name}={limit}")


def sample_config(req: DiffusionSettings, limits: ServeConfig, default_length: int,
                  rainbow: bool = True) -> SampleConfig:
    """The sampler settings for a request: its fields, the server's defaults (`dlm.defaults`;
    `rainbow`: the model was trained with rainbow pads), the limits."""
    from dlm.defaults import DIFFUSION, EOS_PADDED

    # A fixed canvas, also for a model with a length head: sized by the head, 14.5% of the
    # shipped model's replies to 256 validation prompts stopped mid-sentence (eos is banned
    # inside the predicted length), where a whole canvas with eos allowed ends them itself.
    length = req.max_tokens or default_length
    check_count(length, limits.max_tokens, "max_tokens", "max_tokens")
    check_count(req.n, limits.max_n, "n", "max_n")
    steps = req.steps or length  # the measured default: one step per reply token
    check_count(steps, limits.max_steps, "steps", "max_steps")
    block = min(req.block_length if req.block_length is not None
                else DIFFUSION["block_length"], length)
    rule = req.commit_rule or DIFFUSION["rule"]

    def pick(value, name):  # the request's field, else the measured default
        return value if value is not None else DIFFUSION[name]

    return SampleConfig(
        length=length, steps=min(steps, length) if rule != "threshold" else steps,
        temperature=pick(req.temperature, "temperature"),
        top_p=req.top_p if req.top_p is not None else 1.0,
        block_length=0 if block == length else block, rule=rule,
        threshold=req.threshold if req.threshold is not None else 0.9,
        remask=pick(req.remask, "remask"),
        cfg_scale=min(req.cfg_scale or 0.0, limits.max_cfg_scale),
        repetition_penalty=DIFFUSION["repetition_penalty"],
        eos=req.eos or (DIFFUSION["eos"] if rainbow else EOS_PADDED), seed=req.seed)


def effective(config: SampleConfig) -> dict:
    """The settings a reply was made with (after defaults and clamping)."""
    keep = ("length", "steps", "block_length", "rule", "threshold", "temperature", "top_p",
            "remask", "cfg_scale", "eos", "seed")
    return {k: v for k, v in asdict(config).items() if k in keep}


def batch_key(config: SampleConfig) -> tuple | None:
    """Requests with equal keys can share a batch; a seeded one never does (its sample
    must not depend on who else was in the batch)."""
    if config.seed is not None:
        return None
    return tuple(sorted(effective(config).items()))


def check_prompt_tokens(n_tokens: int, limits: ServeConfig, param: str) -> None:
    if n_tokens > limits.max_prompt_tokens:
        raise RequestError(400, param, f"the prompt is {n_tokens} tokens, over this server's "
                         f"limit max_prompt_tokens={limits.max_prompt_tokens}")
