"""The FastAPI app: routes, the API key, request-size limit, CORS and error shapes.

    from dlm import DiffusionLM
    from dlm.config import ServeConfig
    from dlm.server import create_app
    app = create_app(DiffusionLM.load("runs/small-chat"), ServeConfig(api_key="secret"))

Errors are OpenAI-shaped JSON, `{"error": {"message", "type", "param", "code"}}`, with
`param` naming the offending field or limit. No request field is ever used as a path.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dlm.config import COMMIT_RULES, DECODES, ServeConfig
from dlm.errors import DLMError
from dlm.server.batcher import Batcher, QueueFull, Stopping
from dlm.server.denoise_route import router as denoise_router
from dlm.server.limits import RequestError, served_defaults
from dlm.server.openai_routes import router as openai_router
from dlm.util.wellformed import printable

STATIC = resources.files("dlm.server") / "static"
log = logging.getLogger("dlm.server")
# Validation errors answered 400 with the field as `param` (others are 422s)
REFUSED_FIELDS = {"extra_forbidden": "unsupported_parameter", "not_served": "unsupported_parameter",
                  "not_implemented": "unsupported_parameter", "stop_too_many": "invalid_value",
                  "stop_empty": "invalid_value", "conflict": "invalid_value",
                  "invalid_text": "invalid_text"}


def error(status: int, message: str, param: str | None = None, code: str | None = None,
          kind: str = "invalid_request_error", headers: dict | None = None) -> JSONResponse:
    # a message may quote the refused input: its surrogates are escaped so the answer
    # itself is UTF-8
    return JSONResponse({"error": {"message": printable(message), "type": kind,
                                   "param": None if param is None else printable(param),
                                   "code": code}}, status_code=status, headers=headers)


class RequestGuard:
    """Before any handler sees a request: a /v1 request without the API key (when one is
    set) is refused with 401 before its body is read; a body over `max_bytes` with 413,
    whether it says its length up front or streams it in chunks (the excess is never
    read), and JSON nested deeper than `max_depth` with 400 (a deep enough body would
    otherwise exhaust the parser's recursion). The body is read once, then replayed."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.config = app, config  # read per request: create_app may set the key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        if scope["path"].startswith("/v1") and scope.get("method") != "OPTIONS" and \
                not key_ok(self.config.api_key, headers.get(b"authorization", b"")):
            refusal = error(401, "a valid API key is required: send `Authorization: Bearer "
                            "<key>`", "authorization", "invalid_api_key",
                            "authentication_error", {"WWW-Authenticate": "Bearer"})
            return await refusal(scope, receive, send)
        declared = headers.get(b"content-length")
        max_bytes, max_depth = self.config.max_request_bytes, self.config.max_json_depth
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return await too_large(max_bytes)(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before it finished sending
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > max_bytes:
                return await too_large(max_bytes)(scope, receive, send)
        if (depth := json_depth(bytes(body))) > max_depth:
            refusal = error(400, f"the request body nests {depth} levels deep, over this "
                            f"server's limit max_json_depth={max_depth}", "body",
                            "too_deep")
            return await refusal(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: only the disconnect is left to hear

        await self.app(scope, replay, send)


# A JSON string (escapes included) or one bracket; strings are skipped whole, so brackets
# inside them do not count. Linear: no nested quantifier can backtrack.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body` (a cheap scan, no parse)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(body):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def too_large(limit: int) -> JSONResponse:
    return error(413, f"the request body is over this server's limit "
                 f"max_request_bytes={limit}", "body", "request_too_large")


def key_ok(key: str | None, header: bytes) -> bool:
    """No key set, or `Authorization: Bearer <key>` (compared in constant time)."""
    if not key:
        return True
    scheme, _, given = header.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), key.encode())


def create_app(lm, config: ServeConfig | None = None, model_name: str | None = None,
               ) -> FastAPI:
    """An app serving `lm` (a `DiffusionLM`). The API key comes from `config.api_key`, else
    the DLM_API_KEY environment variable."""
    config = config or ServeConfig()
    if not config.api_key and os.environ.get("DLM_API_KEY"):
        config.api_key = os.environ["DLM_API_KEY"]
    name = model_name or (lm.source.parent.name if lm.source and lm.source.name in
                          ("last", "final") else (lm.source.name if lm.source else "dlm"))

    def new_batcher() -> Batcher:
        return Batcher(lm, config.max_batch, config.max_wait_ms, config.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One app may be served by several servers at once (test clients, a schema
        # loader, reloads): the batcher stops when the last of them does, not when the
        # first one leaves while the others still send requests.
        if app.state.batcher.closed:  # served again after a shutdown
            app.state.batcher = new_batcher()
        app.state.serving += 1
        try:
            yield
        finally:
            app.state.serving -= 1
            if app.state.serving == 0:
                app.state.batcher.close(config.shutdown_timeout_s)

    app = FastAPI(title="dlm", summary="A text diffusion language model, OpenAI-style.",
                  lifespan=lifespan)
    app.state.lm, app.state.config, app.state.model_name = lm, config, name
    app.state.created = int(time.time())
    app.state.batcher, app.state.serving = new_batcher(), 0
    for router in (openai_router, denoise_router):  # the order of the OpenAPI schema
        app.include_router(router, prefix="/v1")

    @app.get("/health")
    def health() -> dict:
        """Liveness and load; open without the key (it says nothing about the model)."""
        batcher = app.state.batcher
        return {"status": "ok", "load": batcher.load(), "max_queue": config.max_queue,
                **batcher.stats}

    @app.get("/defaults")
    def defaults() -> dict:
        """The settings a request that sets none gets (by request field name), the names
        each choice takes and the limits: the page starts from these, so it shows what
        the server does. Open without the key, like /health."""
        return {"settings": served_defaults(app.state.lm, config),
                "choices": {"commit_rule": list(COMMIT_RULES), "decode": list(DECODES)},
                "limits": {"max_tokens": config.max_tokens, "max_steps": config.max_steps}}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.openapi = lambda: openapi_with_defaults(app)

    answer_errors(app)

    # CORS outermost (added last), so refusals carry its headers too
    app.add_middleware(RequestGuard, config=config)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    return app


def openapi_with_defaults(app: FastAPI) -> dict:
    """The OpenAPI schema, each request's settings showing as their default what a request
    that leaves them out gets (`served_defaults`: the served model's `lm.decoding()`)
    rather than null. Built once, as FastAPI's own."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)  # builds and keeps app.openapi_schema
        defaults = served_defaults(app.state.lm, app.state.config)
        for component in schema.get("components", {}).get("schemas", {}).values():
            properties = component.get("properties", {})
            if "commit_rule" not in properties:  # not a request with the diffusion settings
                continue
            for name, value in defaults.items():
                properties[name]["default"] = value
    return app.openapi_schema


def answer_errors(app: FastAPI) -> None:
    """Every refusal and fault in the OpenAI error shape: a client's mistake is a 4xx
    naming the field, the server's own fault a logged 500."""

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body that is not JSON, an unknown route or method), in
        # the OpenAI shape like every other error
        param = {404: "path", 405: "method"}.get(exc.status_code, "body")
        return error(exc.status_code, str(exc.detail), param, "invalid_request",
                     headers=getattr(exc, "headers", None))

    @app.exception_handler(QueueFull)
    async def on_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error(503, f"the server is busy: {exc}; retry shortly", "max_queue",
                     "server_busy", "server_error", {"Retry-After": "1"})

    @app.exception_handler(Stopping)
    async def on_stopping(request: Request, exc: Stopping) -> JSONResponse:
        return error(503, str(exc), None, "server_stopping", "server_error")

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        kind = first.get("type", "")
        if kind in REFUSED_FIELDS:  # a field we do not take: 400, as OpenAI answers it
            name = (first.get("ctx") or {}).get("field") or where or '""'  # "" is a key too
            message = first.get("msg", "not supported")
            if kind == "extra_forbidden":
                message = f"{name} is not a field this server takes; leave it out"
            return error(400, message, name, REFUSED_FIELDS[kind])
        if kind == "json_invalid":
            return error(400, f"the body is not valid JSON: {first.get('msg', '')}", "body",
                         "invalid_json")
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", where or "body",
                     "invalid_value")

    @app.exception_handler(Exception)
    async def on_fault(request: Request, exc: Exception) -> JSONResponse:
        # The server's own fault (never a client's mistake, which is a 4xx above): logged
        # with its traceback once, answered in the same shape as every other error.
        log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"the server failed on this request ({type(exc).__name__}); "
                     "it keeps serving others", None, "server_error", "server_error")

    @app.exception_handler(DLMError)
    async def on_dlm_error(request: Request, exc: DLMError) -> JSONResponse:
        return error(400, str(exc), getattr(exc, "field", None) or "body", "invalid_request")
