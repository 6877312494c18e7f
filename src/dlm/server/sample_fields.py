"""The diffusion request fields, made from `SampleConfig`'s fields, types and attribute
docstrings (as the CLI's flags are, `dlm.cli.fields`): a new sampling setting is its field
in `dlm.config` and its name in SERVED or NOT_SERVED here.

Every field is optional: left out (None) means the default every door starts from
(`lm.decoding()`, `dlm.defaults`), which the OpenAPI schema shows (`app.py`).
pydantic checks only a value's JSON type; its range is checked by SampleConfig itself
when the server builds the sampler's config, and refused with a 422 naming the field.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

from pydantic import Field

from dlm.config import SampleConfig
from dlm.util.field_docs import field_docs

SERVED = ("steps", "block_length", "rule", "threshold", "temperature", "top_k", "top_p",
          "remask", "eos", "cfg_scale", "predictor", "decode", "draft_length", "draft_steps",
          "adaptive_draft", "max_draft_length", "draft_window", "seed")
"""The SampleConfig fields a request may set. temperature, top_p and seed are OpenAI
fields as well, with the same names and meanings."""

REQUEST_NAMES = {"rule": "commit_rule"}
"""SampleConfig field -> its request name, where clients already send another name."""

NOT_SERVED = {
    "length": "send max_tokens (OpenAI's name): the reply canvas, fixed (not sent: the "
              "model's, the default of every door, dlm.defaults)",
    "length_margin": "it applies to length auto, which the server does not use",
    "length_sample": "it applies to length auto, which the server does not use",
    "trim_eos": "a reply ends at its first eos; the canvas after it is no part of it",
    "cache": "it is approximate at a cost measured per model (`dlm sweep`), a trade for "
             "whoever runs the server rather than a client",
    "repetition_penalty": "the measured default (dlm.defaults) applies; a penalty near 0 "
                          "overflows the logits",
    "no_repeat_ngram": "it is for left-to-right (AR) decoding; diffusion refuses it",
}
"""The SampleConfig fields no request sets, and why (a request naming one is told why)."""


def request_name(field: str) -> str:
    """The request field that sets SampleConfig's `field`."""
    return REQUEST_NAMES.get(field, field)


def why_not_served(name: str) -> str | None:
    """Why a request may not send `name`, when it is a SampleConfig field's name."""
    if name in NOT_SERVED:
        return NOT_SERVED[name]
    if name in REQUEST_NAMES:
        return f"send it as {REQUEST_NAMES[name]}"
    return None


def request_fields() -> dict[str, Any]:
    """The served fields for `pydantic.create_model`: name -> (type | None, Field), the
    description being the field's docstring."""
    hints, docs = typing.get_type_hints(SampleConfig), field_docs(SampleConfig)
    return {request_name(f): (hints[f] | None, Field(None, description=docs[f]))
            for f in SERVED}


def given_settings(request: Any) -> dict[str, Any]:
    """The SampleConfig fields (by SampleConfig's names) a request set."""
    given = {f: getattr(request, request_name(f)) for f in SERVED}
    return {f: value for f, value in given.items() if value is not None}


def undecided() -> list[str]:
    """SampleConfig fields neither served nor listed as not served (a test keeps it empty)."""
    return [f.name for f in fields(SampleConfig) if f.name not in (*SERVED, *NOT_SERVED)]
