"""The HTTP API under generated input: schemathesis from the app's own OpenAPI schema
(valid and invalid bodies for every route, with and without the key), and hypothesis
for the bodies a schema cannot describe (bytes that are not JSON, deep nesting).

Properties, for every request: no 5xx; every 4xx is the OpenAI error shape with `param`
naming the field; each answer within `SLOWEST_S`; the server healthy afterwards.
`--fuzz-examples N` sets the budget (CI: 20 per route and mode), `--fuzz-report FILE`
writes the counts.
"""

from __future__ import annotations

import collections
import json
import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from dlm.config import ServeConfig
from dlm.server import create_app
from dlm.tokenizer import DLMTokenizer
from tests.conftest import PAIRS
from tests.server_util import tiny_lm
from tests.strategies import door_text, is_unicode

KEY = "fuzz-key"
SLOWEST_S = 10.0
LIMITS = dict(api_key=KEY, max_tokens=32, max_steps=32, max_n=2, max_prompt_tokens=64,
              max_request_bytes=16_384, max_queue=8)
SEEN: collections.Counter = collections.Counter()  # (route, status) -> requests
TEXT_SEEN: collections.Counter = collections.Counter()  # (route, valid text?, status) -> n
SLOWEST: dict[str, float] = {}


def make_app():
    tok = DLMTokenizer.train([t for pair in PAIRS for t in pair] * 5, vocab_size=300)
    return create_app(tiny_lm(tok), ServeConfig(**LIMITS))


APP = make_app()
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def check(route: str, response, seconds: float) -> None:
    SEEN[(route, response.status_code)] += 1
    SLOWEST[route] = max(SLOWEST.get(route, 0.0), seconds)
    assert response.status_code < 500, (route, response.status_code, response.text[:500])
    assert seconds < SLOWEST_S, (route, seconds)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert err["message"] and err["param"], err


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_request_gets_a_5xx_or_a_shapeless_error(operation, mode, with_key, request):
    budget = request.config.getoption("--fuzz-examples")
    headers = {"Authorization": f"Bearer {KEY}"} if with_key else {}

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=budget, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        start = time.perf_counter()
        response = case.call(headers=headers)
        check(operation.label, response, time.perf_counter() - start)
        if not with_key and operation.path.startswith("/v1"):
            assert response.status_code == 401, response.text

    try:
        run()
    except Unsatisfiable:  # a route with no parameters has no invalid input to generate
        assert mode == GenerationMode.NEGATIVE and operation.method.upper() == "GET"


def json_values(depth: int = 3):
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | door_text(20)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(door_text(12), inner, max_size=4),
                        max_leaves=12)


ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/denoise"]


@pytest.fixture(scope="module")
def client():
    with TestClient(APP) as c:
        yield c


