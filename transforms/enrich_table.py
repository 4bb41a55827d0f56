"""Enrich from a table kept in keyed state, fed by a CDC stream: no external store.

Input: a pair ``(records, changes)``. ``changes`` are `Record`s whose data is a change
(`transforms.cdc.change.Change.to_dict()`)::

    {"table": "crm.customers", "key": {"customer_id": "c1"}, "op": "upsert",
     "row": {"customer_id": "c1", "tier": "gold"}, "sequence": [12, 3], "source_ts": None}

Both streams are keyed by the join key (the key template rendered on a record, and on a
change's ``key`` columns) and meet in one stateful step that keeps, per key, the latest row and
the sequence of the last change applied: an ``upsert`` sets the row, a ``delete`` clears it, a
change whose sequence is not greater than the last one applied is stale and skipped (counter
``enrich_changes_stale``). Each record is joined with the row its key holds when the record
arrives (the latest-state semantics of a stream-table join): a record that arrives before the
first change of its key finds no row. The table lives in the global window; records come out in
it, with their own timestamps.

Changes that cannot be applied are dead-lettered with reason ``bad_change``: data that is not a
change, a key without the template's fields, and ``truncate`` (a keyed table cannot clear every
key at once). With ``table`` set, changes of other tables are skipped (counter
``enrich_changes_skipped``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows

from transforms.cdc.change import Change
from transforms.enrich import ERRORS, EnrichSettings, Settler, enrich_error, reference_key
from transforms.errors import RecordError
from transforms.io.redis_text import KeyTemplate
from transforms.message import Record
from transforms.metrics import NAMESPACE

__all__ = ["BadChange", "ChangelogEnrich"]

STALE = "enrich_changes_stale"
SKIPPED = "enrich_changes_skipped"
_RECORD, _CHANGE = "record", "change"
_SETTLED = "settled"  # records without a key, enriched with nulls without the table


class BadChange(RecordError):
    """A change the table cannot apply."""

    reason = "bad_change"


@beam.typehints.with_output_types(tuple[str, Any])
class _KeyRecords(beam.DoFn):
    """Record -> ``(join key, ("record", record))``; a record without a key is settled here.

    Outputs: the keyed records; on ``settled`` the keyless records the ``pass`` policy emits;
    on `ERRORS` the keyless records it dead-letters.
    """

    def __init__(self, key: KeyTemplate, settings: EnrichSettings) -> None:
        self._key = key
        self._settings = settings

    def setup(self) -> None:
        self._settler = Settler(self._settings)

    def process(self, record: Record, timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        join_key = reference_key(self._key, record.data)
        if join_key is not None:
            yield join_key, (_RECORD, record)
            return
        missing = f"the record lacks a field of key {self._key.text!r}"
        for output in self._settler.outputs(record, None, timestamp, missing=missing):
            yield output if isinstance(output, TaggedOutput) else TaggedOutput(_SETTLED, output)


@beam.typehints.with_output_types(tuple[str, Any])
class _KeyChanges(beam.DoFn):
    """Change record -> ``(join key, ("change", (op, row, sequence)))``, or a dead letter."""

    def __init__(self, key: KeyTemplate, table: str | None, pipeline: str) -> None:
        self._key = key
        self._table = table
        self._pipeline = pipeline

    def process(self, record: Record, timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        try:
            try:
                change = Change.from_dict(record.data)
            except (KeyError, TypeError, ValueError) as error:
                raise BadChange(f"not a change: {error!r}") from None
            if self._table is not None and change.table != self._table:
                Metrics.counter(NAMESPACE, SKIPPED).inc()
                return
            if change.op == "truncate":
                raise BadChange(f"truncate of {change.table}: a keyed table cannot clear all keys")
            join_key = reference_key(self._key, change.key)
            if join_key is None:
                raise BadChange(
                    f"the change's key {change.key} lacks a field of {self._key.text!r}"
                )
        except BadChange as error:
            yield TaggedOutput(ERRORS, enrich_error(record, error, timestamp, self._pipeline))
            return
        yield join_key, (_CHANGE, (change.op, change.row, change.sequence))


class _TableFn(beam.DoFn):
    """Keeps the latest row per key; joins each record with it."""

    ROW = ReadModifyWriteStateSpec("row", PickleCoder())
    SEQUENCE = ReadModifyWriteStateSpec("sequence", PickleCoder())

    def __init__(self, settings: EnrichSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._settler = Settler(self._settings)
        self._stale = Metrics.counter(NAMESPACE, STALE)

    def process(
        self,
        element: tuple[str, tuple[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        row_state=beam.DoFn.StateParam(ROW),
        sequence_state=beam.DoFn.StateParam(SEQUENCE),
    ) -> Iterator[Any]:
        join_key, (kind, payload) = element
        if kind == _RECORD:
            missing = f"no row with key {join_key!r} in the table"
            yield from self._settler.outputs(payload, row_state.read(), timestamp, missing=missing)
            return
        op, row, sequence = payload
        last = sequence_state.read()
        if last is not None and tuple(sequence) <= tuple(last):
            self._stale.inc()
            return
        sequence_state.write(tuple(sequence))
        row_state.write(row if op == "upsert" else None)


class ChangelogEnrich(beam.PTransform):
    """Enriches `Record`s from a table built from a CDC stream (see this module).

    Applied to ``(records, changes)``; returns ``(records, errors)`` as every enrich transform
    does (`transforms.enrich`), errors including the changes that could not be applied.

    Args:
        key: the join key, a template over record fields and over a change's key columns.
        settings: the merge and the policies.
        table: apply only the changes of this table (``schema.table``); ``None``: all.
    """

    def __init__(
        self, key: KeyTemplate, settings: EnrichSettings, table: str | None = None
    ) -> None:
        super().__init__()
        self.key = key
        self.settings = settings
        self.table = table

    def default_label(self) -> str:
        return "Enrich from changelog"

    def expand(
        self, inputs: tuple[beam.PCollection, beam.PCollection]
    ) -> tuple[beam.PCollection, beam.PCollection]:
        records, changes = inputs
        keyed_records = (
            records
            | "Records in the global window" >> beam.WindowInto(GlobalWindows())
            | "Key records"
            >> beam.ParDo(_KeyRecords(self.key, self.settings)).with_outputs(
                ERRORS, _SETTLED, main="keyed"
            )
        )
        keyed_changes = (
            changes
            | "Changes in the global window" >> beam.WindowInto(GlobalWindows())
            | "Key changes"
            >> beam.ParDo(_KeyChanges(self.key, self.table, self.settings.pipeline)).with_outputs(
                ERRORS, main="keyed"
            )
        )
        joined = (
            (keyed_records.keyed, keyed_changes.keyed)
            | "Both streams" >> beam.Flatten()
            | "Table" >> beam.ParDo(_TableFn(self.settings)).with_outputs(ERRORS, main="records")
        )
        enriched = (joined.records, keyed_records[_SETTLED]) | "Enriched" >> beam.Flatten()
        errors = (
            keyed_records[ERRORS],
            keyed_changes[ERRORS],
            joined[ERRORS],
        ) | "Enrich errors" >> beam.Flatten()
        return enriched, errors
