"""`dlm serve`: an OpenAI-compatible HTTP API and a web page that shows the denoising.

    from dlm.server import create_app, serve
    serve("runs/small-chat", ServeConfig(port=8000))      # blocks; what `dlm serve` runs
    app = create_app(DiffusionLM.load("runs/small-chat"))  # an ASGI app, e.g. for tests

May import the pipeline and everything below it; never training, evaluation, the
benchmarks or the CLI.
"""

from __future__ import annotations

from pathlib import Path

from dlm.config import ServeConfig
from dlm.server.app import create_app


def serve(ckpt: str | Path | None = None, config: ServeConfig | None = None,
          device: str = "auto",
          log_level: str = "info", verifier: str | Path | None = None,
          dtype: str = "float32") -> None:
    """Load `ckpt` (weights in `dtype`; none: the shipped chat model) and serve it with
    uvicorn until interrupted; with `verifier`, that AR checkpoint beside it, for
    requests with `decode: speculative`."""
    import uvicorn

    from dlm.pipeline import DiffusionLM

    config = config or ServeConfig()
    lm = DiffusionLM.load(ckpt, device, dtype=dtype)
    if verifier is not None:
        lm.with_verifier(verifier)
    app = create_app(lm, config)
    # Open requests get `shutdown_timeout_s` after SIGTERM or Ctrl-C, then are cut: a
    # stream must not keep the server up forever.
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level,
                timeout_graceful_shutdown=config.shutdown_timeout_s)


__all__ = ["ServeConfig", "create_app", "serve"]
