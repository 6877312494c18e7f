"""`dlm serve`: every ServeConfig field is a flag, shown with its default."""

from __future__ import annotations

from dlm.cli.common import ChatCkpt, Device, Dtype, Verifier, friendly_errors
from dlm.cli.fields import all_flags, apply_flags, with_defaults, with_flags
from dlm.config import ServeConfig

SERVE_FLAGS = with_defaults(all_flags(ServeConfig), ServeConfig())


@friendly_errors
@with_flags(SERVE_FLAGS, into="settings")
def serve(
    ckpt: ChatCkpt = None,
    verifier: Verifier = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    settings: dict | None = None,
):
    """Serve a checkpoint: OpenAI-style /v1 API, /v1/denoise stream, and the web page at /.
    Every ServeConfig field is a flag (not given: its default; the API key also from
    DLM_API_KEY)."""
    from dlm.server import serve as run_server

    config = ServeConfig()
    apply_flags(config, settings or {}, SERVE_FLAGS)
    config.__post_init__()  # a flag's value is checked like the default's
    run_server(ckpt, config, device, verifier=verifier, dtype=dtype)
