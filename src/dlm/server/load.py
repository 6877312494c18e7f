"""A load generator for a running server: N streaming chat requests, all at once or one at
a time, checked for completeness (every request answered exactly once) and timed.

    result = asyncio.run(run_load("http://127.0.0.1:8000", n=64, concurrent=True))
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from dataclasses import dataclass, field

import httpx

PROMPTS = ["hello", "how are you", "what is your name", "tell me a joke", "good morning",
           "what do you like to do", "i feel sad today", "what is python", "bye",
           "where are you from", "do you like music", "what time is it"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoadResult:
    n: int
    concurrent: bool
    wall_s: float
    answered: int
    """Requests whose stream ended with finish_reason, usage and [DONE]."""
    lost: int
    """Requests that failed or ended without a finish."""
    duplicated: int
    """Requests that got more than one finish, or a response id another request got."""
    tokens: int
    latencies_s: list[float] = field(default_factory=list)

    @property
    def p50_s(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else 0.0

    @property
    def p95_s(self) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))] if xs else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str, body: dict,
                     headers: dict) -> dict:
    start = time.perf_counter()
    out = {"ids": set(), "finishes": 0, "done": False, "tokens": 0, "error": None}
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", headers=headers, json={
                "messages": [{"role": "user", "content": prompt}], "stream": True,
                "stream_options": {"include_usage": True}, **body}) as r:
            if r.status_code != 200:
                out["error"] = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    out["done"] = True
                    continue
                chunk = json.loads(line[6:])
                out["ids"].add(chunk.get("id"))
                if chunk.get("usage"):
                    out["tokens"] = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    out["finishes"] += choice.get("finish_reason") is not None
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    out["latency"] = time.perf_counter() - start
    return out


async def run_load(url: str, n: int = 64, concurrent: bool = True, max_tokens: int = 32,
                   steps: int = 16, api_key: str | None = None, timeout: float = 600,
                   ) -> LoadResult:
    """Send `n` streaming chat requests (all at once, or one after another)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # eos banned: every reply is exactly max_tokens long, so tokens/s counts the same work
    body = {"max_tokens": max_tokens, "steps": steps, "eos": "ban"}
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        start = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(one_stream(client, url, p, body, headers)
                                             for p in prompts))
        else:
            results = [await one_stream(client, url, p, body, headers) for p in prompts]
        wall = time.perf_counter() - start
    seen: dict[str, int] = {}
    for r in results:
        for rid in r["ids"]:
            seen[rid] = seen.get(rid, 0) + 1
    answered = [r for r in results if r["done"] and r["finishes"] == 1 and not r["error"]]
    duplicated = sum(1 for r in results if r["finishes"] > 1 or len(r["ids"]) > 1
                     or any(seen[i] > 1 for i in r["ids"]))
    lost = sum(1 for r in results if not r["done"] or r["finishes"] == 0 or r["error"])
    return LoadResult(n, concurrent, wall, len(answered), lost, duplicated,
                      sum(r["tokens"] for r in results),
                      [r["latency"] for r in answered])
