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
from dlm.errors import ConfigError
from dlm.server.sample_fields import SERVED, given_settings, request_name
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


def sample_config(req: DiffusionSettings, limits: ServeConfig, lm) -> SampleConfig:
    """The sampler settings for a request to `lm`: the fields it set over the defaults
    every door starts from (`lm.decoding()`, `dlm.defaults`: the canvas too, for
    `max_tokens` not sent), within the limits. A value SampleConfig refuses is a 422
    naming its request field, as is speculative decoding on a server without a
    verifier."""
    check_count(req.n, limits.max_n, "n", "max_n")
    given = given_settings(req)
    if given.get("decode") == "speculative" and lm.verifier is None:
        raise RequestError(422, "decode", "decode: this server has no verifier for "
                           "speculative decoding (started without --verifier AR_CKPT)",
                           "invalid_value")
    try:
        settings = asdict(lm.decoding(**given, length=req.max_tokens))
        length = settings["length"]
        check_count(length, limits.max_tokens, "max_tokens", "max_tokens")
        check_count(settings["steps"], limits.max_steps, "steps", "max_steps")
        # Clamped (and reported back by `effective`): a step must commit a token, except
        # under the threshold rule, whose steps are an upper bound; a block as long as the
        # reply is no block; guidance beyond the server's limit.
        if settings["rule"] != "threshold":
            settings["steps"] = min(settings["steps"], length)
        block = min(settings["block_length"], length)
        settings["block_length"] = 0 if block == length else block
        settings["cfg_scale"] = min(settings["cfg_scale"], limits.max_cfg_scale)
        return SampleConfig(**settings)
    except ConfigError as exc:
        name = request_name(exc.field) if exc.field else "body"
        raise RequestError(422, name, f"{name}: {exc}", "invalid_value") from None


def served_defaults(lm, limits: ServeConfig) -> dict:
    """What a request that sets nothing gets, by request field name (`max_tokens` for the
    canvas): `lm.decoding()` within this server's limits. GET /defaults answers it (the
    page starts from it) and the OpenAPI schema shows it as each field's default."""
    resolved = effective(sample_config(DiffusionSettings(), limits, lm))
    return {("max_tokens" if k == "length" else request_name(k)): v
            for k, v in resolved.items()}


def effective(config: SampleConfig) -> dict:
    """The settings a reply was made with (after defaults and clamping): its length and
    every field a request may set."""
    return {k: v for k, v in asdict(config).items() if k == "length" or k in SERVED}


def batch_key(config: SampleConfig) -> tuple | None:
    """Requests with equal keys (every SampleConfig field equal) can share a batch; a
    seeded one never does (its sample must not depend on who else was in the batch)."""
    if config.seed is not None:
        return None
    return tuple(sorted(asdict(config).items()))


def check_prompt_tokens(n_tokens: int, limits: ServeConfig, param: str) -> None:
    if n_tokens > limits.max_prompt_tokens:
        raise RequestError(400, param, f"the prompt is {n_tokens} tokens, over this server's "
                         f"limit max_prompt_tokens={limits.max_prompt_tokens}")
