"""A request's job on the batcher: submitted, its events read until it is done (and
cancelled when the client leaves), its stream ended by an error event if it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request

from dlm.errors import DLMError
from dlm.server.batcher import Job
from dlm.server.limits import batch_key
from dlm.server.stream import sse

DISCONNECT_POLL_S = 0.25


async def events(request: Request, job: Job) -> AsyncIterator[tuple[str, object]]:
    """A job's events until it is done; the job is cancelled (its slot freed) when the
    client disconnects or the consumer stops early."""
    finished = False
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(job.events.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if kind == "error":
                finished = True
                raise payload  # type: ignore[misc]
            finished = kind == "done"
            yield kind, payload
            if finished:
                return
    finally:
        if not finished:
            request.app.state.batcher.cancel(job)


async def guarded(stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """A stream that fails after its headers went out ends with an error event (the
    OpenAI clients raise it) instead of a cut connection."""
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:
        kind = "invalid_request_error" if isinstance(exc, DLMError) else "server_error"
        yield sse({"error": {"message": str(exc), "type": kind, "param": None,
                             "code": None}})
        yield sse("[DONE]")


def submit(request: Request, rows, config, want_steps: bool = False, run=None) -> Job:
    job = Job(asyncio.get_running_loop(), rows=rows, config=config,
              key=None if run else batch_key(config), run=run, want_steps=want_steps)
    return request.app.state.batcher.submit(job)
