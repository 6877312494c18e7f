"""Small helpers every part may use: well-formed text checks (`wellformed`), paths that
travel (`portable`), failpoints for the kill tests (`failpoints`) and a dataclass field's
docstring (`field_docs`).

Imports nothing of dlm but `dlm.errors`; every part may import it.
"""
