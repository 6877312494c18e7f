"""Request bodies of the HTTP API, validated by pydantic.

The OpenAI fields keep their OpenAI names and meanings; the diffusion settings are extra
body fields (`extra_body=` in the official client). Domain errors (a negative step count,
an unknown commit rule) are 422s naming the field; the server's own limits are checked
in `limits.py`, so one place says what this server allows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dlm.sampling.rules import RULES

CommitRule = Literal[tuple(RULES)]  # type: ignore[valid-type]


class StreamOptions(BaseModel):
    include_usage: bool = False
    """Send a last chunk with no choices and the token counts (as OpenAI does)."""


class DiffusionSettings(BaseModel):
    """How the reply is denoised; every field optional (the server's defaults apply)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    steps: int | None = Field(None, ge=1, description="Denoising steps (model calls).")
    block_length: int | None = Field(None, ge=0, description="Semi-autoregressive blocks "
                                     "(0: the whole reply at once).")
    commit_rule: CommitRule | None = Field(None, description="Which masks to commit.")
    threshold: float | None = Field(None, gt=0, le=1, description="threshold rule: commit "
                                    "tokens at least this sure.")
    cfg_scale: float | None = Field(None, ge=0, description="Classifier-free guidance.")
    remask: float | None = Field(None, ge=0, lt=1, description="ReMDM revision share.")
    seed: int | None = Field(None, description="Seed for a reproducible reply.")
    eos: Literal["allow", "defer", "ban"] | None = Field(
        None, description="defer (the default: words settle before eos); allow; ban "
        "(exactly max_tokens).")
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, description="Reply canvas length.")
    n: int = Field(1, ge=1, description="Replies per request.")
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


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
