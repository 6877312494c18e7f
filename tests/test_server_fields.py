"""The diffusion request fields are SampleConfig's: each served field is a request field
described by its docstring, reaches the sampler's config, and is checked by SampleConfig
(a 422 naming it); every SampleConfig field is served or listed with the reason it is not."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from fastapi.testclient import TestClient

from dlm import DiffusionLM
from dlm.config import SampleConfig, ServeConfig
from dlm.model import Transformer
from dlm.server import create_app, sample_fields
from dlm.server.sample_fields import NOT_SERVED, REQUEST_NAMES, SERVED, request_name
from dlm.server.schemas import ChatRequest, CompletionRequest, DenoiseRequest
from dlm.util.field_docs import field_docs
from tests.conftest import tiny_config
from tests.server_util import tiny_lm

HELLO = [{"role": "user", "content": "hello"}]
# A value for each served field that is valid, not a default and not clamped at max_tokens=8
SET = dict(steps=3, block_length=4, rule="margin", threshold=0.5, temperature=0.7, top_k=5,
           top_p=0.9, remask=0.1, eos="ban", cfg_scale=1.5, predictor="euler",
           decode="speculative", draft_length=3, draft_steps=2, adaptive_draft=False,
           max_draft_length=8, draft_window=4, seed=7)
REFUSED = dict(steps=-2, block_length=-1, rule="loudest", threshold=0.0, temperature=-0.5,
               top_k=-1, top_p=1.5, remask=1.0, eos="never", cfg_scale=-1.0, predictor="midpoint",
               decode="sideways", draft_length=0, draft_steps=0, adaptive_draft="maybe",
               max_draft_length=0, draft_window=-1, seed=2**64)


@pytest.fixture
def lm(tok):
    lm = tiny_lm(tok)
    torch.manual_seed(1)
    lm.with_verifier(DiffusionLM(Transformer(tiny_config(tok.vocab_size, causal=True)).eval(),
                                 tok, objective="ar"))  # for decode speculative
    lm.configs = []  # the SampleConfig of every reply the sampler was asked for
    real = lm.reply_ids

    def recording(histories, config, on_step=None):
        lm.configs.append(config)
        return real(histories, config, on_step)

    lm.reply_ids = recording
    return lm


@pytest.fixture
def client(lm):
    with TestClient(create_app(lm, ServeConfig(max_tokens=64, max_steps=64))) as c:
        yield c


def test_every_sample_config_field_is_served_or_listed_with_its_reason():
    names = [f.name for f in dataclasses.fields(SampleConfig)]
    assert sample_fields.undecided() == [], "serve these fields or list them in NOT_SERVED"
    assert set(SERVED) <= set(names) and set(NOT_SERVED) <= set(names)
    assert not set(SERVED) & set(NOT_SERVED)
    assert set(REQUEST_NAMES) <= set(SERVED) and all(NOT_SERVED.values())


def test_a_new_sample_config_field_left_undecided_is_caught(monkeypatch):
    @dataclasses.dataclass
    class Grown(SampleConfig):
        new_knob: int = 0
        """A setting someone added."""

    monkeypatch.setattr(sample_fields, "SampleConfig", Grown)
    assert sample_fields.undecided() == ["new_knob"]


@pytest.mark.parametrize("model", [ChatRequest, CompletionRequest, DenoiseRequest])
def test_each_served_field_is_a_request_field_described_by_its_docstring(model):
    docs = field_docs(SampleConfig)
    for name in SERVED:
        field = model.model_fields[request_name(name)]
        assert field.description == docs[name] and field.default is None, name


def test_the_openapi_schema_describes_the_fields_with_their_docstrings(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    properties = schemas["ChatRequest"]["properties"]
    assert properties["commit_rule"]["description"] == field_docs(SampleConfig)["rule"]
    assert properties["max_tokens"]["description"] and properties["seed"]["description"]


def test_the_fields_a_request_sets_reach_the_samplers_config(client, lm):
    assert set(SET) == set(SERVED)
    body = {request_name(k): v for k, v in SET.items()}
    r = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 8, **body})
    assert r.status_code == 200, r.text
    config = lm.configs[-1]
    assert {k: getattr(config, k) for k in SET} == SET and config.length == 8
    assert r.json()["dlm"] == {"length": 8, **SET}  # the reply reports what it was made with


def test_the_pages_denoise_request_reaches_the_samplers_config(client, lm):
    body = {"messages": HELLO, "steps": 4, "max_tokens": 8, "temperature": 0.5,
            "commit_rule": "entropy", "block_length": 4, "stream": True}  # as app.js sends
    r = client.post("/v1/denoise", json=body)
    assert r.status_code == 200 and '"type": "done"' in r.text, r.text
    config = lm.configs[-1]
    assert (config.steps, config.length, config.temperature, config.rule,
            config.block_length) == (4, 8, 0.5, "entropy", 4)


def test_left_out_fields_get_the_servers_defaults(client, lm):
    from dlm.defaults import EOS_PADDED, MEASURED

    assert client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 6}
                       ).status_code == 200
    config = lm.configs[-1]
    assert config.steps == 6  # one step per reply token
    assert {k: getattr(config, k) for k in MEASURED} == MEASURED
    assert config.eos == (SampleConfig.eos if lm.tokenizer.pad_cycle else EOS_PADDED)
    assert config.top_p == SampleConfig.top_p and config.seed is None
    assert config == lm.decoding(length=6)  # every field: the resolver's
    assert client.post("/v1/chat/completions", json={"messages": HELLO}).status_code == 200
    assert lm.configs[-1] == lm.decoding()  # no max_tokens: the resolver's canvas too


@pytest.mark.parametrize("name", SERVED)
def test_a_value_sample_config_refuses_is_a_422_naming_its_request_field(client, lm, name):
    r = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 8,
                                                  request_name(name): REFUSED[name]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == request_name(name) and err["code"] == "invalid_value", err
    assert lm.configs == []  # refused before the sampler was asked


@pytest.mark.parametrize("name,value", [("temperature", "NaN"), ("temperature", "Infinity"),
                                        ("cfg_scale", "NaN"), ("top_p", "NaN")])
def test_nan_and_infinity_are_422s_not_500s(client, name, value):
    """Python's JSON reader takes NaN and Infinity, which pass a check written `x < 0`;
    SampleConfig's checks refuse them (an infinite cfg_scale is clamped, as any over)."""
    body = f'{{"messages": {json.dumps(HELLO)}, "{name}": {value}}}'
    r = client.post("/v1/chat/completions", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["param"] == name, r.text


def test_a_field_not_served_is_refused_with_the_reason(client):
    for name in (*NOT_SERVED, *REQUEST_NAMES):
        r = client.post("/v1/chat/completions", json={"messages": HELLO, name: 1})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == name and err["code"] == "unsupported_parameter", err
        reason = NOT_SERVED.get(name) or REQUEST_NAMES[name]
        assert reason in err["message"], err


@pytest.mark.parametrize("route,body", [("/v1/chat/completions", {"messages": HELLO}),
                                        ("/v1/completions", {"prompt": "hi"}),
                                        ("/v1/denoise", {"messages": HELLO})])
def test_an_unknown_field_is_still_a_400_naming_it(client, route, body):
    r = client.post(route, json={**body, "temprature": 0.5})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "temprature"
    assert "not a field this server takes" in r.json()["error"]["message"]


@pytest.mark.parametrize("route, stream", [("/v1/chat/completions", False),
                                           ("/v1/denoise", True)])
def test_speculative_on_a_server_without_a_verifier_is_a_422(tok, route, stream):
    with TestClient(create_app(tiny_lm(tok), ServeConfig())) as c:
        r = c.post(route, json={"messages": HELLO, "decode": "speculative", "stream": stream})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "decode" and "--verifier" in r.text
