"""Turn plain YAML data into typed dataclasses, with one-line errors that name the key.

Config classes declare their fields with type hints; constraints go in field metadata
(`min`, `max`, `choices`). Unknown keys fail loudly and suggest the nearest known key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

from benchmark.common.errors import InputError


def parse(cls, data: Any, where: str):
    """Build dataclass `cls` from a mapping; `where` is the dotted key path used in messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(where or "suite", f"expected a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if not isinstance(key, str):
            raise InputError(where or "suite", f"keys must be strings, got {_describe(key)}")
        if key not in fields:
            raise InputError(_join(where, key), "unknown key" + suggest(key, fields))
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in data:
            values[name] = check_value(hints[name], data[name], key, f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputError(key, "required key is missing")
    return cls(**values)


def check_value(hint, value: Any, where: str, meta: typing.Mapping = types.MappingProxyType({})):
    """Check `value` against type `hint` and the constraints in `meta`; return it converted."""
    value = _convert(hint, value, where)
    if value is None:
        return value
    if "choices" in meta and value not in meta["choices"]:
        raise InputError(
            where,
            f"must be one of {', '.join(map(str, meta['choices']))}; got {value!r}"
            + suggest(str(value), meta["choices"]),
        )
    if "min" in meta and isinstance(value, (int, float)) and value < meta["min"]:
        raise InputError(where, f"must be at least {meta['min']}, got {value}")
    if "max" in meta and isinstance(value, (int, float)) and value > meta["max"]:
        raise InputError(where, f"must be at most {meta['max']}, got {value}")
    if meta.get("nonempty") and hasattr(value, "__len__") and len(value) == 0:
        raise InputError(where, "must not be empty")
    return value


def suggest(word: str, known) -> str:
    match = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _convert(hint, value, where):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where)
            except InputError as e:
                if e.where != where:  # the value has this option's shape; a part of it is wrong: name that part
                    raise
                errors.append(e.what)
        raise InputError(where, " or ".join(dict.fromkeys(errors)))
    if value is None:
        raise InputError(where, f"expected {_name(hint)}, got null")
    if origin is Literal:
        if value not in args:
            raise InputError(
                where, f"must be one of {', '.join(map(str, args))}; got {value!r}" + suggest(str(value), args)
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(where, f"expected a list, got {_describe(value)}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(where, f"expected a mapping, got {_describe(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(where, f"keys must be strings, got {_describe(k)}")
            out[k] = _convert(args[1], v, _join(where, k))
        return out
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(where, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(where, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        # YAML 1.1 reads `2e-5` (no dot) as a string; accept it, since users write it that way.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise InputError(where, f"expected a number, got {_describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(where, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise InputError(where, f"expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(where, f"expected a string, got {_describe(value)}")
        if "\0" in value:  # no name or path may hold one; the OS refuses it with an exception
            raise InputError(where, f"contains a NUL character: {_describe(value)}")
        return value
    raise TypeError(f"schema cannot check type {hint!r}")  # a bug in a config class, not user input


def _name(hint) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, "a value")


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
