"""A request's prompt: OpenAI messages as a dlm chat history, and the checks made on it
before it reaches the batch (not empty, within the server's limit and the model's context).
"""

from __future__ import annotations

from fastapi import Request

from dlm.server.limits import RequestError, check_prompt_tokens
from dlm.server.schemas import ChatMessage


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
