"""Enrich from a table kept in keyed state, fed by a CDC stream: no external store.

Input: a pair ``(records, changes)``, both `Block`s of `Record`s. A change record's data is a
change (`transforms.cdc.change.Change.to_dict()`)::

    {"table": "crm.customers", "key": {"customer_id": "c1"}, "op": "upsert",
     "row": {"customer_id": "c1", "tier": "gold"}, "sequence": [12, 3], "source_ts": None}

Both streams are keyed by the join key (the key template rendered on a record, and on a
change's ``key`` columns), a block's records and changes of one key travelling together, and
meet in one stateful step that keeps, per key, the latest row and
the sequence of the last change applied: an ``upsert`` sets the row, a ``delete`` clears it, a
change whose sequence is not greater than the last one applied is stale and skipped (counter
``enrich_changes_stale``). Each record is joined with the row its key holds when the record
arrives (the latest-state semantics of a stream-table join): a record that arrives before the
first change of its key finds no row. The table lives in the global window; blocks of records
come out in it.

Changes that cannot be applied are dead-lettered with reason ``bad_change``: data that is not a
change, a key without the template's fields, and ``truncate`` (a keyed table cannot clear every
key at once). With ``table`` set, changes of other tables are skipped (counter
``enrich_changes_skipped``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows

from transforms import metrics
from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.enrich.base import (
    ERRORS,
    EnrichSettings,
    Settler,
    SettlingFn,
    enrich_error,
    key_function,
)
from transforms.errors import RecordError
from transforms.io.redis.text import KeyTemplate
from transforms.message import Record

__all__ = ["BadChange", "ChangelogEnrich"]

STALE = metrics.ENRICH_CHANGES_STALE
SKIPPED = metrics.ENRICH_CHANGES_SKIPPED
_RECORD, _CHANGE = "record", "change"
_SETTLED = "settled"  # records without a key, enriched with nulls without the table


class BadChange(RecordError):
    """A change the table cannot apply."""

    reason = "bad_change"


def _by_key(pairs: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    """``(key, item)`` pairs -> the items of each key, in order."""
    grouped: dict[str, list[Any]] = {}
    for key, item in pairs:
        grouped.setdefault(key, []).append(item)
    return grouped


@beam.typehints.with_output_types(tuple[str, Any], settled=Block, errors=Any)
class _KeyRecords(SettlingFn):
    """Block -> ``(join key, ("record", Block))`` per key; records without a key settled here.

    Outputs: the keyed blocks; on ``settled`` the block of the keyless records the ``pass``
    policy emits; on `ERRORS` the keyless records it dead-letters.
    """

    def process(self, block: list[Record], timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        keyed: list[tuple[str, Record]] = []
        settled = Block()
        missing = f"the record lacks a field of key {self._key.text!r}"
        for record in block:
            join_key = self._key_of(record.data)
            if join_key is not None:
                keyed.append((join_key, record))
                continue
            dead = self._settler.settle(record, None, timestamp, settled, missing=missing)
            if dead is not None:
                yield dead
        for join_key, records in _by_key(keyed).items():
            yield join_key, (_RECORD, Block(records))
        if settled:
            yield TaggedOutput(_SETTLED, settled)


@beam.typehints.with_output_types(tuple[str, Any], errors=Any)
class _KeyChanges(beam.DoFn):
    """Block of changes -> ``(join key, ("change", [(op, row, sequence)...]))`` per key.

    The changes of a key keep their order; those that cannot be applied are dead-lettered.
    """

    def __init__(self, key: KeyTemplate, table: str | None, pipeline: str) -> None:
        self._key = key
        self._table = table
        self._pipeline = pipeline

    def setup(self) -> None:
        self._key_of = key_function(self._key)

    def process(self, block: list[Record], timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        keyed: list[tuple[str, tuple[str, Any, Any]]] = []
        for record in block:
            try:
                change = self._keyed(record)
            except BadChange as error:
                yield TaggedOutput(ERRORS, enrich_error(record, error, timestamp, self._pipeline))
            else:
                if change is not None:
                    keyed.append(change)
        for join_key, changes in _by_key(keyed).items():
            yield join_key, (_CHANGE, changes)

    def _keyed(self, record: Record) -> tuple[str, tuple[str, Any, Any]] | None:
        """Returns ``(join key, (op, row, sequence))``, or ``None`` for another table's change."""
        try:
            change = Change.from_dict(record.data)
        except (KeyError, TypeError, ValueError) as error:
            raise BadChange(f"not a change: {error!r}") from None
        if self._table is not None and change.table != self._table:
            metrics.counter(SKIPPED).inc()
            return None
        if change.op == "truncate":
            raise BadChange(f"truncate of {change.table}: a keyed table cannot clear all keys")
        join_key = self._key_of(change.key)
        if join_key is None:
            raise BadChange(f"the change's key {change.key} lacks a field of {self._key.text!r}")
        return join_key, (change.op, change.row, change.sequence)


@beam.typehints.with_output_types(Block, errors=Any)
class _TableFn(beam.DoFn):
    """Keeps the latest row per key; joins each block of records with it."""

    ROW = ReadModifyWriteStateSpec("row", PickleCoder())
    SEQUENCE = ReadModifyWriteStateSpec("sequence", PickleCoder())

    def __init__(self, settings: EnrichSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._settler = Settler(self._settings)
        self._stale = metrics.counter(STALE)

    def process(
        self,
        element: tuple[str, tuple[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        row_state=beam.DoFn.StateParam(ROW),
        sequence_state=beam.DoFn.StateParam(SEQUENCE),
    ) -> Iterator[Any]:
        join_key, (kind, payload) = element
        if kind == _RECORD:
            row = row_state.read()
            missing = f"no row with key {join_key!r} in the table"
            enriched = Block()
            for record in payload:
                dead = self._settler.settle(record, row, timestamp, enriched, missing=missing)
                if dead is not None:
                    yield dead
            if enriched:
                yield enriched
            return
        last = sequence_state.read()
        for op, row, sequence in payload:
            if last is not None and tuple(sequence) <= tuple(last):
                self._stale.inc()
                continue
            last = tuple(sequence)
            sequence_state.write(last)
            row_state.write(row if op == "upsert" else None)


class ChangelogEnrich(beam.PTransform):
    """Enriches `Block`s of `Record`s from a table built from a CDC stream (see this module).

    Applied to ``(blocks, change blocks)``; returns ``(blocks, errors)`` as every enrich transform
    does (`transforms.enrich.base`), errors including the changes that could not be applied.

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
