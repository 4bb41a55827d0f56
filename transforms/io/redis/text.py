"""How record values become Redis text, and key templates over record fields.

Shared by the Redis sink (`transforms.io.redis.sink`), the Redis lookups of
`transforms.enrich.base` and the Kafka sink's keys.
"""

from __future__ import annotations

import base64
import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transforms.errors import SinkRejected

__all__ = ["KeyTemplate", "to_json", "to_text"]


def _json_default(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def to_json(value: Any) -> str:
    """Returns ``value`` as compact JSON with sorted keys; bytes become base64 strings.

    ``{"b": 1, "a": b"hi"}`` gives ``{"a":"aGk=","b":1}``.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def to_text(value: Any) -> str:
    """Returns a field value as Redis text: strings as they are, anything else as JSON.

    ``"a"`` gives ``a``, ``3`` gives ``3``, ``2.5`` gives ``2.5``, ``True`` gives ``true``,
    ``{"x": [1]}`` gives ``{"x":[1]}``, ``b"hi"`` gives ``aGk=``.
    """
    kind = type(value)
    if kind is str:
        return value
    # What json.dumps writes for plain ints and finite floats (it spells NaN and Infinity).
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return _json_default(value)
    return to_json(value)


@dataclass(frozen=True)
class KeyTemplate:
    """A key (or channel, or member) made of literal text and record fields.

    Attributes:
        text: the template as written, e.g. ``metrics:{endpoint}:{window_start}``.
        parts: ``(literal, field name or None)`` pairs, in order.

    """

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parses ``text``; raises `ValueError` for unbalanced braces or a bad field name."""
        try:
            pieces = list(string.Formatter().parse(text))
        except ValueError as error:
            raise ValueError(f"template {text!r}: {error}") from None
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in pieces:
            if name is not None and not name.strip():
                raise ValueError(f"template {text!r}: empty field name between braces")
            if spec or conversion:
                raise ValueError(
                    f"template {text!r}: {{{name}}} must be a plain field name, without "
                    "'!' conversions or ':' formats"
                )
            parts.append((literal, name))
        if not "".join(literal + (name or "") for literal, name in parts):
            raise ValueError("template is empty")
        return cls(text, tuple(parts))

    @property
    def fields(self) -> tuple[str, ...]:
        """The record fields the template reads."""
        return tuple(name for _, name in self.parts if name is not None)

    def render(self, data: Mapping[str, Any]) -> str:
        """Returns the template filled in from ``data`` (values as `to_text`).

        Raises:
            SinkRejected: a field is missing from ``data`` or is ``None``.

        """
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                value = data.get(name)
                if value is None:
                    state = "null" if name in data else "missing"
                    raise SinkRejected(
                        f"template {self.text!r}: field {name!r} is {state} in the record"
                    )
                out.append(to_text(value))
        return "".join(out)
