"""Helpers for the server tests: a tiny model and a live uvicorn server on loopback."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import torch

from dlm.config import ServeConfig
from dlm.model import Transformer
from dlm.pipeline import DiffusionLM
from dlm.server import create_app
from dlm.server.load import free_port


def tiny_lm(tok, seed: int = 0) -> DiffusionLM:
    from tests.conftest import tiny_config

    torch.manual_seed(seed)
    return DiffusionLM(Transformer(tiny_config(tok.vocab_size)).eval(), tok,
                       max_prompt_len=16, default_length=12)


def sse_payloads(text: str) -> list:
    """The `data:` payloads of a server-sent event stream, JSON-decoded but `[DONE]`."""
    out = []
    for event in text.split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


@contextmanager
def live_server(lm, config: ServeConfig | None = None):
    """`create_app(lm, config)` served by uvicorn on 127.0.0.1 in a thread; yields its URL."""
    import uvicorn

    config = config or ServeConfig()
    config.port = free_port()
    app = create_app(lm, config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
