"""What the Debezium and Datastream readers share: failure reasons, keys, positions, times.

A CDC envelope that cannot become a `Change` raises one of the `CdcError` subclasses below, whose
``reason`` is the dead-letter reason. An envelope left out on purpose (a tombstone, a Debezium
``m`` message) is read as `Dropped`, whose ``reason`` names the ``dropped.*`` counter.

Primary keys come, in this order, from the columns declared for the table (`parse_key_columns`),
from the Kafka message key, or from the envelope's own list of key columns (Datastream
``primary_keys``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from transforms.cdc.change import Change
from transforms.errors import RecordError
from transforms.event_time import EpochUnit, format_timestamp, parse_timestamp

__all__ = [
    "CDC_MESSAGE",
    "TOMBSTONE",
    "BadChange",
    "CdcError",
    "Dropped",
    "KeyRules",
    "NoKey",
    "NoPosition",
    "NoTable",
    "UnknownFormat",
    "UnknownOp",
    "build_change",
    "parse_key_columns",
    "position_part",
    "source_time",
]

TOMBSTONE = "tombstone"
CDC_MESSAGE = "cdc_message"

_DECIMAL = re.compile(r"[0-9]+")
_PG_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_NUMBERED_FILE = re.compile(r"[A-Za-z][\w-]*\.([0-9]+)")  # mysql-bin.000003


class CdcError(RecordError):
    """A CDC envelope that cannot become a change."""

    reason = "cdc_error"


class UnknownFormat(CdcError):
    """The record is neither a Debezium envelope nor a Datastream event (as configured)."""

    reason = "cdc_unknown_format"


class UnknownOp(CdcError):
    """The envelope's operation (Debezium ``op``, Datastream ``change_type``) is unknown."""

    reason = "cdc_unknown_op"


class NoKey(CdcError):
    """The change's primary key cannot be found."""

    reason = "cdc_no_key"


class NoPosition(CdcError):
    """The envelope has no usable source position to order it by."""

    reason = "cdc_no_position"


class NoTable(CdcError):
    """The envelope does not name its table and no table was configured."""

    reason = "cdc_no_table"


class BadChange(CdcError):
    """The envelope is malformed (an insert without its row, a key that is not an object...)."""

    reason = "cdc_bad_change"


class Dropped(NamedTuple):
    """An envelope left out on purpose; ``reason`` is ``tombstone`` or ``cdc_message``."""

    reason: str


def parse_key_columns(spec: str) -> dict[str, tuple[str, ...]]:
    """Reads declared primary keys: ``"inventory.customers=id;inventory.orders=order_id,line"``.

    Returns:
        ``{"inventory.customers": ("id",), "inventory.orders": ("order_id", "line")}``; an
        empty or blank spec gives ``{}``.

    Raises:
        ValueError: an entry is not ``table=column[,column...]``, or a table is declared twice.
    """
    declared: dict[str, tuple[str, ...]] = {}
    for entry in filter(None, (part.strip() for part in spec.split(";"))):
        table, sep, columns = entry.partition("=")
        names = tuple(name.strip() for name in columns.split(","))
        if not sep or not table.strip() or not all(names):
            raise ValueError(
                f"key columns entry {entry!r}: use table=column[,column...], e.g. "
                "inventory.customers=id;inventory.orders=order_id,line"
            )
        if table.strip() in declared:
            raise ValueError(f"key columns of table {table.strip()!r} are declared twice")
        declared[table.strip()] = names
    return declared


def _pick(table: str, columns: Sequence[str], values: Mapping[str, Any], where: str) -> dict:
    key = {}
    for column in columns:
        value = values.get(column)
        if value is None:
            raise NoKey(f"{table}: key column {column!r} is missing or null in {where}")
        key[column] = value
    return key


def _message_key(text: str | None) -> dict[str, Any] | None:
    """Reads a Kafka message key written by Debezium's JSON converter, possibly schema-wrapped."""
    if not text:
        return None
    try:
        key = json.loads(text)
    except ValueError:
        return None
    if isinstance(key, dict) and set(key) == {"schema", "payload"}:
        key = key["payload"]
    return key if isinstance(key, dict) and key else None


