"""Command-line flags made from a config dataclass's fields and their attribute docstrings
(as litgpt makes its flags), so a new setting is one edit: its field, type, default and
docstring in `dlm.config`. A command lists which fields it takes; the checks stay in the
dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from dlm.util.field_docs import field_docs

SCALARS = (int, float, str, bool)


def flag_type(annotation: Any) -> Any | None:
    """The type a flag parses for a field of this type (None: not a flag, e.g. a dict)."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        if all(k in SCALARS for k in kinds) and kinds:
            return str if len(kinds) > 1 else kinds[0]  # int | str: parsed by the field's check
        return None
    if annotation in SCALARS:
        return annotation
    if typing.get_origin(annotation) is list and len(args) == 1 and args[0] in SCALARS \
            and args[0] is not bool:
        return list[args[0]]  # a repeated option
    return None


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    """The option's parameter name (`--max-steps` for max_steps)."""
    path: tuple[str, ...]
    """Where its value goes in the config (("diffusion", "padding") for a nested field)."""
    type: Any
    help: str
    required: bool = False
    """The field has no default: the command cannot run without it."""
    names: tuple[str, ...] = ()
    """Other spellings the option also takes (`--out` for `--out-dir`), see `aliased`."""
    argument: bool = False
    """Given by position rather than as an option, see `positional`."""


def flags_of(cls: type, fields: Sequence[str], nested: str | None = None) -> list[Flag]:
    """Flags for `fields` of `cls` (in that order); `nested`: the attribute of the outer
    config that holds a `cls`."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for name in fields:
        kind = flag_type(hints[name])
        if kind is None:
            raise TypeError(f"{cls.__name__}.{name}: {hints[name]} cannot be a flag")
        if name not in docs:
            raise TypeError(f"{cls.__name__}.{name} has no docstring to be its --help")
        required = default_of(declared[name]) is dataclasses.MISSING
        out.append(Flag(name, (nested, name) if nested else (name,), kind, docs[name],
                        required))
    return out


def default_of(field: dataclasses.Field) -> Any:
    """A field's default (a fresh one where it has a factory); MISSING when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def aliased(flags: Sequence[Flag], **names: Sequence[str]) -> list[Flag]:
    """`flags`, the named ones also taking these spellings (`out_dir=["--out"]`): a flag
    whose field was renamed keeps the spelling the documentation uses."""
    return [dataclasses.replace(f, names=tuple(names[f.name])) if f.name in names else f
            for f in flags]


def positional(flags: Sequence[Flag], name: str, required: bool = True) -> list[Flag]:
    """`flags`, the one named `name` given by position (`dlm data SOURCE...`)."""
    return [dataclasses.replace(f, argument=True, required=required) if f.name == name
            else f for f in flags]


def all_flags(cls: type, nested: str | None = None, skip: Sequence[str] = ()) -> list[Flag]:
    """A flag for every field of `cls` that can be one (dicts and sub-configs cannot)."""
    hints = typing.get_type_hints(cls)
    return flags_of(cls, [f.name for f in dataclasses.fields(cls) if f.name not in skip
                          and flag_type(hints[f.name]) is not None], nested)


def with_defaults(flags: Sequence[Flag], config: Any) -> list[Flag]:
    """`flags` whose help ends with the value each has in `config` (for commands whose
    defaults are the dataclass's own, not resolved later): an instance, or the dataclass
    itself (its fields' defaults; a required flag shows none)."""
    out = []
    for f in flags:
        if f.required:
            out.append(f)
            continue
        value = config
        for attribute in f.path:
            value = (default_of({g.name: g for g in dataclasses.fields(value)}[attribute])
                     if isinstance(value, type) else getattr(value, attribute))
        out.append(f if value is dataclasses.MISSING else with_default(f, value))
    return out


def shown(value: Any) -> str:
    """A default as the help shows it."""
    if value is None or value == []:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def with_default(flag: Flag, value: Any) -> Flag:
    """`flag` whose help ends with `[default: value]`."""
    # `\[`: the help is Rich markup, where a bare [ ] is a tag
    return dataclasses.replace(flag, help=f"{flag.help} \\[default: {shown(value)}]")


def with_flags(flags: Sequence[Flag], into: str = "flags") -> Callable:
    """A Typer command that also takes `flags`; it receives the ones given (not None) as
    `into: dict[str, Any]` (flag name -> value), for `apply_flags` or its own use."""

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
               for p in inspect.signature(func).parameters.values() if p.name != into]
        taken = {p.name for p in own}
        clash = [f.name for f in flags if f.name in taken]
        if clash:
            raise TypeError(f"{func.__name__}: flags {clash} are also its own parameters")
        generated = [parameter(f) for f in flags]

        @functools.wraps(func)
        def command(**kwargs):
            given = {f.name: kwargs.pop(f.name) for f in flags}
            return func(**kwargs, **{into: {k: v for k, v in given.items() if v is not None}})

        params = [*own, *generated]
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def parameter(flag: Flag) -> inspect.Parameter:
    """The Typer parameter of `flag`: an option (or an argument), None when not given."""
    if flag.argument:
        info = typer.Argument(help=flag.help)
    elif flag.names:
        info = typer.Option("--" + flag.name.replace("_", "-"), *flag.names, help=flag.help)
    else:
        info = typer.Option(help=flag.help)
    kind = flag.type if flag.required else flag.type | None
    return inspect.Parameter(flag.name, inspect.Parameter.KEYWORD_ONLY,
                             default=inspect.Parameter.empty if flag.required else None,
                             annotation=Annotated[kind, info])


def apply_flags(config: Any, given: dict[str, Any], flags: Sequence[Flag]) -> None:
    """Set each given flag's value on `config` (nested fields on their sub-config)."""
    paths = {f.name: f.path for f in flags}
    for name, value in given.items():
        target = config
        for attribute in paths[name][:-1]:
            target = getattr(target, attribute)
        setattr(target, paths[name][-1], value)
