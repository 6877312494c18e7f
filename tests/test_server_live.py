"""A live server on loopback: the official `openai` client, disconnects, a bounded load."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from dlm.config import ServeConfig
from tests.server_util import live_server, tiny_lm

openai = pytest.importorskip("openai", reason="the openai client is a test dependency")


@pytest.fixture
def server(tok):
    with live_server(tiny_lm(tok), ServeConfig(api_key="k")) as (url, app):
        yield url, app


def client(url: str):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)


def test_the_openai_client_chats_completes_and_streams(server):
    url, _ = server
    c = client(url)
    assert [m.id for m in c.models.list()] == ["dlm"]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    reply = c.chat.completions.create(model="dlm", messages=messages, max_tokens=10, n=2,
                                      extra_body={"steps": 5, "seed": 7})
    assert len(reply.choices) == 2 and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0
    text = c.completions.create(model="dlm", prompt="bye", max_tokens=8,
                                extra_body={"steps": 4})
    assert text.choices[0].finish_reason in ("stop", "length")
    chunks = list(c.chat.completions.create(
        model="dlm", messages=messages, max_tokens=10, stream=True,
        extra_body={"steps": 5, "seed": 7}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert streamed == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    streamed_text = list(c.completions.create(model="dlm", prompt="bye", max_tokens=8,
                                              stream=True, extra_body={"steps": 4}))
    assert streamed_text[-1].choices[0].finish_reason in ("stop", "length")


def test_the_openai_client_sees_the_servers_errors(server):
    url, _ = server
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="max_steps"):
        client(url).chat.completions.create(
            model="dlm", messages=[{"role": "user", "content": "hi"}],
            extra_body={"steps": 10_000})


def test_a_client_that_disconnects_frees_its_slot(tok):
    lm = tiny_lm(tok)
    real = lm.reply_ids

    def slow(histories, config, on_step):  # each step takes a while, so we can leave
        def paced(step):
            time.sleep(0.05)
            on_step(step)
        return real(histories, config, paced)

    lm.reply_ids = slow
    with live_server(lm, ServeConfig(max_queue=1)) as (url, app):
        body = {"messages": [{"role": "user", "content": "hello"}], "steps": 100,
                "max_tokens": 100, "stream": True}
        with httpx.stream("POST", f"{url}/v1/denoise", json=body, timeout=30) as r:
            first = next(r.iter_lines())
            assert first.startswith("data: ")
        # the stream is closed after one event: the server notices and frees the slot
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/health").json()["load"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").json()["load"] == 0
        ok = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "hi"}], "steps": 2, "max_tokens": 4})
        assert ok.status_code == 200
        assert app.state.batcher.stats["batches"] >= 1


def test_a_bounded_load_is_answered_in_full(tok):
    """32 concurrent streams: every one answered once, none lost or duplicated."""
    from dlm.server.load import run_load

    with live_server(tiny_lm(tok), ServeConfig(max_batch=8)) as (url, app):
        result = asyncio.run(run_load(url, n=32, concurrent=True, max_tokens=8, steps=4))
    assert result.answered == 32 and result.lost == 0 and result.duplicated == 0
    assert result.tokens > 0 and result.p95_s >= result.p50_s > 0
    assert app.state.batcher.stats["largest_batch"] > 1


def test_the_serve_load_bench_runs_dlm_serve_and_reports_both_passes(tok, tmp_path):
    """`dlm bench --serve`: a real `dlm serve` process, all at once then one at a time."""
    import torch

    from dlm.bench.serving import run_serve_bench

    lm = tiny_lm(tok)
    lm.save_pretrained(tmp_path / "ckpt")
    report = run_serve_bench([tmp_path / "ckpt"], torch.device("cpu"), n=6, max_tokens=8,
                             steps=4, max_batch=4)
    together, alone = report.results
    assert together["concurrent"] and not alone["concurrent"]
    for r in report.results:
        assert r["answered"] == 6 and r["lost"] == 0 and r["duplicated"] == 0
        assert r["tokens"] == 6 * 8  # eos banned: every reply is exactly max_tokens
    assert together["server_largest_batch"] > 1
    assert "batching speed-up" in report.markdown()
