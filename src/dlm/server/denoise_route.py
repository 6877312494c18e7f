"""The /v1/denoise route: every step of a reply, an infill or an edit as server-sent
events, for the page that shows the denoising."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dlm.control.edit import char_span, linear_search
from dlm.control.infill import Blank, parse_template
from dlm.errors import ConfigError
from dlm.server.batcher import Job
from dlm.server.job_events import events, guarded, submit
from dlm.server.limits import RequestError, check_count, check_prompt_tokens, sample_config
from dlm.server.prompts import histories_of, prompt_tokens
from dlm.server.schemas import DenoiseRequest
from dlm.server.stream import cut_at_stop, finish_reason, frame, sse

router = APIRouter()


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
