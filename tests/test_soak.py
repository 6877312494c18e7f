"""A short soak under faults (the long one: benchmarks/soak/run.py): concurrent streams,
some dropped mid-stream, some bad; every request accounted for."""

from __future__ import annotations

import asyncio
import time

import httpx

from dlm.config import ServeConfig
from dlm.server.soak import soak
from tests.server_util import live_server, tiny_lm


def test_every_request_of_a_short_soak_is_answered_refused_or_cancelled(tok):
    with live_server(tiny_lm(tok), ServeConfig(max_batch=8, max_queue=64)) as (url, app):
        result = asyncio.run(soak(url, clients=16, seconds=6, max_tokens=8, steps=4))
        assert result.sent > 16 and result.answered and result.refused and result.cancelled
        assert result.sent == result.answered + result.refused + result.cancelled, result
        assert result.lost == result.duplicated == result.server_errors == 0, result.failures
        deadline = time.monotonic() + 10  # dropped streams free their slots
        while httpx.get(f"{url}/health").json()["load"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").json()["load"] == 0
        assert app.state.batcher.thread.is_alive()
