"""`dlm serve` with no arguments, asked for a reply to a greeting by the official `openai`
client; writes what it got to docs/serve-greeting.txt.

    python docs/serve_greeting.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI


def main() -> None:
    server = subprocess.Popen([sys.executable, "-m", "dlm", "serve"], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True)
    try:
        for _ in range(600):
            try:
                if httpx.get("http://127.0.0.1:8000/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
        lines = ["$ dlm serve   # no arguments: the shipped model on 127.0.0.1:8000", ""]
        for greeting in ("hello", "Hi! How are you today?", "Good morning, how was your weekend?"):
            reply = client.chat.completions.create(
                model="dlm", messages=[{"role": "user", "content": greeting}])
            choice = reply.choices[0]
            lines.append(f"user: {greeting}")
            lines.append(f"dlm:  {choice.message.content}  (finish_reason {choice.finish_reason},"
                         f" {reply.usage.completion_tokens} tokens)")
        text = "\n".join(lines) + "\n"
        (Path(__file__).parent / "serve-greeting.txt").write_text(text)
        print(text)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
