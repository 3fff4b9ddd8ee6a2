"""TOML tables into frozen dataclasses: the one loader of run presets and training recipes.

    config = load_table(TrainConfig, "pipelines/train-shapes-tiny.toml", "fcclip")
    settings = from_dict(ModelSettings, {"batch_size": 2}, "preset.toml", "model")

A table is checked against its dataclass's type hints, so a typo or a wrong value in a file is
a `UserError` naming the file and the table instead of a crash deep inside a run: unknown keys,
a value of the wrong type, a scalar where a table belongs. Nested dataclass fields are nested
tables (`[fcclip.optim]`); TOML arrays become tuples for tuple fields; an integer is accepted
(as a float) where a float is declared. Keys left out keep the dataclass's defaults.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from streamseg.errors import UserError

T = TypeVar("T")


class _Mismatch(Exception):
    """A value does not fit a type hint (turned into a UserError naming the key)."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """A pipeline TOML file as nested dicts.

    Raises:
        UserError: a missing, unreadable or malformed file, naming it.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None


def load_table(cls: type[T], path: str | Path, table: str) -> T:
    """The `[table]` of a pipeline TOML file as a checked `cls` (see `from_dict`).

    Raises:
        UserError: as `read_toml`, a file without that table, or a table that does not fit.
    """
    data = read_toml(path)
    if table not in data:
        raise UserError(f"{path}: no [{table}] table")
    if not isinstance(data[table], Mapping):
        raise UserError(f"{path}: '{table}' must be a table")
    return from_dict(cls, data[table], str(path), table)


def from_dict(cls: type[T], data: Mapping[str, Any], source: str, table: str = "") -> T:
    """A `cls` (a dataclass) from a dict as read from TOML, nested dataclasses included.

    Args:
        cls: the dataclass; its fields' type hints decide how each value is checked.
        data: key -> value; keys left out keep their defaults.
        source: what the dict came from (a file name), first in every message.
        table: the dotted TOML table name of `data` ("fcclip.optim"), "" for the top level.

    Raises:
        UserError: "<source> [<table>]: unknown keys [...]", "...: '<key>' must be a table",
            "...: '<key>' must be <type>, got <value>".
    """
    where = f"{source} [{table}]" if table else source
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown} (known: {', '.join(hints)})")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        nested = f"{table}.{key}" if table else key
        if is_dataclass(hint) and not isinstance(value, hint):
            if not isinstance(value, Mapping):
                raise UserError(f"{where}: '{key}' must be a table")
            values[key] = from_dict(hint, value, source, nested)
            continue
        try:
            values[key] = _convert(value, hint)
        except _Mismatch:
            raise UserError(f"{where}: '{key}' must be {_describe(hint)}, got {value!r}") from None
    return cls(**values)


@cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint, for the fields `cls(...)` accepts, in field order."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in fields(cls) if f.init}


def _convert(value: Any, hint: Any) -> Any:
    """`value` checked against `hint` (tuples built from lists, ints widened to floats)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for option in typing.get_args(hint):
            try:
                return _convert(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is tuple or hint is tuple:
        return _convert_tuple(value, typing.get_args(hint))
    if origin is not None:  # dict[...] / list[...]: the container type only
        if not isinstance(value, origin):
            raise _Mismatch
        return value
    if is_dataclass(hint):
        if not isinstance(value, hint):
            raise _Mismatch
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is an int to Python, never to a config: `steps = true` is a mistake.
    if isinstance(hint, type) and (
        not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))
    ):
        raise _Mismatch
    return value


def _convert_tuple(value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A list or tuple as a tuple of `args` (`(X, ...)`: any length; `(X, Y)`: exactly two)."""
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(item, args[0]) for item in value)
    if not args:
        return tuple(value)
    if len(value) != len(args):
        raise _Mismatch
    return tuple(_convert(item, arg) for item, arg in zip(value, args, strict=True))


def _describe(hint: Any) -> str:
    """A type hint as a message names it: "int", "str | None", "a list of str"."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(option) for option in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))
