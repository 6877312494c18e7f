"""The `dlm` command: thin Typer commands over the Python API (`app`), flags made from
the config dataclasses (`fields`), the terminal's presentation (`console`: progress, traces,
the chat REPL; `render`: a canvas as text) and `dlm demo` (`demo`).

May import every other part; nothing imports it.
"""
