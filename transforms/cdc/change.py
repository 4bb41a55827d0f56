"""The one change record that every CDC step speaks.

A change, as the data of a `Record` (or a `Change`)::

    {"table": "inventory.customers",           # schema-qualified source table
     "key": {"id": 1001},                      # primary key columns and values
     "op": "upsert",                           # "upsert", "delete" or "truncate"
     "row": {"id": 1001, "email": "a@b.c"},    # the new row (None for delete and truncate)
     "sequence": [2147483648, 2147483720],     # orders the changes of one key (see below)
     "source_ts": "2026-11-25T10:00:00Z"}      # when the source committed it, if known

``sequence`` is a list of non-negative integers compared element by element: Postgres
``(commit_lsn, lsn)``, MySQL ``(binlog file number, position, row)``, Oracle ``(scn, rs_id,
ssn)``, Datastream ``sort_keys``. A change is applied only if its sequence is greater than the
last one applied for its (table, key). `sequence_key` turns a sequence into a fixed-width string
that sorts the same way, for systems that compare strings (BigQuery MERGE, Redis scripts).

Keys are compared in one canonical form (`canonical_key`, `key_text`): a key value that is an
integral number (``1``, ``1.0``, ``1e3``) or a string that is the decimal text of an integer
(``"1"``, ``"-7"``, up to 4000 digits; not ``"01"``, ``"+1"``, ``" 1"`` or ``"1.0"``) becomes
that integer, so ``1``, ``1.0`` and ``"1"`` are one key, written ``1``. Booleans stay
booleans: ``true`` is not ``1`` and not ``"true"``. Other strings and finite non-integral
numbers stay as they are (``1.5`` and ``"1.5"`` are two keys). A null key value is a missing
key (``cdc_no_key``); a list, an object, NaN or an infinity cannot be a key (``cdc_bad_key``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

import msgspec

__all__ = [
    "OPS",
    "Change",
    "KeyValueError",
    "canonical_key",
    "check_sequence",
    "is_canonical",
    "json_key_id",
    "key_id",
    "key_text",
    "key_value",
    "sequence_key",
]

OPS = ("upsert", "delete", "truncate")
_WIDTH = 20  # digits of the largest unsigned 64-bit integer
_BOUND = 10**_WIDTH  # the smallest integer wider than _WIDTH digits
_INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]{0,3999}")  # str(int) of an integer, bounded


def sequence_key(sequence: list[int] | tuple[int, ...]) -> str:
    """Returns a string that sorts as ``sequence`` does.

    ``[5, 12]`` gives ``"00000000000000000005.00000000000000000012"``.

    Raises:
        ValueError: a part is negative, not an integer, or wider than 20 digits.
    """
    parts = []
    for part in sequence:
        if not isinstance(part, int) or isinstance(part, bool) or part < 0:
            raise ValueError(f"sequence parts must be non-negative integers, got {part!r}")
        text = str(part)
        if len(text) > _WIDTH:
            raise ValueError(f"sequence part {part} is wider than {_WIDTH} digits")
        parts.append(text.zfill(_WIDTH))
    return ".".join(parts)


def check_sequence(sequence: tuple[int, ...] | list[int]) -> None:
    """Raises what `sequence_key` raises for ``sequence``, without building its string."""
    for part in sequence:
        # Plain integers in range are the usual case; anything else takes the full check.
        if type(part) is not int or not 0 <= part < _BOUND:
            sequence_key(sequence)
            return


class KeyValueError(ValueError):
    """A primary key value that cannot be a key.

    Attributes:
        missing: the value is null (the key is missing, not malformed).
    """

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def key_value(value: Any) -> int | float | str | bool:
    """Returns the canonical form of one key value (the rule is in the module docstring).

    ``1``, ``1.0`` and ``"1"`` give ``1``; ``True`` gives ``True``; ``"01"`` gives ``"01"``;
    ``1.5`` gives ``1.5``.

    Raises:
        KeyValueError: the value is null (``missing``), or a list, object, NaN, infinity or
            any other kind that JSON has no key for.
    """
    kind = type(value)
    if kind is int or kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is str:
        if value[:1].isdigit() or value[:1] == "-":
            if value.isascii() and _INTEGER_TEXT.fullmatch(value):
                return int(value)
        return value  # type: ignore[no-any-return]
    if kind is float:
        if not math.isfinite(value):
            raise KeyValueError(f"key value {value!r} is not a number a key can hold")
        return int(value) if value.is_integer() else value  # type: ignore[no-any-return]
    if value is None:
        raise KeyValueError("key value is null", missing=True)
    what = "an object" if kind is dict else "a list" if kind is list else f"a {kind.__name__}"
    raise KeyValueError(f"key value {_preview(value)} is {what}, which cannot be a key")


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_canonical(key: Any) -> bool:
    """Whether ``key`` is a dict whose values are already canonical plain integers or text.

    Such a key is its own `canonical_key` (the usual case); ``False`` says nothing about any
    other key.
    """
    if type(key) is not dict:
        return False
    for value in key.values():
        kind = type(value)
        if kind is not int and not (kind is str and not (value[:1].isdigit() or value[:1] == "-")):
            return False
    return True


def canonical_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``key`` with every value in canonical form (`key_value`).

    ``{"id": "1"}`` and ``{"id": 1.0}`` give ``{"id": 1}``.

    Raises:
        KeyValueError: a value cannot be a key (its message names the column).
    """
    canonical = {}
    for column, value in key.items():
        try:
            canonical[column] = key_value(value)
        except KeyValueError as exc:
            raise KeyValueError(f"column {column!r}: {exc}", exc.missing) from None
    return canonical


