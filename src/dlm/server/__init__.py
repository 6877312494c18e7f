"""`dlm serve`: an OpenAI-compatible HTTP API and a web page that shows the denoising.

    from dlm.server import create_app, serve
    serve("runs/small-chat", ServeConfig(port=8000))      # blocks; what `dlm serve` runs
    app = create_app(DiffusionLM.load("runs/small-chat"))  # an ASGI app, e.g. for tests
"""

from __future__ import annotations

from pathlib import Path

from dlm.config import ServeConfig
from dlm.server.app import create_app


def serve(ckpt: str | Path, config: ServeConfig | None = None, device: str = "auto",
          log_level: str = "info") -> None:
    """Load `ckpt` and serve it with uvicorn until interrupted."""
    import uvicorn

    from dlm.pipeline import DiffusionLM

    config = config or ServeConfig()
    app = create_app(DiffusionLM.load(ckpt, device), config)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level)


__all__ = ["ServeConfig", "create_app", "serve"]
