"""Command-line options declared once, on the config dataclasses' fields.

A field's metadata holds what its option needs beyond its name, type and default: the help text
and, where they differ from the defaults, the flag, choices, metavar or nargs. `option(...)` makes
such a field; `add_options` turns the named fields of a dataclass (all of them by default) into
argparse options, in the order given (the order of `--help`); `config_kwargs` maps the parsed
values back onto the fields, `from_args` makes the dataclass of them. A flag without a leading
"-" is a positional argument.

A bool field whose flag starts with "--no-" is inverted: `--no-progress` sets `progress=False`.
A numeric field may declare its range (`low`/`high` inclusive, `above`/`below` exclusive):
`check_ranges` then refuses a value outside it, from a flag, JSON or the Python API alike.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

META = "cli"
RANGE_KEYS = ("low", "high", "above", "below")  # range bounds: checked by `check_ranges`, not argparse
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


def _names(cls: type, names: list[str] | tuple[str, ...] | None) -> list[str] | tuple[str, ...]:
    return [f.name for f in dataclasses.fields(cls)] if names is None else names


def add_options(parser: argparse.ArgumentParser | Any, cls: type, names: list[str] | tuple[str, ...] | None = None
                ) -> None:
    """One argparse option per named field of dataclass `cls`, from its type, default and metadata."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in _names(cls, names):
        f = fields[name]
        meta = {k: v for k, v in f.metadata.get(META, {}).items() if k != "flag" and k not in RANGE_KEYS}
        flag, kind = _flag(f), hints[name]
        if kind is bool:
            parser.add_argument(flag, action="store_true", **meta)
            continue
        renamed = flag.startswith("-") and flag != "--" + name.replace("_", "-")  # a positional's dest is its flag
        kwargs: dict[str, Any] = {"dest": name} if renamed else {}
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


def config_kwargs(cls: type, args: argparse.Namespace, names: list[str] | tuple[str, ...] | None = None
                  ) -> dict[str, Any]:
    """The named fields' values from parsed `args` (inverted flags flipped, lists made tuples)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for name in _names(cls, names):
        f = fields[name]
        if _inverted(f):
            out[name] = not getattr(args, _flag(f)[2:].replace("-", "_"))
            continue
        value = getattr(args, name)
        out[name] = tuple(value) if isinstance(value, list) else value
    return out


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """Dataclass `cls` of its fields' parsed values (every field must have its option)."""
    return cls(**config_kwargs(cls, args))


def _range_text(meta: dict[str, Any]) -> str:
    parts = [f"{op} {meta[k]:g}" for k, op in (("low", ">="), ("above", ">"), ("high", "<="), ("below", "<"))
             if k in meta]
    return " and ".join(parts)


def _in_range(x: Any, meta: dict[str, Any], whole: bool) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (whole and not isinstance(x, int)):
        return False
    if not math.isfinite(x):
        return False
    return (x >= meta.get("low", -math.inf) and x <= meta.get("high", math.inf)
            and x > meta.get("above", -math.inf) and x < meta.get("below", math.inf))


def check_ranges(cfg: Any) -> None:
    """ValueError naming the option of the first field outside its declared range (a None default
    stays allowed: it means "chosen later"); tuples are checked element by element."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        meta = f.metadata.get(META, {})
        if not any(k in meta for k in RANGE_KEYS):
            continue
        value = getattr(cfg, f.name)
        if value is None and f.default is None:
            continue
        whole = _scalar(hints[f.name]) is int
        for x in value if isinstance(value, tuple) else (value,):
            if not _in_range(x, meta, whole):
                kind = "an int" if whole else "a finite number"
                raise ValueError(f"{_flag(f)}: expected {kind} {_range_text(meta)}, got {value!r}")
