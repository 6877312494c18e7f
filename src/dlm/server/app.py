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
import os
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from dlm.config import ServeConfig
from dlm.errors import DLMError
from dlm.server.batcher import Batcher, QueueFull
from dlm.server.limits import RequestError
from dlm.server.routes import router

STATIC = resources.files("dlm.server") / "static"


def error(status: int, message: str, param: str | None = None, code: str | None = None,
          kind: str = "invalid_request_error", headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, whether it says its length up
    front or streams it in chunks; the handler never sees the excess."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope, receive, send):
        await too_large(BodyTooLarge(self.limit))(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while the body is read; an HTTPException so FastAPI passes it through."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over this server's limit "
                         f"max_request_bytes={limit}")


def too_large(exc: BodyTooLarge) -> JSONResponse:
    return error(413, exc.detail, "body", "request_too_large")


def require_key(request: Request) -> None:
    key = request.app.state.config.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), key.encode()):
        raise RequestError(401, "authorization", "a valid API key is required: send "
                         "`Authorization: Bearer <key>`", "invalid_api_key")


def create_app(lm, config: ServeConfig | None = None, model_name: str | None = None,
               ) -> FastAPI:
    """An app serving `lm` (a `DiffusionLM`). The API key comes from `config.api_key`, else
    the DLM_API_KEY environment variable."""
    config = config or ServeConfig()
    if not config.api_key and os.environ.get("DLM_API_KEY"):
        config.api_key = os.environ["DLM_API_KEY"]
    name = model_name or (lm.source.parent.name if lm.source and lm.source.name in
                          ("last", "final") else (lm.source.name if lm.source else "dlm"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.batcher.close()

    app = FastAPI(title="dlm", summary="A text diffusion language model, OpenAI-style.",
                  lifespan=lifespan)
    app.state.lm, app.state.config, app.state.model_name = lm, config, name
    app.state.created = int(time.time())
    app.state.batcher = Batcher(lm, config.max_batch, config.max_wait_ms, config.max_queue)
    app.include_router(router, prefix="/v1", dependencies=[Depends(require_key)])

    @app.get("/health")
    def health() -> dict:
        """Liveness and load; open without the key (it says nothing about the model)."""
        batcher = app.state.batcher
        return {"status": "ok", "load": batcher.load(), "max_queue": config.max_queue,
                **batcher.stats}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        kind = "authentication_error" if exc.status == 401 else "invalid_request_error"
        return error(exc.status, exc.message, exc.param, exc.code, kind, headers)

    @app.exception_handler(BodyTooLarge)
    async def on_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(exc)

    @app.exception_handler(QueueFull)
    async def on_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error(503, f"the server is busy: {exc}; retry shortly", "max_queue",
                     "server_busy", "server_error", {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", where or None,
                     "invalid_value")

    @app.exception_handler(DLMError)
    async def on_dlm_error(request: Request, exc: DLMError) -> JSONResponse:
        return error(400, str(exc), None, "invalid_request")

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
    return app
