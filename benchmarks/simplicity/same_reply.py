"""The same reply through every door: the Python API, `dlm generate` and the server, with
the shipped model and nothing set but the prompt (issue 32's figure).

    python benchmarks/simplicity/same_reply.py > benchmarks/simplicity/same-reply.json
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dlm import DiffusionLM
from dlm.cli.app import app
from dlm.config import ServeConfig
from dlm.server import create_app

PROMPTS = ["hello", "how are you", "i am sad"]


def main() -> None:
    lm = DiffusionLM.load(device="cpu")
    rows = []
    with TestClient(create_app(lm, ServeConfig())) as client:
        for prompt in PROMPTS:
            api = lm.generate(prompt)[0]
            cli = CliRunner().invoke(app, ["generate", "--prompt", prompt, "--device", "cpu"])
            words = cli.stdout.split()[1 + len(prompt.split()):]  # after "> PROMPT"
            chat = client.post("/v1/chat/completions",
                               json={"messages": [{"role": "user", "content": prompt}]})
            server = chat.json()["choices"][0]["message"]["content"]
            rows.append({"prompt": prompt, "api": api, "cli": " ".join(words),
                         "server": server,
                         "same": api.split() == words and server == api})
    print(json.dumps({"model": "shipped", "command": "python benchmarks/simplicity/"
                      "same_reply.py", "replies": rows}, indent=1))


if __name__ == "__main__":
    main()
