"""The /v1 routes: OpenAI chat and text completions, the model list, the denoising stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dlm.control.edit import char_span, linear_search
from dlm.control.infill import Blank, parse_template
from dlm.errors import ConfigError, DLMError
from dlm.server.batcher import Job
from dlm.server.limits import (
    RequestError,
    batch_key,
    check_count,
    check_prompt_tokens,
    effective,
    sample_config,
)
from dlm.server.schemas import ChatMessage, ChatRequest, CompletionRequest, DenoiseRequest
from dlm.server.stream import FinishedText, StopCutter, cut_at_stop, finish_reason, frame, sse

router = APIRouter()
DISCONNECT_POLL_S = 0.25


def histories_of(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI messages as a dlm chat history. The chat template has user and assistant
    turns only, so a system message is prepended to the next user turn."""
    history, system = [], []
    for m in messages:
        if m.role in ("system", "developer"):
            system.append(m.content)
        elif m.role == "user":
            history.append({"role": "user", "content": "\n\n".join([*system, m.content])})
            system = []
        else:
            history.append({"role": "assistant", "content": m.content})
    if not history or history[-1]["role"] != "user":
        raise RequestError(400, "messages", "the last message must be from the user",
                         "invalid_messages")
    check_not_empty(history, "messages")
    return history


def check_not_empty(history: list[dict[str, str]], param: str) -> None:
    """Refused here, not in the batch: a bad row would otherwise fail its neighbours too."""
    if not any(m["content"].strip() for m in history):
        raise RequestError(400, param, "the prompt is empty; send some text to reply to",
                           "invalid_prompt")


def prompt_tokens(request: Request, history: list[dict[str, str]], param: str,
                  length: int) -> int:
    """The prompt's token count, within the server's limit, and with the reply canvas
    within the model's context (the model reads the last `max_prompt_len` of it)."""
    state = request.app.state
    n = len(state.lm.tokenizer.encode_prompt(history))
    check_prompt_tokens(n, state.config, param)
    check_fits(state.lm, min(n, state.lm.max_prompt_len), length)
    return n


def check_fits(lm, prompt: int, length: int) -> None:
    context = lm.model.config.max_seq_len
    if prompt + length > context:
        raise RequestError(400, "max_tokens", f"{prompt} prompt tokens + max_tokens={length} "
                         f"is over the model's context of {context} tokens")


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


@router.post("/denoise")
async def denoise(req: DenoiseRequest, request: Request):
    """Every step of one request as server-sent events: a reply (`messages`), an infill
    (`template`) or an edit (`text` + `span`)."""
    state = request.app.state
    lm, tok = state.lm, state.lm.tokenizer
    given = [name for name in ("messages", "template", "text")
             if getattr(req, name) is not None]
    if len(given) != 1:
        raise RequestError(400, "messages", "give exactly one of messages (a reply), template "
                         "(an infill) or text with span (an edit)", "invalid_request")
    if req.n != 1:
        raise RequestError(400, "n", "the denoising stream shows one reply (n=1)")
    config = sample_config(req, state.config, lm)
    if req.messages is not None:
        history = histories_of(req.messages)
        prompt_tokens(request, history, "messages", config.length)
        job = submit(request, [history], config, want_steps=True)
        return StreamingResponse(guarded(denoise_stream(request, job, config, req.stops)),
                                 media_type="text/event-stream")
    if req.stop is not None:
        raise RequestError(400, "stop", "stop applies to replies (messages); an infill or an "
                           "edit keeps its given text", "unsupported_parameter")
    field = "template" if req.template is not None else "text"
    given_tokens = len(tok.encode(getattr(req, field))) + len(tok.encode(req.prompt or ""))
    check_prompt_tokens(given_tokens, state.config, field)
    span = check_control(req, lm, state.config, given_tokens)
    if req.template is not None:
        def run(on_step):
            result = lm.infill(req.template, req.prompt, config, on_step=on_step)
            return {"text": result.text, "fills": result.fills}
    else:
        def run(on_step):
            # the span as the range RE2 found: the pattern is never run again
            result = lm.edit(req.text, span, prompt=req.prompt, config=config,
                             on_step=on_step)
            return {"text": result.after, "before": result.before}
    job = submit(request, [], config, want_steps=True, run=run)
    return StreamingResponse(guarded(denoise_stream(request, job, config)),
                             media_type="text/event-stream")


