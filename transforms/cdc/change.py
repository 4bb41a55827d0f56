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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["OPS", "Change", "check_sequence", "json_key_id", "key_id", "sequence_key"]

OPS = ("upsert", "delete", "truncate")
_WIDTH = 20  # digits of the largest unsigned 64-bit integer
_BOUND = 10**_WIDTH  # the smallest integer wider than _WIDTH digits


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


def _plain_key_text(key: dict[str, Any]) -> str | None:
    """`key_id`'s JSON of a key whose columns are text and values text or plain integers.

    Returns ``None`` for any other key, which `json.dumps` then writes (the same text it would
    write for these keys: ASCII-escaped strings, integers in decimal, columns sorted).
    """
    pairs = []
    for column, value in key.items():
        if type(column) is not str:
            return None
        if type(value) is int:
            pairs.append((column, str(value)))
        elif type(value) is str:
            pairs.append((column, encode_basestring_ascii(value)))
        else:
            return None
    if len(pairs) > 1:
        pairs.sort()
    parts = [f"{encode_basestring_ascii(column)}:{text}" for column, text in pairs]
    return "{" + ",".join(parts) + "}"


def json_key_id(table: str, key: dict[str, Any]) -> str:
    """`key_id` written by `json.dumps` alone (the general path, and the reference in tests)."""
    return f"{table}|{json.dumps(key, sort_keys=True, separators=(',', ':'), default=str)}"


def key_id(table: str, key: dict[str, Any]) -> str:
    """Returns a stable text id of a (table, primary key), e.g. ``inventory.customers|{"id":1}``."""
    text = _plain_key_text(key)
    return json_key_id(table, key) if text is None else f"{table}|{text}"


@dataclass(frozen=True)
class Change:
    """A normalized change (see the module docstring for the dict form).

    Attributes:
        table: the schema-qualified source table.
        key: the primary key columns and values.
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
