r"""Debezium change events (Kafka Connect JSON converter) into `Change`s, and their tombstones.

An event value, schemas off (with schemas on it is the ``payload`` of
``{"schema": {...}, "payload": {...}}``)::

    {"before": null,
     "after": {"id": 1004, "email": "anne@example.com"},
     "source": {"connector": "postgresql", "db": "shop", "schema": "inventory",
                "table": "customers", "lsn": 24023128, "txId": 555, "ts_ms": 1559033904863,
                "sequence": "[\"24023119\",\"24023128\"]", "snapshot": "false"},
     "op": "c", "ts_ms": 1559033904866, "transaction": null}

Operations: ``r`` (snapshot read), ``c`` and ``u`` are upserts of ``after``; ``d`` is a delete
(key from ``before`` or the message key); ``t`` truncates ``source``'s table; ``m`` (a logical
decoding message, no row) is dropped on purpose as ``cdc_message``. A ``u`` whose ``before``
has another primary key than ``after`` (``before.id=2``, ``after.id=3``) is a key change, read
as a delete of the old key and an upsert of the new one (`transforms.cdc.envelope.KeyChange`).

Sequence: Postgres ``source.sequence`` (``["<lastCommitLsn>","<lsn>"]``, integers as text) gives
``(commit_lsn, lsn)``, a null part read as 0 (snapshot reads have no commit LSN); without it,
``(lsn,)``. MySQL gives ``(binlog file number, pos, row)``. The envelope's ``ts_ms`` never orders
changes: ``source.ts_ms`` only becomes the change's ``source_ts``. The table is
``schema.table`` for Postgres and ``db.table`` for MySQL.

Tombstones: after a delete Debezium writes a record with the same key and a null value, for log
compaction. The delete already carries the change, so `DropTombstones` drops tombstones on
purpose (``dropped.tombstone``) before Parse, which would dead-letter an empty payload as
``invalid_json``. A Kafka source gives a null value as an empty payload; in a JSON Lines file an
empty line or ``null`` is a tombstone. A schema-wrapped value whose ``payload`` is null is one
too: `DropTombstones` drops it before Parse as well (so that an event time read from the
envelope does not dead-letter it), and the normalize step reads one that reaches it as `Dropped`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.cdc.envelope import (
    CDC_MESSAGE,
    TOMBSTONE,
    BadChange,
    Dropped,
    KeyChange,
    KeyRules,
    NoPosition,
    UnknownOp,
    build_change,
    key_change,
    position_part,
    source_time,
)
from transforms.message import Message
from transforms.metrics import DROPPED, ReasonCounters

__all__ = ["OPS", "DropTombstones", "is_debezium", "is_tombstone", "read_debezium"]

OPS = {"r": "upsert", "c": "upsert", "u": "upsert", "d": "delete", "t": "truncate"}


def _unwrap(data: dict[str, Any]) -> Any:
    """Returns the envelope inside ``{"schema", "payload"}``, or ``data`` when not wrapped."""
    wrapped = len(data) == 2 and "schema" in data and "payload" in data
    return data["payload"] if wrapped else data


def is_debezium(data: dict[str, Any]) -> bool:
    """Whether a parsed record is a Debezium event value (wrapped or not, tombstones included)."""
    envelope = _unwrap(data)
    return envelope is None or (
        isinstance(envelope, dict) and "op" in envelope and "source" in envelope
    )


def is_tombstone(payload: bytes) -> bool:
    """Whether a message payload is a tombstone: empty, blank, ``null``, or schema-wrapped null.

    Only a payload ending like ``"payload": null}`` is decoded to tell a wrapped tombstone
    (``{"schema": ..., "payload": null}``) from anything else.
    """
    text = payload.strip()
    if text in (b"", b"null"):
        return True
    if not text.endswith(b"}") or b'"payload"' not in text[-32:]:
        return False
    if not text[:-1].rstrip().endswith(b"null"):
        return False
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and _unwrap(data) is None


def _sequence(source: dict[str, Any]) -> tuple[int, ...]:
    if source.get("file") is not None:  # MySQL and MariaDB binlog positions
        return (
            position_part(source["file"], "binlog file"),
            position_part(source.get("pos"), "binlog pos"),
            position_part(source.get("row") or 0, "binlog row"),
        )
    sequence = source.get("sequence")
    if isinstance(sequence, str):
        return _digit_pair(sequence) or _postgres_sequence(sequence)
    if source.get("lsn") is not None:
        return (position_part(source["lsn"], "LSN"),)
    raise NoPosition("Debezium source has neither a binlog file and pos nor an LSN")


def _digit_pair(sequence: str) -> tuple[int, int] | None:
    """``(commit_lsn, lsn)`` of a sequence like ``'["12","34"]'`` or ``'["12", "34"]'``, else None.

    The parts of that shape are decimal strings, which `_postgres_sequence` reads as the same
    integers; any other text is left to it.
    """
    if sequence[:2] != '["' or sequence[-2:] != '"]':
        return None
    inner = sequence[2:-2]
    commit, sep, lsn = inner.partition('","')
    if not sep:  # as Python's json.dumps writes it
        commit, sep, lsn = inner.partition('", "')
    digits = commit + lsn
    if not (sep and commit and lsn and digits.isdigit() and digits.isascii()):
        return None
    return int(commit), int(lsn)


def _postgres_sequence(sequence: str) -> tuple[int, ...]:
    """``(commit_lsn, lsn)`` of a Postgres ``source.sequence``, a JSON list of two parts."""
    try:
        parts = json.loads(sequence)
    except ValueError:
        parts = None
    if not isinstance(parts, list) or len(parts) != 2:
        raise NoPosition(f"Postgres source.sequence {sequence!r} is not [commit_lsn, lsn]")
    return tuple(0 if part is None else position_part(part, "LSN") for part in parts)


def _source_ts(source: dict[str, Any]) -> str | None:
    if source.get("ts_ms") is not None:
        return source_time(source["ts_ms"], "ms")
    return source_time(source.get("ts_us"), "us")


def read_debezium(
    data: dict[str, Any], message_key: str | None, rules: KeyRules
) -> Change | KeyChange | Dropped:
    """Reads a Debezium event value.

    Args:
        data: the parsed event value, schema-wrapped or not.
        message_key: the Kafka message key as text (JSON, possibly schema-wrapped), if any.
        rules: where tables and keys come from.

    Returns:
        The change, a `KeyChange` for an update of the primary key, or `Dropped` for a
        tombstone or an ``m`` message.

    Raises:
        CdcError: the event is not a change this module can read (see the reasons there).
    """
    envelope = _unwrap(data)
    if envelope is None:
        return Dropped(TOMBSTONE)
    op = envelope.get("op")
    if op == "m":
        return Dropped(CDC_MESSAGE)
    kind = OPS.get(op) if isinstance(op, str) else None
    if kind is None:
        raise UnknownOp(f"Debezium op {op!r}: expected one of r, c, u, d, t or m")
    source = envelope.get("source")
    if not isinstance(source, dict):
        raise BadChange("Debezium event without its source block")
    table = rules.table_name(source.get("schema") or source.get("db"), source.get("table"))
    sequence = _sequence(source)
    if kind == "truncate":
        return build_change(table, {}, kind, None, sequence, _source_ts(source))
    side = "after" if kind == "upsert" else "before"
    image = envelope.get(side)
    if not isinstance(image, dict) and (kind == "upsert" or image is not None):
        what = "missing" if image is None else f"JSON {type(image).__name__}"
        raise BadChange(f"{table}: Debezium op {op!r}: its row {side!r} is {what}, not an object")
    key = rules.key(table, image, message_key)
    row = image if kind == "upsert" else None
    change = build_change(table, key, kind, row, sequence, _source_ts(source))
    before = envelope.get("before") if op == "u" else None
    return key_change(change, before) if isinstance(before, dict) else change


@beam.typehints.with_output_types(Block)
class _DropTombstonesFn(beam.DoFn):
    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(self, block: list[Message]) -> Iterator[Block]:
        kept = Block(message for message in block if not is_tombstone(message.payload))
        if len(kept) < len(block):
            self._dropped.inc(TOMBSTONE, len(block) - len(kept))
        if kept:
            yield kept


class DropTombstones(beam.PTransform):
    """Blocks of `Message`s -> the same blocks without their tombstones.

    Tombstones are counted as ``dropped.tombstone``; a block left empty is not sent on.
    """

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | beam.ParDo(_DropTombstonesFn())
