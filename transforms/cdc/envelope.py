"""What the Debezium and Datastream readers share: failure reasons, keys, positions, times.

A CDC envelope that cannot become a `Change` raises one of the `CdcError` subclasses below, whose
``reason`` is the dead-letter reason. An envelope left out on purpose (a tombstone, a Debezium
``m`` message) is read as `Dropped`, whose ``reason`` names the ``dropped.*`` counter.

Primary keys come, in this order, from the columns declared for the table (`parse_key_columns`:
the table's own entry, else the default for every table), from the Kafka message key, or from the
envelope's own list of key columns (Datastream ``primary_keys``). Their values take the canonical
form of `transforms.cdc.change.canonical_key`; a null value is ``cdc_no_key``, a value that
cannot be a key (a list, an object, NaN) ``cdc_bad_key``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from transforms.cdc.change import Change, KeyValueError
from transforms.errors import RecordError
from transforms.event_time import EpochUnit, format_millis, format_timestamp, parse_timestamp

__all__ = [
    "CDC_MESSAGE",
    "TOMBSTONE",
    "ALL_TABLES",
    "BadChange",
    "BadKey",
    "CdcError",
    "Dropped",
    "KeyChange",
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
# The entry of `parse_key_columns` that holds the key columns of every table not named.
ALL_TABLES = "*"

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


class BadKey(CdcError):
    """A primary key value cannot be a key: a list, an object, NaN or an infinity."""

    reason = "cdc_bad_key"


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


class KeyChange(NamedTuple):
    """An update that changes its row's primary key, read as two changes of one sequence.

    Iterating gives the delete of the old key, then the upsert of the new one; each is an
    ordinary change of its own key, so every later step and sink applies them as it applies
    any other (no ghost row of the old key is left behind).
    """

    delete: Change
    upsert: Change


def key_change(upsert: Change, before: Mapping[str, Any] | None) -> Change | KeyChange:
    """Returns ``upsert``, or a `KeyChange` when its row's old image has another key.

    Args:
        upsert: the change read from the new row.
        before: the row before the update, if the envelope carries it. The old key is read
            from the new key's columns; when one of them is missing or null there (an old
            image without the key columns), nothing is known of a key change.

    Raises:
        BadKey: an old key value cannot be a key.
    """
    if not before or upsert.op != "upsert":
        return upsert
    old = {column: before.get(column) for column in upsert.key}
    if None in old.values():
        return upsert
    delete = build_change(upsert.table, old, "delete", None, upsert.sequence, upsert.source_ts)
    return upsert if delete.key == upsert.key else KeyChange(delete, upsert)


def parse_key_columns(spec: str) -> dict[str, tuple[str, ...]]:
    """Reads declared primary keys: ``"id"`` or ``"inventory.customers=id;inventory.orders=..."``.

    Entries are separated by ``;``. A qualified entry ``table=column[,column...]`` names the key
    columns of one table. A bare entry ``column[,column...]`` (or ``*=column...``) names the key
    columns of every table that no qualified entry names: ``id`` means every table's key is
    ``id``, and ``id;inventory.orders=order_id,line`` means ``id`` for every table but
    ``inventory.orders``. Declared columns win over the message key and Datastream's
    ``primary_keys``, so with a default they are used for every table.

    Returns:
        ``{"inventory.customers": ("id",), "inventory.orders": ("order_id", "line")}``, the
        default under `ALL_TABLES` (``{"*": ("id",)}`` for ``"id"``); a blank spec gives ``{}``.

    Raises:
        ValueError: an empty table or column name, a column name with ``=``, a bare entry that
            looks like a table (``inventory.customers``, with a dot), a table or the default
            declared twice; the message says how to write it.
    """
    declared: dict[str, tuple[str, ...]] = {}
    example = "e.g. id, or inventory.customers=id;inventory.orders=order_id,line"
    for entry in filter(None, (part.strip() for part in spec.split(";"))):
        bare = "=" not in entry
        table, _, columns = (ALL_TABLES, "", entry) if bare else entry.partition("=")
        table = table.strip()
        names = tuple(name.strip() for name in columns.split(","))
        if not table or not all(names) or any("=" in name for name in names):
            raise ValueError(
                f"key columns entry {entry!r}: use table=column[,column...], {example}"
            )
        if bare and "." in entry:
            # A table and its columns with another separator ("s.t:id", "s.t id"), or none.
            other = re.fullmatch(r"([^:\s]+)\s*[:\s]\s*(\S.*)", entry)
            hint = f"{other[1]}={other[2]}" if other else f"{entry}=COLUMN[,COLUMN...]"
            raise ValueError(
                f"key columns entry {entry!r} names no column: a bare entry is the key columns "
                f"of every table; for one table write {hint}"
            )
        if table in declared:
            what = "every table" if table == ALL_TABLES else f"table {table!r}"
            raise ValueError(f"the key columns of {what} are declared twice in {spec!r}")
        declared[table] = names
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
        key_columns: declared primary key columns per schema-qualified table, and under
            `ALL_TABLES` those of every table not named; they win over the message key and the
            envelope's own key columns.
        table: the table of envelopes that do not name theirs, if any.
    """

    key_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    table: str | None = None

    def table_name(self, qualifier: Any, name: Any) -> str:
        """Returns ``qualifier.name`` (schema or database, then table), or the configured table.

        Raises:
            NoTable: the envelope has no table name and none is configured.
        """
        for part, what in ((qualifier, "schema or database"), (name, "table")):
            if part is not None and not isinstance(part, str):
                raise BadChange(f"the envelope's {what} name {part!r} is not text")
        if name:
            return f"{qualifier}.{name}" if qualifier else name
        if self.table:
            return self.table
        raise NoTable(
            "the envelope names no table (its source block has no table; a library user can "
            "give NormalizeChanges a table= for such envelopes)"
        )

    def declared(self, table: str) -> tuple[str, ...] | None:
        """The key columns declared for ``table`` (its own, else every table's), if any."""
        columns = self.key_columns.get(table)
        return self.key_columns.get(ALL_TABLES) if columns is None else columns

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
        declared = self.declared(table)
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
        declared = self.declared(table)
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
    if type(value) is int and unit == "ms":  # the usual case, in integers
        return format_millis(value)
    return format_timestamp(parse_timestamp(value, unit))


def build_change(
    table: str,
    key: dict[str, Any],
    op: str,
    row: dict[str, Any] | None,
    sequence: tuple[int, ...],
    source_ts: str | None,
) -> Change:
    """Returns the `Change`, its key in canonical form.

    Raises:
        NoKey: a key value is null.
        BadKey: a key value cannot be a key (a list, an object, NaN...).
        BadChange: the parts do not make a change.
    """
    try:
        return Change(table, key, op, row, sequence, source_ts)
    except KeyValueError as exc:
        raise (NoKey if exc.missing else BadKey)(f"{table}: {exc}") from None
    except ValueError as exc:
        raise BadChange(f"{table}: {exc}") from None