@pytest.mark.parametrize("route", ROUTES)
def test_bodies_a_schema_cannot_describe(client, route, request):
    """Random bytes, JSON of any shape, deep nesting, huge numbers, other content types."""
    headers = {"Authorization": f"Bearer {KEY}"}
    bodies = (st.binary(max_size=200)
              | json_values().map(lambda v: json.dumps(v).encode())
              | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)
              | st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
              | st.integers(300, 5000).map(lambda n: b'{"messages": [{"role": "user", '
                                           b'"content": "hi"}], "max_tokens": 1' + b"0" * n
                                           + b"}")
              | st.text(max_size=100).map(lambda t: t.encode("utf-16"))
              # a request's text with an unpaired surrogate as a JSON escape, and as the
              # bytes that would encode it (ED A0 80: not UTF-8, so not JSON)
              | door_text(40).map(lambda t: json.dumps(
                  {"messages": [{"role": "user", "content": t}], "prompt": t,
                   "template": t, "max_tokens": 4}).encode())
              | door_text(40).map(lambda t: json.dumps({"prompt": t}, ensure_ascii=False)
                                  .encode("utf-8", "surrogatepass")))
    kinds = st.sampled_from(["application/json", "text/plain", "application/x-www-form-"
                             "urlencoded", "multipart/form-data"])

    @given(body=bodies, kind=kinds)
    @settings(max_examples=request.config.getoption("--fuzz-examples") * 4, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    def run(body, kind):
        start = time.perf_counter()
        response = client.post(route, content=body, headers={**headers, "content-type": kind})
        check(f"POST {route} (raw)", response, time.perf_counter() - start)
        assert response.status_code < 500

    run()


def text_fields(route: str) -> list[tuple]:
    """Every place a string goes in the route's request body, from the app's own OpenAPI
    schema (so a text field added later is fuzzed too): a path of keys and indices;
    `None` as the last key stands for a dict key (`metadata`'s)."""
    schema = APP.openapi()
    components = schema["components"]["schemas"]
    ref = schema["paths"][route]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["$ref"]
    paths: list[tuple] = []

    def walk(spec: dict, path: tuple) -> None:
        if "$ref" in spec:
            return walk(components[spec["$ref"].rsplit("/", 1)[1]], path)
        for option in spec.get("anyOf", [spec]):
            kind = option.get("type")
            if kind == "string":
                paths.append(path)
            elif kind == "array":
                walk(option.get("items", {}), (*path, 0))
            elif kind == "object" and "properties" in option:
                for name, sub in option["properties"].items():
                    walk(sub, (*path, name))
            elif kind == "object" and option.get("additionalProperties"):
                paths.extend([(*path, "k"), (*path, None)])
            elif "$ref" in option:
                walk(option, path)

    walk({"$ref": ref}, ())
    return sorted(set(paths), key=str)


def base_body(route: str, field: tuple) -> dict:
    """A request the route answers 200, of the shape that `field` belongs to."""
    body: dict = {"max_tokens": 4, "steps": 4}
    if route.endswith("/completions") and "chat" not in route:
        return {**body, "prompt": "hello"}
    if field[:1] == ("template",):
        return {**body, "template": "a [MASK] day"}
    if field[:1] in (("text",), ("span",), ("prompt",)) and route.endswith("/denoise"):
        return {**body, "text": "I am happy today", "span": "happy"}
    return {**body, "messages": [{"role": "user", "content": "hello"}]}


def with_text(body: dict, field: tuple, text: str) -> tuple[dict, str]:
    """`body` with `text` put at `field`, and the field's name as dlm's errors write it
    (`messages[0].content`, `stop[0]`, `metadata.k`)."""
    body = json.loads(json.dumps(body))
    head, *rest = field
    if not rest:
        body[head] = text
        return body, head
    if rest == [0]:
        body[head] = [text]
        return body, f"{head}[0]"
    if head == "messages":
        body["messages"][0][rest[1]] = text
        return body, f"messages[0].{rest[1]}"
    body[head] = {"k": text} if rest == ["k"] else {text: "v"}  # a value, or a key
    return body, f"{head}.k"


@pytest.mark.parametrize("route", ROUTES)
def test_every_text_field_refuses_text_that_is_not_unicode(client, route, request, caplog):
    """Each text field of the route's schema, messages' content and names included, given
    door text (about half holding an unpaired surrogate, as a JSON escape): invalid text
    is a 400 naming the field, valid text is never a 5xx, and every answer, streamed or
    not, is UTF-8."""
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    fields = text_fields(route)
    assert ("stop",) in fields and ("user",) in fields and len(fields) >= 8, fields

    @given(field=st.sampled_from(fields), text=door_text(30), stream=st.booleans())
    @settings(max_examples=request.config.getoption("--fuzz-examples") * 5, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    def run(field, text, stream):
        body, name = with_text(base_body(route, field), field, text)
        body["stream"] = stream
        start = time.perf_counter()
        response = client.post(route, content=json.dumps(body).encode(), headers=headers)
        check(f"POST {route} (text)", response, time.perf_counter() - start)
        TEXT_SEEN[(route, is_unicode(text), response.status_code)] += 1
        response.content.decode("utf-8")  # strict: the answer is UTF-8 text
        if not is_unicode(text):
            err = response.json()["error"]
            assert response.status_code == 400 and err["code"] == "invalid_text", err
            if field[-1] is not None:  # a key's name is written with escapes
                assert err["param"] == name, (err, name)

    with caplog.at_level("WARNING"):
        run()
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"], \
        caplog.text[:2000]  # no traceback in the log either


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"),
                    max_size=30),
       prefix=st.sampled_from(["/", "/v1/", "/static/", "/v1/chat/"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       with_key=st.booleans())
def test_any_path_and_method_outside_the_schema(client, path, prefix, method, with_key):
    """Routes the schema leaves out (the page, static files, unknown paths, methods)."""
    headers = {"Authorization": f"Bearer {KEY}"} if with_key else {}
    start = time.perf_counter()
    response = client.request(method, prefix + path, headers=headers)
    if response.headers.get("content-type", "").startswith("application/json"):
        check(f"{method} (any path)", response, time.perf_counter() - start)
    else:  # the page and static files answer HTML, CSS or JS
        SEEN[(f"{method} (any path)", response.status_code)] += 1
        assert response.status_code < 500


def test_over_the_body_limit_and_deep_nesting_are_refused_before_parsing(client):
    headers = {"Authorization": f"Bearer {KEY}"}
    big = client.post("/v1/chat/completions", content=b" " * 20_000, headers=headers)
    assert big.status_code == 413 and big.json()["error"]["param"] == "body"
    deep = client.post("/v1/chat/completions", content=b"[" * 100_000 + b"]" * 100_000,
                       headers=headers)
    # over the byte limit first; a deep body within it is refused for its depth
    assert deep.status_code == 413
    nested = client.post("/v1/chat/completions", content=b"[" * 5000 + b"]" * 5000,
                         headers=headers)
    assert nested.status_code == 400, nested.text
    assert nested.json()["error"]["code"] == "too_deep"


def test_the_server_is_healthy_after_the_fuzzing_and_counts_every_route(client, request):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["load"] == 0  # nothing left waiting or running
    ok = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"messages": [{"role": "user", "content": "hello"}],
                           "max_tokens": 8, "steps": 4})
    assert ok.status_code == 200, ok.text
    routes = {route for route, _ in SEEN}
    if routes:  # the fuzz tests ran in this session (not deselected)
        assert {op.label for op in OPERATIONS} <= routes
        assert not [k for k in SEEN if k[1] >= 500]
    out = request.config.getoption("--fuzz-report")
    if out:
        per_route = collections.defaultdict(dict)
        for (route, status), n in sorted(SEEN.items()):
            per_route[route][str(status)] = n
        report = {"examples_per_route_and_mode": request.config.getoption("--fuzz-examples"),
                  "requests": sum(SEEN.values()),
                  "per_route": {r: {"requests": sum(c.values()), "by_status": c,
                                    "slowest_s": round(SLOWEST[r], 4)}
                                for r, c in per_route.items()},
                  "5xx": sum(n for (_, s), n in SEEN.items() if s >= 500),
                  "text_fields": {route: {
                      "requests": sum(n for (r, _, _), n in TEXT_SEEN.items() if r == route),
                      "invalid_text": sum(n for (r, ok, _), n in TEXT_SEEN.items()
                                          if r == route and not ok),
                      "5xx": sum(n for (r, _, st), n in TEXT_SEEN.items()
                                 if r == route and st >= 500)} for route in ROUTES}}
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
