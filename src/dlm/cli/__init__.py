"""The `dlm` command: the table of its commands (`app`), each a thin function over the
Python API in a module of its own (`train`: train and demo; `sample`: generate, infill,
edit and chat; `serve`; `data`: data and distill; `evaluate`: eval, sweep and compare;
`bench`), the options every command shares (`common`), flags made from the config
dataclasses and their docstrings (`fields`), the terminal's presentation (`console`:
progress, traces, the chat REPL; `render`: a canvas as text) and the demo's model
(`demo`).

May import every other part; nothing imports it.
"""
