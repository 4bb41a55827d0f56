"""NormalizeChanges: parsed Debezium or Datastream envelopes into the one change record.

Input: `Block`s of `Record`s from Parse whose data is the parsed envelope and whose origin is the
`Message` (its ``origin.key`` is the Kafka message key, when there is one). Output: `Block`s of
``Record(Change.to_dict(), origin, event_time)``, for instance::

    Record({"table": "inventory.customers", "key": {"id": 1004}, "op": "upsert",
            "row": {"id": 1004, "email": "anne@example.com"},
            "sequence": [24023119, 24023128], "source_ts": "2019-05-28T08:58:24.863Z"},
           <the Message>, 1559033904.863)

See `transforms.cdc.debezium` and `transforms.cdc.datastream` for how each format maps, and
`transforms.cdc.envelope` for keys and positions. Key values take their canonical form
(`transforms.cdc.change.canonical_key`: ``1``, ``1.0`` and ``"1"`` are the key ``1``). An
update that changes its primary key becomes two records, the delete of the old key and the
upsert of the new one, counted once in `KEY_CHANGES` (so ``read + cdc_key_changes`` records are
accounted for). Envelopes that cannot be read are dead-lettered with reasons
``cdc_unknown_format``, ``cdc_unknown_op``, ``cdc_no_key``, ``cdc_bad_key``,
``cdc_no_position``, ``cdc_no_table`` or ``cdc_bad_change``; tombstones that reach this step
(schema-wrapped null payloads) and Debezium ``m`` messages are counted as ``dropped.tombstone``
and ``dropped.cdc_message``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from transforms import metrics
from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.cdc.datastream import is_datastream, read_datastream
from transforms.cdc.debezium import is_debezium, read_debezium
from transforms.cdc.envelope import (
    Dropped,
    KeyChange,
    KeyRules,
    UnknownFormat,
    parse_key_columns,
)
from transforms.dead_letter import ToDeadLetter, failure
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters

__all__ = [
    "FAILED",
    "FORMATS",
    "KEY_CHANGES",
    "ChangeReader",
    "NormalizeChanges",
    "key_change_counter",
    "timed",
]

FORMATS = ("debezium", "datastream", "auto")
# The counter of updates read as a delete of the old key and an upsert of the new one.
KEY_CHANGES = metrics.KEY_CHANGES


def key_change_counter() -> Any:
    """The `KEY_CHANGES` counter (create it in a DoFn's ``setup``)."""
    return metrics.counter(KEY_CHANGES)


@dataclass(frozen=True)
class ChangeReader:
    """Reads one parsed envelope into a `Change` (the pure core of `NormalizeChanges`).

    Attributes:
        format: ``debezium``, ``datastream`` or ``auto`` (tells them apart per record).
        rules: where tables and primary keys come from.
    """

    format: str = "auto"
    rules: KeyRules = field(default_factory=KeyRules)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"CDC format {self.format!r}: use one of {', '.join(FORMATS)}")

    def read(
        self, data: dict[str, Any], message_key: str | None = None
    ) -> Change | KeyChange | Dropped:
        """Returns the change of ``data``, or `Dropped` for what is left out on purpose.

        An update of the primary key gives a `KeyChange`: iterate it for its two changes.

        Args:
            data: the parsed envelope.
            message_key: the Kafka message key as text, if any.

        Raises:
            CdcError: the envelope cannot be read (its ``reason`` says why).
        """
        if self.format != "datastream" and is_debezium(data):
            return read_debezium(data, message_key, self.rules)
        if self.format != "debezium" and is_datastream(data):
            return read_datastream(data, message_key, self.rules)
        expected = {"debezium": "a Debezium event", "datastream": "a Datastream event"}.get(
            self.format, "a Debezium or Datastream event"
        )
        raise UnknownFormat(f"the record is not {expected} (fields: {sorted(data)[:10]})")

    def read_record(self, record: Record) -> Change | KeyChange | Dropped:
        """`read` of a parsed `Record`, with the message key of its origin, if any."""
        message = record.origin
        return self.read(record.data, message.origin.key if message is not None else None)


FAILED = "failed"


def timed(value: Any, event_time: float | None) -> Any:
    """``value`` timestamped with ``event_time``, if any (a dead letter keeps its record's time)."""
    return value if event_time is None else TimestampedValue(value, event_time)


@beam.typehints.with_output_types(Block)
class _NormalizeFn(beam.DoFn):
    """A block of parsed envelopes -> the block of their change `Record`s; failures tagged."""

    def __init__(self, reader: ChangeReader) -> None:
        self._reader = reader

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)
        self._key_changes = key_change_counter()

    def process(self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam) -> Any:
        read = self._reader.read_record
        changes = Block()
        dropped: Counter[str] = Counter()
        key_changes = 0
        block_time = None if timestamp <= MIN_TIMESTAMP else float(timestamp)
        for record in block:
            try:
                change = read(record)
            except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
                yield TaggedOutput(FAILED, timed(failure(record, exc), record.event_time))
                continue
            if isinstance(change, Dropped):
                dropped[change.reason] += 1
                continue
            when = record.event_time if record.event_time is not None else block_time
            if isinstance(change, KeyChange):
                key_changes += 1
                for part in change:
                    changes.append(Record(part.to_dict(), record.origin, when))
            else:
                changes.append(Record(change.to_dict(), record.origin, when))
        for reason, n in dropped.items():
            self._dropped.inc(reason, n)
        if key_changes:
            self._key_changes.inc(key_changes)
        if changes:
            yield changes


class NormalizeChanges(beam.PTransform):
    """Turns blocks of parsed CDC envelopes into blocks of change records (see the module).

    Input: `Block`s of `Record`s whose data is a parsed envelope. Returns ``(changes,
    errors)``: ``changes`` are `Block`s of `Record`s of `Change` dicts (two for a key change,
    both with the input's origin), each with its input's event time, or the block's
    timestamp when the input has none (the time that delete markers are kept from);
    ``errors`` are dead-letter dicts of step ``normalize``.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        format: ``debezium``, ``datastream`` or ``auto``.
        key_columns: declared primary keys per table, as a mapping or in the option syntax
            ``"inventory.customers=id;inventory.orders=order_id,line"`` (a bare ``"id"``: every
            table; see `parse_key_columns`); they win over the message key and Datastream's
            ``primary_keys``.
        table: the table of envelopes that do not name theirs.

    Raises:
        ValueError: an unknown format or badly written key columns.
    """

    def __init__(
        self,
        pipeline: str,
        format: str = "auto",
        key_columns: str | Mapping[str, Sequence[str]] | None = None,
        table: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(key_columns, str):
            declared = parse_key_columns(key_columns)
        else:
            declared = {name: tuple(columns) for name, columns in (key_columns or {}).items()}
        self._pipeline = pipeline
        self._reader = ChangeReader(format, KeyRules(declared, table or None))

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Read envelopes" >> beam.ParDo(_NormalizeFn(self._reader)).with_outputs(
            FAILED, main="changes"
        )
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "normalize")
        return results.changes, errors
