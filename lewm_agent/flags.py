"""Command-line options declared once, on the config dataclasses' fields.

A field's metadata holds what its option needs beyond its name, type and default: the help text
and, where they differ from the defaults, the flag, choices, metavar or nargs. `option(...)` makes
such a field; `add_options` turns the named fields of a dataclass into argparse options, in the
order given (the order of `--help`); `config_kwargs` maps the parsed values back onto the fields.

A bool field whose flag starts with "--no-" is inverted: `--no-progress` sets `progress=False`.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

META = "cli"
CHECKPOINT_HELP = "checkpoint folder, or a shipped name: pusht, two_room, cube"


def option(default: Any = dataclasses.MISSING, help: str | None = None, *, default_factory: Any = dataclasses.MISSING,
           **argparse_kwargs: Any) -> Any:
    """A dataclass field carrying its command-line option (help, and flag/choices/metavar/nargs if needed)."""
    meta = {"help": help, **argparse_kwargs}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={META: meta})
    return dataclasses.field(default=default, metadata={META: meta})


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get(META, {}).get("flag", "--" + f.name.replace("_", "-"))


def _inverted(f: dataclasses.Field) -> bool:
    return _flag(f).startswith("--no-")


def add_options(parser: argparse.ArgumentParser | Any, cls: type, names: list[str] | tuple[str, ...]) -> None:
    """One argparse option per named field of dataclass `cls`, from its type, default and metadata."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        meta = {k: v for k, v in f.metadata.get(META, {}).items() if k != "flag"}
        flag, kind = _flag(f), hints[name]
        if kind is bool:
            parser.add_argument(flag, action="store_true", **meta)
            continue
        kwargs: dict[str, Any] = {"dest": name} if flag != "--" + name.replace("_", "-") else {}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
        scalar = _scalar(kind)
        if scalar is not None:
            kwargs["type"] = scalar
        parser.add_argument(flag, **kwargs, **meta)


def _scalar(kind: Any) -> type | None:
    """int or float for the option's `type` (also of `T | None` and `tuple[T, ...]`); None for strings."""
    args = [a for a in typing.get_args(kind) if a is not type(None) and a is not Ellipsis]
    base = args[0] if args else kind
    return base if base in (int, float) else None


def config_kwargs(cls: type, args: argparse.Namespace, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The named fields' values from parsed `args` (inverted flags flipped, lists made tuples)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for name in names:
        f = fields[name]
        if _inverted(f):
            out[name] = not getattr(args, _flag(f)[2:].replace("-", "_"))
            continue
        value = getattr(args, name)
        out[name] = tuple(value) if isinstance(value, list) else value
    return out
