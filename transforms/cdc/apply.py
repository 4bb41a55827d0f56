"""ApplyChanges: keep, per (table, primary key), only changes newer than the last one applied.

Input and output are `Block`s of `Record`s of `Change` dicts (as `NormalizeChanges` emits them);
the output is the latest-state stream: the applied changes only, in sequence order per key,
e.g.::

    Record({"table": "inventory.customers", "key": {"id": 1004}, "op": "delete", "row": None,
            "sequence": [24023200, 24023264], "source_ts": "2019-05-28T09:01:00Z"}, <Message>)

How: in the global window, the changes of a bundle are grouped by `key_id` (a string), in the
order they came, and a stateful DoFn keeps per key the last applied sequence and whether it was
a delete, reading and writing it once per key and bundle. `transforms.cdc.decide.decide`
decides, from that state alone: a greater sequence is applied; an equal one is a duplicate
(at-least-once delivery; ``dropped.cdc_duplicate``); a smaller one is stale
(``dropped.cdc_stale``). State is per key, so with disorder a change older than one already
applied is dropped as stale: the final state is still right, since the newer change wins either
way. Applied changes are counted in ``applied``.

A sink that keeps only the latest state (``latest_only``: the final tables of a bounded run)
needs only each key's latest change: a bounded input in a batch run then takes
`transforms.cdc.compact.CompactChanges` instead, which emits just those (the others counted as
``dropped.cdc_duplicate`` or ``dropped.cdc_superseded``), with memory of one change per key
(see that module for why the final tables are the same).

Deletes: the state of a deleted key stays as a delete marker so that a late, older upsert
cannot bring the row back; an event-time timer clears it ``delete_retention`` after the
delete's event time (`Record.event_time`; a later upsert of the key keeps the state, and the
timer then leaves it).
An upsert older than the delete that arrives after the marker expired is applied again: choose
the retention longer than the worst delay of the source. A primary-key change is right by
construction: two keys, two states (Debezium writes a delete of the old key and a create of the
new one; an update whose old row has another key is split so at normalize).

Truncates: a truncate is a change of key ``{}`` (its own key per table, deduplicated the same
way, its state kept: one per table) and is emitted on the stream; this step does not touch the
other keys. Sinks apply it: remove every row of the table whose sequence is below the
truncate's, and remember the table's truncate sequence so that a row change older than it that
arrives later is ignored (sequences are positions in the source's log, so they compare across
keys). `transforms.cdc.final_state.FinalState` does exactly that for the file replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder, StrUtf8Coder, TupleCoder
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.blocks import Batch
from transforms.cdc.change import Change, sequence_key
from transforms.cdc.compact import MAX_KEYS, CompactChanges, change_key
from transforms.cdc.decide import (
    APPLIED,
    DUPLICATE,
    STALE,
    DecisionCounters,
    KeyState,
    apply_change,
)
from transforms.cdc.envelope import BadChange
from transforms.cdc.normalize import FAILED, timed
from transforms.dead_letter import ToDeadLetter, failure
from transforms.durations import parse_duration
from transforms.message import Record
from transforms.schema import Field, Schema

__all__ = [
    "APPLIED",
    "CHANGE_SCHEMA",
    "DUPLICATE",
    "STALE",
    "ApplyChanges",
    "KeyState",
    "apply_change",
]

# The records of the latest-state stream, for sinks that create tables.
CHANGE_SCHEMA = Schema(
    (
        Field("table", "STRING", "REQUIRED"),
        Field("key", "JSON", "REQUIRED"),
        Field("op", "STRING", "REQUIRED"),
        Field("row", "JSON"),
        Field("sequence", "INTEGER", "REPEATED"),
        Field("source_ts", "TIMESTAMP"),
    )
)


class _GroupPerBundleFn(beam.DoFn):
    """Blocks of change `Record`s -> ``(key_id, [Record, ...])``, a key's changes in order.

    One output per key seen in the bundle (sent on at the end of the bundle, or when `MAX_KEYS`
    keys are held), timestamped with the oldest event time of its changes; a record without an
    event time takes its block's timestamp. Records that are not change records go to `FAILED`.
    """

    def start_bundle(self) -> None:
        self._held: dict[str, list[Record]] = {}

    def process(self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam) -> Any:
        held = self._held
        block_time = None if timestamp <= MIN_TIMESTAMP else float(timestamp)
        for record in block:
            if record.event_time is None and block_time is not None:
                record = record._replace(event_time=block_time)
            try:
                key = change_key(record)
            except BadChange as exc:
                yield TaggedOutput(FAILED, timed(failure(record, exc), record.event_time))
                continue
            changes = held.get(key)
            if changes is None:
                held[key] = [record]
            else:
                changes.append(record)
        if len(held) >= MAX_KEYS:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        return self._flush()

    def _flush(self) -> Iterator[WindowedValue]:
        held, self._held = self._held, {}
        window = (GlobalWindow(),)
        for key, changes in held.items():
            times = [r.event_time for r in changes if r.event_time is not None]
            oldest = Timestamp.of(min(times)) if times else MIN_TIMESTAMP
            yield WindowedValue((key, changes), oldest, window)


_STATE_CODER = TupleCoder((StrUtf8Coder(), BooleanCoder()))


def _read_state(stored: tuple[str, bool] | None) -> KeyState | None:
    if stored is None:
        return None
    text, deleted = stored
    return KeyState(tuple(int(part) for part in text.split(".")), deleted)


class _ApplyFn(beam.DoFn):
    """``(key_id, [Record, ...])`` -> the Records applied, in order (see the module docstring)."""

    LAST = ReadModifyWriteStateSpec("last", _STATE_CODER)
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, retention: float) -> None:
        self._retention = Duration.of(retention)

    def setup(self) -> None:
        self._counters = DecisionCounters()

    def process(
        self,
        element: tuple[str, list[Record]],
        timestamp: Any = beam.DoFn.TimestampParam,
        last: Any = beam.DoFn.StateParam(LAST),
        expiry: Any = beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[Record]:
        state = initial = _read_state(last.read())
        deleted_at = timestamp
        for record in element[1]:
            decision, state = apply_change(state, Change.from_dict(record.data))
            self._counters.count(decision)
            if decision != APPLIED:
                continue
            if state.deleted and record.event_time is not None:
                deleted_at = Timestamp.of(record.event_time)
            yield record
        if state is initial or state is None:
            return  # nothing applied
        last.write((sequence_key(state.sequence), state.deleted))
        if state.deleted:
            expiry.set(min(deleted_at + self._retention, GlobalWindow().max_timestamp()))

    @on_timer(EXPIRY)
    def expire(self, last: Any = beam.DoFn.StateParam(LAST)) -> Iterator[Record]:
        state = _read_state(last.read())
        if state is not None and state.deleted:
            last.clear()
        return iter(())


class ApplyChanges(beam.PTransform):
    """Applies change records in order per key; emits the latest-state stream.

    Input: `Block`s of `Record`s of `Change` dicts, in any order, duplicates included. Returns
    ``(applied, errors)``: ``applied`` are `Block`s of the input `Record`s that were applied, in
    the global window; ``errors`` are dead-letter dicts (step ``apply``, reason
    ``cdc_bad_change``) of records that are not change records.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        delete_retention: how long (event time) a delete marker is kept, e.g. ``"7d"``.
        latest_only: the sink keeps only each key's latest change; a batch run of a bounded
            input then emits only those (see the module).

    Raises:
        ValueError: the retention is not a positive duration.
    """

    def __init__(
        self, pipeline: str, delete_retention: str | float = "7d", latest_only: bool = False
    ) -> None:
        super().__init__()
        self._retention = parse_duration(delete_retention, "delete_retention")
        if self._retention <= 0:
            raise ValueError(f"delete_retention must be positive, got {delete_retention!r}")
        self._pipeline = pipeline
        self._latest_only = latest_only

    def compacts(self, blocks: beam.PCollection) -> bool:
        """Whether this step emits only each key's latest change of ``blocks`` (it compacts).

        A streaming run of a bounded input may fire delete-marker timers while it reads, so
        only a batch run compacts.
        """
        streaming = blocks.pipeline.options.view_as(StandardOptions).streaming
        return self._latest_only and blocks.is_bounded and not streaming

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        if not blocks.windowing.is_default():
            blocks = blocks | "Global window" >> beam.WindowInto(GlobalWindows())
        if self.compacts(blocks):
            return blocks | "Latest per key" >> CompactChanges(self._pipeline)
        grouped = blocks | "Group per bundle" >> beam.ParDo(_GroupPerBundleFn()).with_outputs(
            FAILED, main="grouped"
        )
        applied = (
            grouped.grouped
            | "Apply in order" >> beam.ParDo(_ApplyFn(self._retention))
            | "Blocks" >> Batch()
        )
        errors = grouped[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "apply")
        return applied, errors
