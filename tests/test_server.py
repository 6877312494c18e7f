"""The HTTP API through FastAPI's test client: every route, every error path."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from dlm.config import ServeConfig
from dlm.server import create_app
from tests.server_util import sse_payloads, tiny_lm

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def lm(tok):
    return tiny_lm(tok)


@pytest.fixture
def client(lm):
    with TestClient(create_app(lm, ServeConfig(max_tokens=64, max_steps=64, max_n=4,
                                               max_prompt_tokens=40))) as c:
        yield c


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"messages": HELLO, **body})


def assert_error(response, status: int, param: str | None, words: str):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_chat_completion_has_the_openai_shape_and_reports_its_settings(client, lm):
    r = chat(client, n=2, max_tokens=10, steps=5, seed=1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] in ("stop", "length")
    prompt = len(lm.tokenizer.encode_prompt(HELLO))
    assert body["usage"]["prompt_tokens"] == 2 * prompt
    assert 0 < body["usage"]["completion_tokens"] <= 20
    assert body["dlm"]["steps"] == 5 and body["dlm"]["length"] == 10
    again = chat(client, n=2, max_tokens=10, steps=5, seed=1).json()
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in body["choices"]]


def test_streamed_chat_adds_up_to_the_same_reply(client):
    whole = chat(client, max_tokens=12, steps=6, seed=3).json()["choices"][0]
    r = chat(client, max_tokens=12, steps=6, seed=3, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["message"]["content"]
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[-1] == whole["finish_reason"] and reasons.count(None) == len(reasons) - 1


def test_streaming_sends_finished_blocks_before_the_end(client):
    r = chat(client, max_tokens=16, steps=16, block_length=4, eos="ban", stream=True)
    deltas = [c["choices"][0]["delta"].get("content") for c in sse_payloads(r.text)[1:-1]]
    assert sum(1 for d in deltas if d) >= 2  # text arrived in pieces, not only at the end


def test_text_completions_take_several_prompts(client):
    r = client.post("/v1/completions", json={"prompt": ["hello", "bye"], "n": 2, "steps": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 4
    r = client.post("/v1/completions", json={"prompt": "hello", "steps": 4, "stream": True})
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] is not None


def test_models_and_health(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["objective"] == "diffusion"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["load"] == 0


def test_denoise_streams_every_step_until_no_mask_is_left(client):
    r = client.post("/v1/denoise", json={"messages": HELLO, "steps": 4, "max_tokens": 8,
                                         "eos": "ban"})
    events = sse_payloads(r.text)
    steps = [e for e in events if e != "[DONE]" and e["type"] == "step"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    masks = [s["masks"] for s in steps]
    assert masks[0] == 8 and masks[-1] == 0 and masks == sorted(masks, reverse=True)
    for before, after in zip(steps, steps[1:], strict=False):
        new = [t for t in after["tokens"] if t["new"]]
        assert len(new) == before["masks"] - after["masks"]
        assert all(0 < t["confidence"] <= 1 and t["text"] for t in new)
    done = [e for e in events if e != "[DONE]" and e["type"] == "done"][0]
    assert done["nfe"] == 4 and done["finish_reason"] == "length"


def test_denoise_infills_and_edits_keeping_the_given_text(client):
    r = client.post("/v1/denoise", json={"template": "hello [MASK] are [MASK*2]", "steps": 3})
    done = sse_payloads(r.text)[-2]
    assert done["type"] == "done" and done["text"].startswith("hello ")
    assert " are " in done["text"] and len(done["fills"]) == 2
    r = client.post("/v1/denoise", json={"text": "how are you doing", "span": "are",
                                         "steps": 2})
    done = sse_payloads(r.text)[-2]
    assert done["before"] == "how are you doing"
    assert done["text"].startswith("how") and done["text"].endswith("you doing")


@pytest.mark.parametrize("body, param, words", [
    ({}, "messages", "exactly one of"),
    ({"messages": HELLO, "template": "a [MASK]"}, "messages", "exactly one of"),
    ({"text": "how are you"}, "span", "needs a span"),
    ({"template": "no blanks here"}, "template", "no blank"),
    ({"template": "a [MASK*] b"}, "template", "is not a blank"),
    ({"text": "how are you", "span": "zebra"}, "span", "zebra"),
    ({"messages": HELLO, "n": 2}, "n", "n=1"),
    ({"template": "hello [MASK] " * 30}, "template", "max_prompt_tokens=40"),
])
def test_denoise_refuses_unclear_requests(client, body, param, words):
    r = client.post("/v1/denoise", json={"steps": 2, **body})
    assert r.status_code == 400
    assert_error(r, 400, param, words)


@pytest.mark.parametrize("body, status, param, words", [
    ({"steps": 65}, 400, "steps", "max_steps=64"),
    ({"max_tokens": 65}, 400, "max_tokens", "max_tokens=64"),
    ({"n": 5}, 400, "n", "max_n=4"),
    ({"messages": [{"role": "user", "content": "hello " * 60}]}, 400, "messages",
     "max_prompt_tokens=40"),
    ({"steps": 0}, 422, "steps", "steps must be at least 1"),
    ({"temperature": -1}, 422, "temperature", "temperature must be >= 0"),
    ({"threshold": 1.5}, 422, "threshold", "threshold must be in (0, 1]"),
    ({"commit_rule": "loudest"}, 422, "commit_rule", "low_confidence"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages.0.role", "user"),
    ({"messages": []}, 422, "messages", "at least 1"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages",
     "last message must be from the user"),
])
def test_each_limit_and_bad_field_is_named(client, body, status, param, words):
    assert_error(client.post("/v1/chat/completions", json={"messages": HELLO, **body}),
                 status, param, words)


def test_a_reply_that_would_not_fit_the_models_context_is_refused(lm):
    with TestClient(create_app(lm)) as c:  # limits above the tiny model's 128 positions
        r = c.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 126})
        assert_error(r, 400, "max_tokens", "over the model's context of 128 tokens")
        assert c.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 100,
                                                    "steps": 2}).status_code == 200


def test_settings_beyond_their_range_are_clamped_and_reported(client):
    body = chat(client, max_tokens=8, steps=30, block_length=50, cfg_scale=9.0).json()
    assert body["dlm"]["steps"] == 8  # one token per step at most
    assert body["dlm"]["block_length"] == 0  # a block as long as the reply: no blocks
    assert body["dlm"]["cfg_scale"] == 5.0


def test_a_body_over_the_size_limit_is_refused_declared_or_streamed(lm):
    with TestClient(create_app(lm, ServeConfig(max_request_bytes=200))) as c:
        big = {"messages": [{"role": "user", "content": "x" * 500}]}
        assert_error(c.post("/v1/chat/completions", json=big), 413, "body",
                     "max_request_bytes=200")

        def chunks():
            yield b'{"messages": [{"role": "user", "content": "'
            yield b"x" * 500
            yield b'"}]}'
        r = c.post("/v1/chat/completions", content=chunks(),
                   headers={"content-type": "application/json"})
        assert_error(r, 413, "body", "max_request_bytes=200")


def test_the_api_key_guards_every_api_route_but_not_health(lm, monkeypatch):
    with TestClient(create_app(lm, ServeConfig(api_key="s3cret"))) as c:
        for method, path in (("get", "/v1/models"), ("post", "/v1/chat/completions"),
                             ("post", "/v1/completions"), ("post", "/v1/denoise")):
            r = getattr(c, method)(path)
            assert_error(r, 401, "authorization", "API key")
            assert r.headers["www-authenticate"] == "Bearer"
            r = getattr(c, method)(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
        ok = c.post("/v1/chat/completions", json={"messages": HELLO, "steps": 2},
                    headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200
    monkeypatch.setenv("DLM_API_KEY", "from-env")
    with TestClient(create_app(lm)) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).is_success


def test_cors_is_off_unless_an_origin_is_configured(lm):
    preflight = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(lm)) as c:
        r = c.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(lm, ServeConfig(cors_origins=["http://elsewhere.example"]))) as c:
        r = c.options("/v1/chat/completions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_a_full_queue_answers_503_with_retry_after_instead_of_hanging(lm):
    release = threading.Event()
    real = lm.reply_ids

    def slow(*args, **kwargs):
        release.wait(timeout=30)
        return real(*args, **kwargs)

    lm.reply_ids = slow
    with TestClient(create_app(lm, ServeConfig(max_queue=1))) as c:
        first = threading.Thread(target=lambda: chat(c, steps=2))
        first.start()
        while c.get("/health").json()["load"] < 1:
            pass
        r = chat(c, steps=2)
        assert_error(r, 503, "max_queue", "busy")
        assert r.headers["retry-after"] == "1"
        release.set()
        first.join(timeout=30)
        assert chat(c, steps=2).status_code == 200


def test_concurrent_requests_share_forward_passes_and_get_their_own_replies(lm):
    app = create_app(lm, ServeConfig(max_batch=8, max_wait_ms=200))
    prompts = ["hello", "bye", "hi", "thank you", "good morning", "how are you"]

    async def one(client, prompt):
        r = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": prompt}], "steps": 4, "max_tokens": 8})
        return r.json()["choices"][0]["message"]["content"]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            together = await asyncio.gather(*(one(client, p) for p in prompts))
            alone = [await one(client, p) for p in prompts]
            return together, alone

    together, alone = asyncio.run(main())
    stats = app.state.batcher.stats
    assert stats["largest_batch"] > 1  # some requests shared a forward pass
    assert stats["batches"] < 2 * len(prompts)
    # Greedy replies do not depend on the company: each got its own row back.
    assert together == alone
    app.state.batcher.close()


def test_a_cancelled_request_leaves_the_queue(lm):
    from dlm.server.batcher import Batcher, Job

    release = threading.Event()
    lm.reply_ids = lambda *a, **k: release.wait(timeout=30)
    batcher = Batcher(lm, max_queue=4)
    loop = asyncio.new_event_loop()
    running = batcher.submit(Job(loop, rows=[HELLO], key="a"))
    waiting = batcher.submit(Job(loop, rows=[HELLO], key="b"))
    while not batcher.running:
        pass
    assert batcher.load() == 2
    batcher.cancel(waiting)
    assert batcher.load() == 1 and waiting not in batcher.pending
    batcher.cancel(running)
    assert batcher.load() == 0
    release.set()
    batcher.close()
    loop.close()


def test_only_text_that_cannot_change_is_streamed(tok):
    from dlm.server.stream import FinishedText

    M, E = tok.mask_id, tok.eos_id
    a, b, c, d = (tok.encode(w)[0] for w in ("hello", "how", "are", "you"))
    plain = FinishedText(tok)
    assert plain.delta([a, M, c, M]) == tok.decode([a])  # up to the first mask
    assert plain.delta([a, b, c, M]) == tok.decode([a, b, c])[len(tok.decode([a])):]
    assert plain.delta([a, b, c, E]) == ""  # eos: the reply ended, nothing more to send
    revising = FinishedText(tok, block_length=2, remask=0.1)
    assert revising.delta([a, b, M, M]) == ""  # block 0 may still be under revision
    assert revising.delta([a, b, c, M]) == tok.decode([a, b])  # block 1 began: 0 is done
    assert revising.delta([a, b, c, d]) == ""  # block 1 may still be revised
    assert revising.finish(tok.decode([a, b, c, d])) == tok.decode([a, b, c, d])[
        len(tok.decode([a, b])):]
    whole = FinishedText(tok, remask=0.1)  # no blocks: nothing is final before the end
    assert whole.delta([a, b, c, M]) == ""


def test_defaults_are_what_a_request_that_sets_nothing_gets(tok):
    """GET /defaults (the page's starting settings) equals the config an empty request
    resolves to, from `lm.decoding()` at the model's default length."""
    from dataclasses import asdict

    from fastapi.testclient import TestClient

    from dlm.config import ServeConfig
    from dlm.server import create_app
    from tests.server_util import tiny_lm

    lm = tiny_lm(tok)
    with TestClient(create_app(lm, ServeConfig(api_key="k"))) as client:
        got = client.get("/defaults")  # open without the key, like /health
    assert got.status_code == 200, got.text
    settings = got.json()["settings"]
    expected = asdict(lm.decoding(length=lm.default_length))
    assert settings["max_tokens"] == expected["length"] == lm.default_length
    assert settings["steps"] == expected["steps"] and settings["commit_rule"] == expected["rule"]
    assert settings["temperature"] == expected["temperature"]
    assert settings["block_length"] == expected["block_length"]
