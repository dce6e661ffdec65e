"""``Record``: ``to_dict`` / ``from_dict`` for the result dataclasses, driven by their fields and their types
(``collapsecheck.result`` and the sections other stages add to it)."""
from __future__ import annotations

import copy
import typing
from dataclasses import MISSING, fields
from typing import Union


class Record:
    """``to_dict`` / ``from_dict`` for a result dataclass, driven by its fields and their types."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.metadata.get("json", True)}

    @classmethod
    def from_dict(cls, data: dict):
        """The record a ``to_dict()`` dict describes. Raises ValueError on unknown or missing fields."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.metadata.get("json", True)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        missing = [f.name for f in fields(cls) if f.name in names and f.name not in data and _required(f)]
        if missing:
            raise ValueError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
        return cls(**{name: _typed(hints[name], data[name]) for name in names if name in data})


def _required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _plain(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return copy.deepcopy(value)
    return value


def _typed(hint, value):
    """``value`` (plain JSON) as the type ``hint`` names: records rebuilt, lists element by element."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(inner[0], value) if len(inner) == 1 else value
    if origin in (list, tuple):
        args = typing.get_args(hint)
        items = [_typed(args[0], v) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    return value
