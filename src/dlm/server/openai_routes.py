"""The OpenAI /v1 routes: chat and text completions (whole or streamed), the model list."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dlm.server.batcher import Job
from dlm.server.job_events import events, guarded, submit
from dlm.server.limits import RequestError, effective, sample_config
from dlm.server.prompts import check_not_empty, histories_of, prompt_tokens
from dlm.server.schemas import ChatRequest, CompletionRequest
from dlm.server.stream import FinishedText, StopCutter, cut_at_stop, finish_reason, sse

router = APIRouter()


async def replies(request: Request, histories: list[list[dict[str, str]]], req, kind: str):
    """Chat and text completions share everything but their JSON shapes."""
    state = request.app.state
    tok, lm = state.lm.tokenizer, state.lm
    config = sample_config(req, state.config, lm)
    param = "messages" if kind == "chat" else "prompt"
    n_prompt = sum(prompt_tokens(request, h, param, config.length) for h in histories)
    rows = [h for h in histories for _ in range(req.n)]
    job = submit(request, rows, config, want_steps=req.stream)
    rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    base = {"id": rid, "created": int(time.time()), "model": state.model_name}
    if req.stream:
        return StreamingResponse(guarded(stream_replies(request, job, config, base, kind,
                                                         len(rows), usage_of(req, n_prompt),
                                                         req.stops)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    ids = None
    async for event, payload in events(request, job):
        if event == "done":
            ids = payload
    if ids is None:
        return None  # the client went away
    choices, completion = [], 0
    for i, row in enumerate(ids.tolist()):
        text, stopped = cut_at_stop(lm.decode_reply(row, config), req.stops)
        completion += completion_tokens(row, tok.eos_id)
        reason = "stop" if stopped else finish_reason(row, tok.eos_id)
        choices.append({"index": i, "message": {"role": "assistant", "content": text},
                        "finish_reason": reason} if kind == "chat" else
                       {"index": i, "text": text, "finish_reason": reason, "logprobs": None})
    return {**base, "object": "chat.completion" if kind == "chat" else "text_completion",
            "choices": choices,
            "usage": {"prompt_tokens": n_prompt * req.n, "completion_tokens": completion,
                      "total_tokens": n_prompt * req.n + completion},
            "dlm": effective(config)}


def completion_tokens(ids: list[int], eos_id: int) -> int:
    """Reply tokens up to (not counting) the first eos."""
    return ids.index(eos_id) if eos_id in ids else len(ids)


def usage_of(req, n_prompt: int) -> int | None:
    """Prompt tokens to report in a stream's last chunk, if the client asked for usage."""
    return n_prompt * req.n if req.stream_options and req.stream_options.include_usage \
        else None


async def stream_replies(request: Request, job: Job, config, base: dict, kind: str,
                         n_rows: int, prompt_usage: int | None, stops: list[str],
                         ) -> AsyncIterator[str]:
    """OpenAI chunks: text is sent as soon as it is final (see `stream.FinishedText`),
    and never past a stop string (see `stream.StopCutter`)."""
    tok, lm = request.app.state.lm.tokenizer, request.app.state.lm
    rows = [FinishedText(tok, config.block_length, config.remask) for _ in range(n_rows)]
    cutters = [StopCutter(stops) for _ in range(n_rows)]
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(i: int, text: str | None, reason: str | None = None, first: bool = False):
        if kind == "chat":
            delta = {"role": "assistant", "content": ""} if first else (
                {"content": text} if text else {})
            choice = {"index": i, "delta": delta, "finish_reason": reason}
        else:
            choice = {"index": i, "text": text or "", "finish_reason": reason,
                      "logprobs": None}
        return sse({**base, "object": obj, "choices": [choice]})

    if kind == "chat":
        for i in range(n_rows):
            yield chunk(i, None, first=True)
    async for event, payload in events(request, job):
        if event == "restart":  # the batch failed; this reply runs again alone
            for row in rows:
                row.restart()
        elif event == "step":
            if payload.drafted is not None:  # unverified drafts are not final text
                continue
            for i, row in enumerate(rows):
                text = cutters[i].feed(row.delta(payload.tokens[i].tolist()))
                if text:
                    yield chunk(i, text)
        else:
            completion = 0
            for i, (row, ids) in enumerate(zip(rows, payload.tolist(), strict=True)):
                cutter = cutters[i]
                rest = cutter.feed(row.finish(lm.decode_reply(ids, config))) + cutter.flush()
                if rest:
                    yield chunk(i, rest)
                yield chunk(i, None, "stop" if cutter.stopped else finish_reason(ids, tok.eos_id))
                completion += completion_tokens(ids, tok.eos_id)
            if prompt_usage is not None:
                yield sse({**base, "object": obj, "choices": [], "usage": {
                    "prompt_tokens": prompt_usage, "completion_tokens": completion,
                    "total_tokens": prompt_usage + completion}})
            yield sse("[DONE]")


@router.get("/models")
def models(request: Request) -> dict:
    state = request.app.state
    return {"object": "list", "data": [{"id": state.model_name, "object": "model",
                                        "created": state.created, "owned_by": "dlm",
                                        "objective": state.lm.objective.name}]}


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request):
    return await replies(request, [histories_of(req.messages)], req, "chat")


@router.post("/completions")
async def completions(req: CompletionRequest, request: Request):
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not prompts:
        raise RequestError(400, "prompt", "prompt is empty", "invalid_prompt")
    for p in prompts:
        check_not_empty([{"role": "user", "content": p}], "prompt")
    if len(prompts) * req.n > request.app.state.config.max_n:
        raise RequestError(400, "n", f"{len(prompts)} prompts × n={req.n} is over this "
                         f"server's limit max_n={request.app.state.config.max_n}")
    return await replies(request, [[{"role": "user", "content": p}] for p in prompts], req,
                         "completion")
