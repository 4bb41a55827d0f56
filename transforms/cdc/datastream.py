"""Google Datastream events (JSON output) into `Change`s.

A MySQL event (Postgres events name ``schema`` instead of ``database``, carry ``lsn`` and
``tx_id`` instead of the binlog file and position, and sort by ``[source_timestamp, "<lsn>"]``)::

    {"stream_name": "projects/p/locations/l/streams/s", "read_method": "mysql-cdc-binlog",
     "object": "inventory_customers", "uuid": "6f2d...", "read_timestamp": 1700000000456,
     "source_timestamp": 1700000000000,
     "sort_keys": [1700000000000, "mysql-bin.000007", 191435],
     "source_metadata": {"database": "inventory", "table": "customers",
                         "change_type": "INSERT", "is_deleted": false, "primary_keys": ["id"],
                         "log_file": "mysql-bin.000007", "log_position": 191435},
     "payload": {"id": 1001, "email": "anne@example.com"}}

Operation: ``is_deleted`` or a ``DELETE`` / ``UPDATE-DELETE`` change type is a delete (the
payload is the deleted row, the key is read from it); ``INSERT``, ``UPDATE`` and
``UPDATE-INSERT`` are upserts of the payload (backfill reads are ``INSERT``).

Sequence: the ``sort_keys``, each part made an integer by
`transforms.cdc.envelope.position_part` (``""`` of backfill events -> 0, ``"mysql-bin.000007"``
-> 7, a Postgres LSN ``"16/B374D848"`` -> its 64-bit value), followed by one more part: 0 for
``UPDATE-DELETE``, 1 otherwise. When Datastream writes an update as ``UPDATE-DELETE`` then
``UPDATE-INSERT`` at one position, the new row thus follows the old one instead of being taken
for its duplicate. Oracle ``rs_id`` values other than ``""`` are not positions this reads.
"""

from __future__ import annotations

from typing import Any

from transforms.cdc.change import Change
from transforms.cdc.envelope import (
    BadChange,
    KeyRules,
    NoPosition,
    UnknownOp,
    build_change,
    position_part,
    source_time,
)

__all__ = ["is_datastream", "read_datastream"]

_UPSERTS = frozenset({"INSERT", "UPDATE", "UPDATE-INSERT"})
_DELETES = frozenset({"DELETE", "UPDATE-DELETE"})


def is_datastream(data: dict[str, Any]) -> bool:
    """Whether a parsed record is a Datastream event."""
    return isinstance(data.get("source_metadata"), dict) and "sort_keys" in data


def read_datastream(data: dict[str, Any], message_key: str | None, rules: KeyRules) -> Change:
    """Reads a Datastream event.

    Args:
        data: the parsed event.
        message_key: the Kafka message key as text, if the events went through Kafka.
        rules: where tables and keys come from.

    Raises:
        CdcError: the event is not a change this module can read.
    """
    metadata = data["source_metadata"]
    change_type = str(metadata.get("change_type") or "").upper()
    deleted = metadata.get("is_deleted")
    if deleted is not None and not isinstance(deleted, bool):
        raise BadChange(f"Datastream is_deleted {deleted!r}: expected true, false or null")
    if deleted is True or change_type in _DELETES:
        kind = "delete"
    elif change_type in _UPSERTS:
        kind = "upsert"
    else:
        raise UnknownOp(f"Datastream change_type {metadata.get('change_type')!r}")
    table = rules.table_name(
        metadata.get("schema") or metadata.get("database"), metadata.get("table")
    )
    payload = data.get("payload")
    if not isinstance(payload, dict) and (kind == "upsert" or payload is not None):
        raise BadChange(f"{table}: Datastream {change_type or 'event'} without its payload")
    sort_keys = data.get("sort_keys")
    if not isinstance(sort_keys, list) or not sort_keys:
        raise NoPosition(f"{table}: Datastream event without sort_keys")
    sequence = tuple(position_part(part, "sort key") for part in sort_keys)
    sequence += (0 if change_type == "UPDATE-DELETE" else 1,)
    primary_keys = metadata.get("primary_keys")
    key = rules.key(
        table, payload, message_key, primary_keys if isinstance(primary_keys, list) else None
    )
    row = payload if kind == "upsert" else None
    return build_change(table, key, kind, row, sequence, source_time(data.get("source_timestamp")))
