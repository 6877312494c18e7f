"""The server's promises under hostile input and faults: limits checked before any model
call, patterns that cannot stall, `stop` and the refused OpenAI fields, one failure that
cannot fail its neighbours, and SIGTERM mid-request."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dlm.config import ServeConfig
from dlm.server import create_app
from dlm.server.stream import StopCutter, cut_at_stop
from tests.server_util import live_server, sse_payloads, tiny_lm

openai = pytest.importorskip("openai", reason="the openai client is a test dependency")
HELLO = [{"role": "user", "content": "hello"}]


def counting(lm):
    """`lm` whose model counts its forward passes in `lm.forwards`."""
    lm.forwards = 0
    real = lm.model.forward

    def forward(*args, **kwargs):
        lm.forwards += 1
        return real(*args, **kwargs)

    lm.model.forward = forward
    return lm


LONG = "how are you doing today " * 12  # about 60 tokens
REFUSED = [  # (route, body, limits, the param named)
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}]}, {},
     "messages"),
    ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 65}, {}, "max_tokens"),
    ("/v1/chat/completions", {"messages": HELLO, "n": 5}, {}, "n"),
    ("/v1/chat/completions", {"messages": HELLO, "steps": 65}, {}, "steps"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "  "}]}, {},
     "messages"),
    ("/v1/chat/completions", {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, {},
     "stop"),
    ("/v1/chat/completions", {"messages": HELLO, "logprobs": True}, {}, "logprobs"),
    ("/v1/completions", {"prompt": ["a", "b", "c"], "n": 2}, {}, "n"),
    ("/v1/completions", {"prompt": LONG}, {}, "prompt"),
    ("/v1/denoise", {"template": "a [MASK*65] b"}, {}, "template"),
    ("/v1/denoise", {"template": "a [MASK*60] b " + "word " * 30}, {"max_prompt_tokens": 100},
     "template"),  # within both limits, over the model's context of 128
    ("/v1/denoise", {"template": "a [MASK*9999999999] b"}, {}, "template"),
    ("/v1/denoise", {"text": "hello there", "span": "h" * 300}, {}, "span"),
    ("/v1/denoise", {"text": LONG[:60], "span": "0:60", "max_tokens": 8}, {"max_tokens": 8},
     "span"),
    ("/v1/denoise", {"messages": HELLO, "n": 2}, {}, "n"),
    ("/v1/denoise", {"messages": HELLO, "max_tokens": 65}, {}, "max_tokens"),
]


@pytest.mark.parametrize("route,body,limits,param", REFUSED,
                         ids=[f"{r.split('/')[-1]}-{p}-{i}" for i, (r, _, _, p)
                              in enumerate(REFUSED)])
def test_a_refused_request_costs_no_forward_pass(tok, route, body, limits, param):
    lm = counting(tiny_lm(tok))
    config = ServeConfig(**{**dict(max_tokens=64, max_steps=64, max_n=4,
                                   max_prompt_tokens=40), **limits})
    with TestClient(create_app(lm, config)) as client:
        r = client.post(route, json=body)
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["param"] == param, r.json()
        assert lm.forwards == 0
        ok = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4,
                                                       "steps": 2})
        assert ok.status_code == 200 and lm.forwards > 0  # the counter does count


@pytest.mark.parametrize("route,content,status", [
    ("/v1/chat/completions", b"x" * 70_000, 413),  # over max_request_bytes
    ("/v1/chat/completions", b"[" * 40 + b"]" * 40, 400),  # over max_json_depth
    ("/v1/denoise", b'{"messages": ' + b"[" * 30 + b"]" * 30 + b"}", 400),
])
def test_body_size_and_depth_are_refused_before_parsing(tok, route, content, status):
    lm = counting(tiny_lm(tok))
    with TestClient(create_app(lm, ServeConfig(api_key="k"))) as client:
        r = client.post(route, content=content, headers={"Authorization": "Bearer k"})
        assert r.status_code == status and r.json()["error"]["param"] == "body", r.text
        unkeyed = client.post(route, content=content)  # no key: refused before the body
        assert unkeyed.status_code == 401
        assert unkeyed.json()["error"]["param"] == "authorization"
    assert lm.forwards == 0


def test_a_backtracking_pattern_returns_at_once(tok):
    """`(a+)+$` on a's and one other character backtracks for 2^n steps in Python's re
    (over 20 s at 30 characters); the server runs patterns in RE2, linear in the text."""
    lm = counting(tiny_lm(tok))
    with TestClient(create_app(lm)) as client:
        for n in (30, 40, 100):
            start = time.perf_counter()
            r = client.post("/v1/denoise", json={"text": "a" * n + "!", "span": "(a+)+$"})
            took = time.perf_counter() - start
            assert r.status_code == 400 and r.json()["error"]["param"] == "span", r.text
            assert "matches nothing" in r.json()["error"]["message"]
            assert took < 1.0, took
        backref = client.post("/v1/denoise", json={"text": "aa bb", "span": r"(a)\1"})
        assert backref.status_code == 400 and "RE2" in backref.json()["error"]["message"]
        assert lm.forwards == 0
        ok = client.post("/v1/denoise", json={"text": "hello there", "span": "th[a-z]+",
                                              "steps": 2})
        assert ok.status_code == 200
        done = [e for e in sse_payloads(ok.text) if isinstance(e, dict)
                and e.get("type") == "done"]
        assert done and done[0]["before"] == "hello there"


@settings(max_examples=200, deadline=None)
@given(text=st.text("ab .", max_size=40), stops=st.lists(st.text("ab .", min_size=1,
                                                                 max_size=4), max_size=4),
       cuts=st.lists(st.integers(0, 40), max_size=6))
# a longer stop string that begins before a shorter one already there, still to complete
@example(text="a.b", stops=["a.b", "."], cuts=[2])
@example(text="a.", stops=["a.b", "."], cuts=[2])
def test_a_stream_cut_at_stop_equals_the_whole_text_cut_at_stop(text, stops, cuts):
    pieces, at = [], 0
    for c in sorted(cuts):
        pieces.append(text[at:c])
        at = max(at, c)
    pieces.append(text[at:])
    cutter = StopCutter(stops)
    streamed = "".join(cutter.feed(p) for p in pieces) + cutter.flush()
    whole, stopped = cut_at_stop(text, stops)
    assert streamed == whole and cutter.stopped == stopped


@pytest.fixture
def server(tok):
    with live_server(tiny_lm(tok), ServeConfig(api_key="k")) as (url, app):
        yield url, app


def test_stop_cuts_the_reply_in_both_forms_and_sets_finish_reason(server):
    url, _ = server
    c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    settings_ = dict(model="dlm", messages=HELLO, max_tokens=16,
                     extra_body={"steps": 8, "seed": 3, "eos": "ban"})
    whole = c.chat.completions.create(**settings_).choices[0].message.content
    assert len(whole) >= 4
    stop = whole[len(whole) // 2: len(whole) // 2 + 2]
    expected = whole[: whole.find(stop)]
    cut = c.chat.completions.create(**settings_, stop=[stop, "never there"]).choices[0]
    assert cut.message.content == expected and cut.finish_reason == "stop"
    chunks = list(c.chat.completions.create(**settings_, stop=stop, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = c.completions.create(model="dlm", prompt="hello", max_tokens=16, stop=stop,
                                extra_body={"steps": 8, "seed": 3, "eos": "ban"})
    assert stop not in text.choices[0].text


@pytest.mark.parametrize("field,value", [
    ("logprobs", True), ("top_logprobs", 3), ("tools", [{"type": "function", "function":
                                                       {"name": "f"}}]),
    ("response_format", {"type": "json_object"}), ("logit_bias", {"5": 10}),
    ("presence_penalty", 0.5), ("frequency_penalty", 1.0), ("tool_choice", "auto"),
    ("made_up_field", 1),
])
def test_a_field_that_would_change_the_reply_and_is_not_implemented_is_a_400(server, field,
                                                                           value):
    url, _ = server
    c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="dlm", messages=HELLO, max_tokens=4,
                                  extra_body={field: value, "steps": 2})
    assert caught.value.body["param"] == field and field in caught.value.body["message"]


def test_metadata_and_harmless_values_are_accepted(server):
    url, _ = server
    c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    reply = c.chat.completions.create(
        model="dlm", messages=HELLO, max_completion_tokens=6, user="someone",
        metadata={"run": "1"}, presence_penalty=0, frequency_penalty=0, logprobs=False,
        response_format={"type": "text"}, extra_body={"steps": 3})
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 6


def test_one_failing_request_does_not_fail_its_batch_neighbours(tok):
    """A fault injected mid-batch (after two denoising steps) for one request: its
    neighbours in the batch finish, it alone gets an error, the worker keeps serving."""
    lm = tiny_lm(tok)
    real = lm.reply_ids

    def faulty(histories, config, on_step):
        poisoned = any(m["content"] == "poison" for h in histories for m in h)

        def step(s):
            if poisoned and s.step_index >= 2:
                raise RuntimeError("injected fault")
            on_step(s)
        return real(histories, config, step)

    lm.reply_ids = faulty
    config = ServeConfig(max_batch=8, max_wait_ms=300)
    with live_server(lm, config) as (url, app):
        results = {}

        def ask(name, content, stream):
            body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8,
                    "steps": 6, "stream": stream}
            r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            results[name] = (r.status_code, r.text)

        threads = [threading.Thread(target=ask, args=a) for a in
                   [("good-stream", "hello", True), ("poison", "poison", True),
                    ("good", "how are you", False), ("poison-plain", "poison", False)]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert app.state.batcher.stats["largest_batch"] >= 2  # they did share a batch
        assert app.state.batcher.stats["isolated_failures"] >= 1
        status, text = results["good-stream"]
        events = sse_payloads(text)
        assert status == 200 and events[-1] == "[DONE]"
        assert not any(isinstance(e, dict) and "error" in e for e in events)
        assert any(isinstance(e, dict) and e.get("choices") and
                   e["choices"][0]["finish_reason"] for e in events)
        assert results["good"][0] == 200
        assert json.loads(results["good"][1])["choices"][0]["finish_reason"]
        poison = sse_payloads(results["poison"][1])
        assert any(isinstance(e, dict) and "error" in e for e in poison)
        status, text = results["poison-plain"]
        assert status == 500 and json.loads(text)["error"]["type"] == "server_error"
        again = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
            "messages": HELLO, "max_tokens": 4, "steps": 2})
        assert again.status_code == 200 and app.state.batcher.thread.is_alive()


def test_sigterm_stops_the_server_mid_request_within_its_timeout(tok, tmp_path):
    """A real `dlm serve` process, a long streaming request under way, SIGTERM: the
    process exits within --shutdown-timeout-s plus a margin, not when the request ends."""
    import torch

    from dlm.bench.serving import start_server
    from dlm.model import Transformer
    from dlm.pipeline import DiffusionLM
    from dlm.server.load import free_port
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    config = tiny_config(tok.vocab_size)
    config.max_seq_len, config.d_model, config.n_layers, config.d_ff = 1100, 64, 2, 128
    DiffusionLM(Transformer(config).eval(), tok, max_prompt_len=16,
                default_length=12).save_pretrained(tmp_path / "ckpt")
    port = free_port()
    proc = start_server(tmp_path / "ckpt", port, 4, 8, "cpu", "--shutdown-timeout-s", "1",
                        "--max-tokens", "1000", "--max-steps", "1000")
    try:
        events = []

        def long_request():
            body = {"messages": HELLO, "max_tokens": 1000, "steps": 1000, "stream": True}
            try:
                with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/denoise", json=body,
                                  timeout=120) as r:
                    for line in r.iter_lines():
                        events.append(line)
            except httpx.HTTPError:
                events.append("cut")

        client = threading.Thread(target=long_request)
        client.start()
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(events) >= 3, "the request did not start"
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - start
        client.join(timeout=10)
        assert took < 1 + 5, took
        assert not any('"type": "done"' in e for e in events)  # it was mid-request
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_app_served_twice_keeps_serving_until_its_last_server_stops(tok):
    """Two servers on one app (a test client beside a schema loader, a reload): the first
    to stop must not stop the batcher under the other, whose requests then waited for
    a worker that had ended (a hang the fuzz suite met when garbage collection closed
    schemathesis' client mid-run). A request to a stopped batcher is a 503, never a wait."""
    from dlm.server.batcher import Stopping

    app = create_app(tiny_lm(tok), ServeConfig())
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "steps": 4}
    with TestClient(app) as first:
        with TestClient(app) as second:
            assert second.post("/v1/chat/completions", json=body).status_code == 200
        assert first.post("/v1/chat/completions", json=body).status_code == 200
        assert not app.state.batcher.closed
    assert app.state.batcher.closed
    with pytest.raises(Stopping):
        app.state.batcher.submit(object())