@dataclass(frozen=True)
class KeyRules:
    """How tables and primary keys are found for changes.

    Attributes:
        key_columns: declared primary key columns per schema-qualified table; they win over
            the message key and the envelope's own key columns.
        table: the table of envelopes that do not name theirs, if any.
    """

    key_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    table: str | None = None

    def table_name(self, qualifier: Any, name: Any) -> str:
        """Returns ``qualifier.name`` (schema or database, then table), or the configured table.

        Raises:
            NoTable: the envelope has no table name and none is configured.
        """
        if name:
            return f"{qualifier}.{name}" if qualifier else str(name)
        if self.table:
            return self.table
        raise NoTable("the envelope names no table: configure one")

    def key(
        self,
        table: str,
        image: Mapping[str, Any] | None,
        message_key: str | None,
        primary_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Returns the primary key of a change.

        Args:
            table: the change's table.
            image: the row the key is read from (the new row, or the old one for a delete).
            message_key: the Kafka message key as text, if any.
            primary_keys: the key columns the envelope names (Datastream), if any.

        Raises:
            NoKey: no rule finds the key, or a key column is missing or null.
        """
        declared = self.key_columns.get(table)
        if declared and not message_key and image:
            # Declared columns read from the row alone: `_pick` of the general path below
            # gives the same key whenever every column is there and not null.
            key = {column: image.get(column) for column in declared}
            if None not in key.values():
                return key
        return self.key_by_rules(table, image, message_key, primary_keys)

    def key_by_rules(
        self,
        table: str,
        image: Mapping[str, Any] | None,
        message_key: str | None,
        primary_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """`key` by the general rules alone, without its shortcut for declared columns."""
        declared = self.key_columns.get(table)
        from_message = _message_key(message_key)
        present = {name: value for name, value in (image or {}).items() if value is not None}
        values = {**(from_message or {}), **present}
        if declared:
            return _pick(table, declared, values, "the row and the message key")
        if from_message:
            return from_message
        if primary_keys:
            return _pick(table, primary_keys, values, "the row")
        raise NoKey(
            f"{table}: no key columns declared for it, no message key and no primary_keys in "
            "the envelope: declare them, e.g. --key_columns=" + table + "=id"
        )


def position_part(value: Any, what: str) -> int:
    """Converts one part of a source position into a non-negative integer, deterministically.

    Integers stay as they are; strings are read as: empty -> 0 (Datastream backfill events),
    decimal digits -> their value, a Postgres LSN ``"16/B374D848"`` -> ``0x16 << 32 | 0xB374D848``,
    a numbered file such as ``"mysql-bin.000003"`` -> 3 (the number after the last dot).

    Raises:
        NoPosition: the value is none of these (negative, fractional, other text...).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        if value.isdigit() and value.isascii():  # what _DECIMAL matches, without the regex
            return int(value)
        text = value.strip()
        if not text:
            return 0
        if _DECIMAL.fullmatch(text):
            return int(text)
        lsn = _PG_LSN.fullmatch(text)
        if lsn:
            return int(lsn[1], 16) << 32 | int(lsn[2], 16)
        numbered = _NUMBERED_FILE.fullmatch(text)
        if numbered:
            return int(numbered[1])
    raise NoPosition(f"{what} {value!r} is not a position (an integer, LSN or numbered file)")


def source_time(value: Any, unit: EpochUnit = "ms") -> str | None:
    """Returns when the source committed a change as ISO-8601 UTC, or ``None`` when unknown.

    Raises:
        BadTimestamp: the value is there but is not a time.
    """
    if value is None:
        return None
    return format_timestamp(parse_timestamp(value, unit))


def build_change(
    table: str,
    key: dict[str, Any],
    op: str,
    row: dict[str, Any] | None,
    sequence: tuple[int, ...],
    source_ts: str | None,
) -> Change:
    """Returns the `Change`; raises `BadChange` when its parts do not make one."""
    try:
        return Change(table, key, op, row, sequence, source_ts)
    except ValueError as exc:
        raise BadChange(f"{table}: {exc}") from None
