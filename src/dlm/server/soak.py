"""A soak under faults: many streaming clients for a bounded time, some of which hang up
mid-stream and some of which send bad requests, with every request accounted for.

    result = asyncio.run(soak("http://127.0.0.1:8000", clients=64, seconds=180))
    assert result.lost == result.duplicated == 0

Each client loops until the deadline, choosing per request: a good streaming chat
(answered: it ends with one finish_reason and [DONE]), a bad one (refused: a 4xx in the
OpenAI error shape) or a stream it drops after a few events (cancelled). sent =
answered + refused + cancelled + lost; a request is duplicated if it saw two finishes
or a response id another request also saw. The server's memory is sampled from
/proc/PID/status when its process id is given.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from dlm.server.load import PROMPTS

BAD_BODIES = [  # each a client's mistake: the server must answer 4xx, never 5xx
    {"messages": []},
    {"messages": [{"role": "user", "content": "hi"}], "steps": -3},
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9},
    {"messages": [{"role": "robot", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}], "logprobs": True},
    {"messages": [{"role": "user", "content": "hi"}], "n": 1000},
    {"prompt": "hi"},
    "not json at all",
]


@dataclass
class SoakResult:
    clients: int
    seconds: float
    sent: int = 0
    answered: int = 0
    refused: int = 0
    cancelled: int = 0
    lost: int = 0
    duplicated: int = 0
    server_errors: int = 0
    """5xx answers (0 expected: bad requests are the clients' mistakes)."""
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the start, the server's resident memory in MiB)."""
    failures: list[str] = field(default_factory=list)
    """The first few lost requests, and why."""

    def to_dict(self) -> dict:
        return asdict(self)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _good(client: httpx.AsyncClient, url: str, headers: dict, body: dict,
                drop_after: int | None, ids: dict[str, int]) -> str:
    """One streaming chat: "answered", "cancelled" (we hung up) or "lost: why"."""
    finishes, done, seen = 0, False, set()
    events = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                             headers=headers) as r:
        if r.status_code != 200:
            return f"lost: HTTP {r.status_code} {(await r.aread())[:120]!r}"
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            events += 1
            if drop_after is not None and events >= drop_after:
                return "cancelled"  # leaving the block closes the connection mid-stream
            if line == "data: [DONE]":
                done = True
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return f"lost: error event {chunk['error'].get('message', '')[:120]}"
            seen.add(chunk.get("id"))
            finishes += sum(c.get("finish_reason") is not None for c in chunk["choices"])
    for rid in seen:
        ids[rid] = ids.get(rid, 0) + 1
    if finishes > 1 or len(seen) > 1:
        return "duplicated"
    return "answered" if done and finishes == 1 else f"lost: done={done} finishes={finishes}"


async def _bad(client: httpx.AsyncClient, url: str, headers: dict, body) -> str:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    r = await client.post(f"{url}/v1/chat/completions", headers=headers, **kwargs)
    if r.status_code >= 500:
        return f"server error: HTTP {r.status_code}"
    try:
        error = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"lost: a {r.status_code} without the error shape"
    return "refused" if 400 <= r.status_code < 500 and error.get("param") else \
        f"lost: {r.status_code} {error}"


async def soak(url: str, clients: int = 64, seconds: float = 180, bad_share: float = 0.2,
               drop_share: float = 0.2, max_tokens: int = 16, steps: int = 8,
               api_key: str | None = None, server_pid: int | None = None,
               seed: int = 0) -> SoakResult:
    """Run the soak against a live server at `url` (loopback) and account for it."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    result = SoakResult(clients, seconds)
    ids: dict[str, int] = {}
    start = time.monotonic()
    deadline = start + seconds

    async def sample_memory() -> None:
        while server_pid and time.monotonic() < deadline:
            result.rss_mb.append((round(time.monotonic() - start, 1), rss_mb(server_pid)))
            await asyncio.sleep(max(seconds / 20, 0.5))

    async def client_loop(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < deadline:
            body = {"messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                    "max_tokens": max_tokens, "steps": steps, "stream": True}
            roll = rng.random()
            result.sent += 1
            try:
                if roll < bad_share:
                    outcome = await _bad(client, url, headers, rng.choice(BAD_BODIES))
                else:
                    drop = rng.randint(1, steps) if roll < bad_share + drop_share else None
                    outcome = await _good(client, url, headers, body, drop, ids)
            except httpx.HTTPError as exc:
                outcome = f"lost: {type(exc).__name__} {exc}"
            if outcome in ("answered", "refused", "cancelled", "duplicated"):
                setattr(result, outcome, getattr(result, outcome) + 1)
            elif outcome.startswith("server error"):
                result.server_errors += 1
                result.failures.append(outcome)
            else:
                result.lost += 1
                if len(result.failures) < 10:
                    result.failures.append(outcome)

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(sample_memory(), *(client_loop(k) for k in range(clients)))
    # a response id seen by two requests is a duplicate too
    result.duplicated += sum(n - 1 for n in ids.values() if n > 1)
    if server_pid:
        result.rss_mb.append((round(time.monotonic() - start, 1), rss_mb(server_pid)))
    return result
