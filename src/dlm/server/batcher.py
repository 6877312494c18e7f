"""Dynamic batching: concurrent requests with the same sampler settings share forward passes.

One worker thread owns the model. It takes the oldest waiting job, waits up to
`max_wait_ms` for more jobs it can join (same settings, rows up to `max_batch`), and
denoises them as one batch; each job gets its own rows of every step. Jobs that cannot be
batched (an infill, an edit, a seeded reply, whose randomness must not depend on its
neighbours) run alone. The queue is bounded: `submit` refuses work beyond `max_queue`
rather than letting clients hang, and a cancelled job (its client went away) leaves the
queue at once and stops its batch when it was the batch's last live job.

One failure cannot take down its neighbours: when a batch raises, each of its live jobs
runs again alone (after a ("restart", None) event, so a stream can start its frames
over), and only the jobs that fail alone get the error. The worker survives every
exception. `close()` stops the running batch at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from dlm.sampling import Step


class QueueFull(Exception):
    """The server has `max_queue` requests waiting or running."""


class Stopping(Exception):
    """The server is shutting down: the job will not run (or not finish)."""


class _Abandoned(Exception):
    """Every job of the running batch was cancelled, or the server is stopping."""


@dataclass(eq=False)
class Job:
    """One request's work, and the channel its results go back on.

    `rows`: chat histories (each a list of {"role", "content"}), denoised as one batch
    with `config`, or `run` for work that takes the whole model alone (called with an
    `on_step` callback, returns the result). Events put on `events`, from the worker
    thread: ("step", Step) when `want_steps`, then ("done", result) or ("error", exc).
    """

    loop: asyncio.AbstractEventLoop
    rows: list[list[dict[str, str]]] = field(default_factory=list)
    config: Any = None
    key: Hashable | None = None  # None: never batched with another job
    run: Callable[[Callable[[Step], None]], Any] | None = None
    want_steps: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def send(self, kind: str, payload: Any) -> None:
        if not self.cancelled:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


class Batcher:
    """The queue and its worker thread. `lm` is a `DiffusionLM`."""

    def __init__(self, lm, max_batch: int = 16, max_wait_ms: float = 20.0,
                 max_queue: int = 256):
        self.lm, self.max_batch, self.max_queue = lm, max_batch, max_queue
        self.max_wait = max_wait_ms / 1000
        self.pending: list[Job] = []
        self.running: list[Job] = []
        self.lock = threading.Condition()
        self.stats = {"batches": 0, "rows": 0, "jobs_done": 0, "largest_batch": 0,
                      "isolated_failures": 0}
        self._stop = False
        self.thread = threading.Thread(target=self._work, name="dlm-batcher", daemon=True)
        self.thread.start()

    # ---- called from the event loop
    def submit(self, job: Job) -> Job:
        with self.lock:
            if self._stop:  # closed: the job would wait for a worker that has ended
                raise Stopping("the server is shutting down")
            if self.load() >= self.max_queue:
                raise QueueFull(f"{self.load()} requests waiting or running "
                                f"(max_queue={self.max_queue})")
            self.pending.append(job)
            self.lock.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The client is gone: drop the job from the queue, or mark it so its batch can
        skip it (and stop, if no live job remains)."""
        with self.lock:
            job.cancelled = True
            if job in self.pending:
                self.pending.remove(job)

    def load(self) -> int:
        """Live requests waiting or running."""
        return len(self.pending) + sum(not j.cancelled for j in self.running)

    @property
    def closed(self) -> bool:
        return self._stop

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop: waiting jobs are answered with `Stopping`, the running batch stops at its
        next step (its jobs answered alike), and the worker thread ends."""
        with self.lock:
            self._stop = True
            waiting, self.pending = self.pending, []
            self.lock.notify()
        for job in waiting:
            job.send("error", Stopping("the server is shutting down"))
        self.thread.join(timeout=timeout_s)

    # ---- the worker thread
    def _take_batch(self) -> list[Job] | None:
        with self.lock:
            while not self.pending and not self._stop:
                self.lock.wait()
            if self._stop:
                return None
            first = self.pending.pop(0)
            # `running` is the batch as it grows, so `load()` counts it while we wait
            batch, rows = [first], len(first.rows)
            self.running = batch
            if first.key is None:
                return batch
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch:
                for job in [j for j in self.pending if j.key == first.key]:
                    if rows + len(job.rows) <= self.max_batch:
                        self.pending.remove(job)
                        batch.append(job)
                        rows += len(job.rows)
                left = deadline - time.monotonic()
                if rows >= self.max_batch or left <= 0 or self._stop:
                    break
                self.lock.wait(timeout=left)
            return batch

    def _work(self) -> None:
        torch.set_grad_enabled(False)
        while (batch := self._take_batch()) is not None:
            outcome = self._outcome(batch)
            rows = sum(len(j.rows) or 1 for j in batch)
            with self.lock:  # free the slots before the clients hear back
                self.running = []
                self.stats["batches"] += 1
                self.stats["rows"] += rows
                self.stats["jobs_done"] += sum(not j.cancelled for j in batch)
                self.stats["largest_batch"] = max(self.stats["largest_batch"], rows)
            for job, result in zip(batch, outcome, strict=True):
                if result is None and self._stop:
                    result = ("error", Stopping("the server is shutting down"))
                if result is not None:
                    job.send(*result)

    def _outcome(self, batch: list[Job]) -> list[tuple[str, Any] | None]:
        """("done", result) or ("error", exc) per job; None for an abandoned one."""
        try:
            return [("done", r) for r in self._run(batch)]
        except _Abandoned:
            return [None] * len(batch)
        except Exception as exc:  # a bad request must not kill the worker
            if len(batch) == 1:
                return [("error", exc)]
        self.stats["isolated_failures"] += 1
        outcome: list[tuple[str, Any] | None] = []
        for job in batch:  # which of them fails alone?
            if job.cancelled:
                outcome.append(None)
                continue
            job.send("restart", None)
            outcome.append(self._outcome([job])[0])
        return outcome

    def _run(self, batch: list[Job]) -> list[Any]:
        spans, at = [], 0
        for job in batch:
            spans.append((at, at + len(job.rows)))
            at += len(job.rows)

        def on_step(step: Step) -> None:
            if self._stop or all(job.cancelled for job in batch):
                raise _Abandoned
            for job, (a, b) in zip(batch, spans, strict=True):
                if job.want_steps:
                    job.send("step", step if job.run else step.rows(a, b))

        if batch[0].run is not None:
            return [batch[0].run(on_step)]
        histories = [h for job in batch for h in job.rows]
        ids = self.lm.reply_ids(histories, batch[0].config, on_step).cpu()
        return [ids[a:b] for a, b in spans]
