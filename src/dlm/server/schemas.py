"""Request bodies of the HTTP API, validated by pydantic.

The OpenAI fields keep their OpenAI names and meanings; the diffusion settings are extra
body fields (`extra_body=` in the official client), made from SampleConfig's fields and
docstrings (`sample_fields.py`). Domain errors (a negative step count, an unknown commit
rule) are 422s naming the field, checked by SampleConfig; the server's own limits are
checked in `limits.py`, so one place says what this server allows.

No field is dropped without a word: an unknown field is refused (400, `param` names it),
a SampleConfig field the server does not serve is refused with the reason, and an OpenAI
field this server does not implement is accepted only at the value that changes nothing
(`logprobs: false`, `presence_penalty: 0`, `tools: []`, ...); any other value is a 400
naming it. Metadata that changes no reply (`user`, `metadata`, `store`) is accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from dlm.server.sample_fields import request_fields, why_not_served
from dlm.util.wellformed import first_invalid


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    include_usage: bool = False
    """Send a last chunk with no choices and the token counts (as OpenAI does)."""


# OpenAI fields that would change the reply and are not implemented: the value at which
# each changes nothing. A request may send that value (clients often do); any other is
# refused rather than ignored.
NOT_IMPLEMENTED: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []),
    "function_call": (None, "none"), "parallel_tool_calls": (None, True, False),
    "response_format": (None, {"type": "text"}), "modalities": (None, ["text"]),
    "audio": (None,), "prediction": (None,), "reasoning_effort": (None,),
    "web_search_options": (None,), "echo": (None, False), "suffix": (None, ""),
    "best_of": (None, 1),
}
MAX_STOP = 4  # as OpenAI


class OpenAISettings(BaseModel):
    """The OpenAI fields every generating route takes (the diffusion settings are added to
    them in DiffusionSettings). Other fields are kept only to be checked, then refused."""

    model_config = ConfigDict(extra="allow")

    max_tokens: int | None = Field(None, ge=1, description="Reply canvas length.")
    n: int = Field(1, ge=1, description="Replies per request.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings: the reply "
                                         "ends before the first of them (finish_reason stop).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted and unused (OpenAI metadata).")
    metadata: dict[str, str] | None = Field(None, description="Accepted and unused.")
    store: bool | None = Field(None, description="Accepted; nothing is stored.")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer "
                                              "name for max_tokens.")

    @model_validator(mode="before")
    @classmethod
    def refuse_text_that_is_not_unicode(cls, data: Any) -> Any:
        """Every string of the body, field names included, must be well-formed Unicode:
        JSON can escape an unpaired surrogate (`"\\ud800"`), which no UTF-8 text holds."""
        if (found := first_invalid(data)) is not None:
            raise PydanticCustomError("invalid_text", "{field}: {problem}",
                                      {"field": found[0], "problem": found[1]})
        return data

    @model_validator(mode="after")
    def refuse_what_is_not_implemented(self):
        for name, value in (self.model_extra or {}).items():
            if (reason := why_not_served(name)) is not None:
                raise PydanticCustomError("not_served", "{field} is not a field this server "
                                          "takes: {reason}", {"field": name, "reason": reason})
            if name not in NOT_IMPLEMENTED:
                raise PydanticCustomError("extra_forbidden", "{field} is not a field this "
                                          "server takes", {"field": name})
            harmless = NOT_IMPLEMENTED[name]
            if not any(value is h or (type(value) is type(h) and value == h) for h in harmless):
                raise PydanticCustomError(
                    "not_implemented", "{field} is not implemented by this server; leave it "
                    "out (accepted only as {harmless})",
                    {"field": name, "harmless": " or ".join(map(repr, harmless))})
        if self.max_completion_tokens is not None:
            if self.max_tokens not in (None, self.max_completion_tokens):
                raise PydanticCustomError("conflict", "max_completion_tokens and max_tokens "
                                          "disagree; send one", {"field": "max_tokens"})
            self.max_tokens = self.max_completion_tokens
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise PydanticCustomError("stop_too_many", "stop: at most {n} strings",
                                      {"field": "stop", "n": MAX_STOP})
        if self.stop is not None and any(s == "" for s in self.stops):
            raise PydanticCustomError("stop_empty", "stop: an empty string would end every "
                                      "reply at once", {"field": "stop"})
        return self

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


DiffusionSettings = create_model(
    "DiffusionSettings", __base__=OpenAISettings, **request_fields(),
    __doc__="How the reply is denoised; every field optional (the server's defaults apply).")


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(DiffusionSettings):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(DiffusionSettings):
    model: str | None = None
    prompt: str | list[str]


class DenoiseRequest(DiffusionSettings):
    """One request whose every step is streamed: a chat reply, an infill or an edit.

    Exactly one of `messages` (a reply), `template` (text with `[MASK]`, `[MASK*n]`
    markers to fill) or `text` with `span` (a regex or A:B range to rewrite)."""

    messages: list[ChatMessage] | None = None
    template: str | None = None
    text: str | None = None
    span: str | None = None
    prompt: str | None = Field(None, description="infill/edit: an instruction to condition on.")
