"""The block path of a bounded ``cdc_replicate`` run into final tables.

    blocks of Messages -> DropTombstoneBlocks -> ParseJsonBlocks
        -> CompactChangeBlocks: normalize, key and keep each key's latest change per bundle
        -> merge per key -> each key's latest change

`CompactChangeBlocks` does in one step per block what `NormalizeChanges`, `ApplyChanges` (its
key step) and `transforms.cdc.compact.CompactChanges` do one record at a time: the same
`ChangeReader`, the same key rule (`transforms.cdc.compact.ordered_key`), the same merge, the
same counters and dead letters. Beam's per-element cost (about 10 us a step on the local
runners) is paid once per block of about a thousand records, and only one partial per key and
bundle crosses the shuffle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue

from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.cdc.compact import MergeLatest, PreCompactFn, ordered_key
from transforms.cdc.debezium import is_tombstone
from transforms.cdc.envelope import TOMBSTONE, Dropped, KeyChange
from transforms.cdc.normalize import ChangeReader, key_change_counter
from transforms.dead_letter import ToDeadLetter, failure
from transforms.message import Message, Record
from transforms.metrics import DROPPED, ReasonCounters

__all__ = ["CompactChangeBlocks", "DropTombstoneBlocks"]

_NORMALIZE = "normalize"
_APPLY = "apply"


@beam.typehints.with_output_types(Block)
class _DropTombstoneBlocksFn(beam.DoFn):
    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(self, block: list[Message]) -> Iterator[Block]:
        kept = Block(message for message in block if not is_tombstone(message.payload))
        if len(kept) < len(block):
            self._dropped.inc(TOMBSTONE, len(block) - len(kept))
        if kept:
            yield kept


class DropTombstoneBlocks(beam.PTransform):
    """`transforms.cdc.debezium.DropTombstones` over blocks (lists) of `Message`s."""

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | beam.ParDo(_DropTombstoneBlocksFn())


def _at(value: Any, event_time: float | None) -> Any:
    """The value timestamped as the record path's records are (their event time, if any)."""
    return value if event_time is None else TimestampedValue(value, event_time)


class _CompactBlockFn(PreCompactFn):
    """Blocks of ``(Record, event_time)`` -> ``(key_id, Latest)`` partials; failures tagged."""

    def __init__(self, reader: ChangeReader) -> None:
        self._reader = reader

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)
        self._key_changes = key_change_counter()

    def process(self, block: list[tuple[Record, float | None]]) -> Iterator[Any]:
        read = self._reader.read_record
        dropped: Counter[str] = Counter()
        for record, event_time in block:
            try:
                change = read(record)
            except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
                yield TaggedOutput(_NORMALIZE, _at(failure(record, exc), event_time))
                continue
            if isinstance(change, Dropped):
                dropped[change.reason] += 1
                continue
            if isinstance(change, KeyChange):
                self._key_changes.inc()
            for part in change if isinstance(change, KeyChange) else (change,):
                try:
                    key = ordered_key(part)
                except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
                    failed = failure(Record(part.to_dict(), record.origin), exc)
                    yield TaggedOutput(_APPLY, _at(failed, event_time))
                    continue
                yield from self.hold(key, part.sequence, part)
        for reason, n in dropped.items():
            self._dropped.inc(reason, n)

    def change_dict(self, change: Change) -> dict[str, Any]:
        return change.to_dict()


class CompactChangeBlocks(beam.PTransform):
    """Blocks of parsed envelopes -> each (table, key)'s latest change.

    Input: a bounded PCollection of lists of ``(Record, event_time)`` pairs, as
    `transforms.parse.ParseJsonBlocks` emits them. Returns ``(latest, errors)``: ``latest`` as
    `transforms.cdc.compact.CompactChanges` emits it; ``errors`` the dead-letter dicts that
    `NormalizeChanges` (step ``normalize``) and `ApplyChanges` (step ``apply``) give for the
    same records.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        reader: how envelopes are read (as `NormalizeChanges` is configured).
    """

    def __init__(self, pipeline: str, reader: ChangeReader) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._reader = reader

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Normalize and compact" >> beam.ParDo(
            _CompactBlockFn(self._reader)
        ).with_outputs(_NORMALIZE, _APPLY, main="partials")
        latest = results.partials | "Merge" >> MergeLatest()
        errors = (
            results[_NORMALIZE] | "Normalize errors" >> ToDeadLetter(self._pipeline, _NORMALIZE),
            results[_APPLY] | "Apply errors" >> ToDeadLetter(self._pipeline, _APPLY),
        ) | "Errors" >> beam.Flatten()
        return latest, errors