def _plain_key_text(key: dict[str, Any]) -> str | None:
    """`key_text` of a key whose columns are text and values text or plain integers.

    Returns ``None`` for any other key, which `json.dumps` then writes (the same text it would
    write for these keys: ASCII-escaped strings, integers in decimal, columns sorted).
    """
    pairs = []  # (column, its text in the key's JSON): sorted by the column, as json.dumps does
    for column, value in key.items():
        if type(column) is not str:
            return None
        if type(value) is int:
            text = str(value)
        elif type(value) is str and not (value[:1].isdigit() or value[:1] == "-"):
            text = encode_basestring_ascii(value)
        else:
            return None  # a number-like string or another kind: canonical form first
        pairs.append((column, f"{encode_basestring_ascii(column)}:{text}"))
    if len(pairs) == 1:
        return "{" + pairs[0][1] + "}"
    pairs.sort()
    return "{" + ",".join(pair for _, pair in pairs) + "}"


def _json_key_text(key: Mapping[str, Any]) -> str:
    return json.dumps(canonical_key(key), sort_keys=True, separators=(",", ":"))


def key_text(key: Mapping[str, Any]) -> str:
    """Returns the canonical text of a primary key: compact JSON of its canonical values.

    Columns are sorted and strings ASCII-escaped: ``{"id": "1"}``, ``{"id": 1.0}`` and
    ``{"id": 1}`` all give ``{"id":1}``; ``{"id": True}`` gives ``{"id":true}``. Every CDC step
    and sink that compares or groups keys goes through this (or `canonical_key`).

    Raises:
        KeyValueError: a value cannot be a key.
    """
    text = _plain_key_text(key) if type(key) is dict else None
    return _json_key_text(key) if text is None else text


def json_key_id(table: str, key: dict[str, Any]) -> str:
    """`key_id` written by `json.dumps` alone (the general path, and the reference in tests)."""
    return f"{table}|{_json_key_text(key)}"


def key_id(table: str, key: dict[str, Any]) -> str:
    """Returns a stable text id of a (table, primary key), e.g. ``inventory.customers|{"id":1}``.

    Raises:
        KeyValueError: a key value cannot be a key.
    """
    return f"{table}|{key_text(key)}"


class Change(msgspec.Struct, frozen=True, gc=False):
    """A normalized change (see the module docstring for the dict form).

    A frozen msgspec ``Struct`` that the cyclic garbage collector does not track (it holds
    only its fields, which never refer back to it): made once per change read, it costs a
    fifth of a frozen dataclass.

    Attributes:
        table: the schema-qualified source table.
        key: the primary key columns and values, in canonical form (`canonical_key`: a
            change built with ``{"id": "1"}`` holds ``{"id": 1}``).
        op: ``upsert``, ``delete`` or ``truncate`` (``key`` is empty for truncate).
        row: the new row for an upsert, else ``None``.
        sequence: orders the changes of one key.
        source_ts: when the source committed the change (ISO-8601 UTC), if known.
    """

    table: str
    key: dict[str, Any]
    op: str
    row: dict[str, Any] | None
    sequence: tuple[int, ...]
    source_ts: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if not self.table:
            raise ValueError("a change needs its table")
        if self.op == "upsert" and self.row is None:
            raise ValueError("an upsert needs its row")
        if self.op != "truncate" and not self.key:
            raise ValueError("an upsert or delete needs its primary key")
        if not is_canonical(self.key):
            msgspec.structs.force_setattr(self, "key", canonical_key(self.key))
        check_sequence(self.sequence)

    def to_dict(self) -> dict[str, Any]:
        """Returns the dict form (the data of a `Record`)."""
        return {
            "table": self.table,
            "key": self.key,
            "op": self.op,
            "row": self.row,
            "sequence": list(self.sequence),
            "source_ts": self.source_ts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        """Builds a change from its dict form; raises `ValueError` when it is not one."""
        return cls(
            table=data["table"],
            key=dict(data["key"]),
            op=data["op"],
            row=data.get("row"),
            sequence=tuple(data["sequence"]),
            source_ts=data.get("source_ts"),
        )
