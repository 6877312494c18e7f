"""`dlm serve`'s settings (`ServeConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlm.errors import ConfigError


@dataclass
class ServeConfig:
    """`dlm serve`: where it listens, who may call it, and how much one request may ask."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback only unless you mean to expose it."""
    port: int = 8000
    """Port to listen on."""
    api_key: str | None = None
    """When set, every /v1 route needs `Authorization: Bearer <key>` (or DLM_API_KEY)."""
    cors_origins: list[str] = field(default_factory=list)
    """Origins allowed to call the API from a browser (empty: CORS off)."""
    max_prompt_tokens: int = 512
    """Longest prompt, in tokens, after the chat template."""
    max_tokens: int = 512
    """Longest reply canvas (`max_tokens`)."""
    max_steps: int = 512
    """Most denoising steps per request."""
    max_n: int = 8
    """Most replies per request (`n`)."""
    max_request_bytes: int = 65_536
    """Largest request body."""
    max_json_depth: int = 16
    """Deepest nesting of arrays and objects in a request body (checked before parsing)."""
    max_pattern_chars: int = 256
    """Longest edit `span` pattern (run by RE2, in time linear in the text)."""
    shutdown_timeout_s: float = 5.0
    """On SIGTERM or Ctrl-C: open requests get this long, then are cut and the server exits."""
    max_cfg_scale: float = 5.0
    """Classifier-free guidance scales above this are clamped to it."""
    max_batch: int = 16
    """Dynamic batching: most rows denoised in one forward pass."""
    max_wait_ms: float = 20.0
    """Dynamic batching: how long the first request waits for company."""
    max_queue: int = 256
    """Requests waiting or running; beyond it the server answers 503 with Retry-After."""

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_tokens", "max_steps", "max_n",
                     "max_request_bytes", "max_json_depth", "max_pattern_chars",
                     "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