def check_control(req: DenoiseRequest, lm, limits, given_tokens: int) -> str | None:
    """Refuse, with a 400 and before any model call, a template without blanks or whose
    blanks hold more than `max_tokens`, an edit span that is too long a pattern, matches
    nothing or covers more than `max_tokens`, and any canvas over the model's context.
    Returns an edit's span as the character range "A:B" its pattern matched (by RE2)."""
    context = lm.model.config.max_seq_len
    overhead = 4 if req.prompt is not None else 1  # <bos> <user> ... <assistant> and eos
    if req.template is not None:
        try:
            pieces = parse_template(req.template)
            prompt = parse_template(req.prompt, where="prompt") if req.prompt is not None \
                else []
        except ConfigError as exc:
            raise RequestError(400, "template", str(exc), "invalid_template") from None
        blanks = sum(p.size for p in pieces + prompt if isinstance(p, Blank))
        if not blanks:
            raise RequestError(400, "template", "the template has no blank to fill; mark one "
                             "with [MASK], [MASK*n] or [MASK*?]", "invalid_template")
        if blanks > limits.max_tokens:
            raise RequestError(400, "template", f"the template's blanks hold {blanks} tokens, "
                             f"over this server's limit max_tokens={limits.max_tokens}")
        if given_tokens + blanks + overhead > context:
            raise RequestError(400, "template", f"{given_tokens} given tokens + {blanks} "
                             f"blank tokens is over the model's context of {context} tokens")
        return None
    if not req.span:
        raise RequestError(400, "span", "an edit needs a span (a regex or A:B) to rewrite")
    if len(req.span) > limits.max_pattern_chars:
        raise RequestError(400, "span", f"the span pattern is {len(req.span)} characters, over "
                         f"this server's limit max_pattern_chars={limits.max_pattern_chars}")
    if not req.text.strip():
        raise RequestError(400, "text", "the text to edit is empty")
    if given_tokens + overhead > context:
        raise RequestError(400, "text", f"{given_tokens} tokens is over the model's context "
                         f"of {context} tokens")
    try:
        a, b = char_span(req.text, req.span, linear_search)
    except ConfigError as exc:
        raise RequestError(400, "span", str(exc), "invalid_span") from None
    check_count(len(lm.tokenizer.encode(req.text[a:b])), limits.max_tokens, "span",
                "max_tokens")
    return f"{a}:{b}"


async def denoise_stream(request: Request, job: Job, config, stops: list[str] | None = None,
                         ) -> AsyncIterator[str]:
    lm, tok = request.app.state.lm, request.app.state.lm.tokenizer
    last_nfe, start = 0, None
    async for event, payload in events(request, job):
        if event == "restart":  # the batch failed; this request runs again alone
            start = None
            yield sse({"type": "restart"})
        elif event == "step":
            if start is None:  # the layout is fixed: find the text's start once
                start = reply_start(payload.tokens[0].tolist(), tok) if job.run else 0
            last_nfe = payload.nfe
            yield sse(frame(payload, 0, tok, start))
        elif job.run:
            yield sse({"type": "done", "nfe": last_nfe, **payload})
        else:
            ids = payload[0].tolist()
            text, stopped = cut_at_stop(lm.decode_reply(ids, config), stops or [])
            yield sse({"type": "done", "nfe": last_nfe, "text": text,
                       "finish_reason": "stop" if stopped else finish_reason(ids, tok.eos_id)})
    yield sse("[DONE]")


def reply_start(ids: list[int], tok) -> int:
    """Where an infill's or edit's own text begins: after the assistant marker when it
    answers a prompt, else at 0."""
    return ids.index(tok.assistant_id) + 1 if tok.assistant_id in ids else 0
