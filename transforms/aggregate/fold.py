"""The in-bundle half of `transforms.aggregate.windowed.WindowedAggregate`: records -> partials.

    Block of Records -> PrepareBlock -> Block of items ((record, group_key, prepared))
        [-> lateness gate] -> FoldPartials -> (group_key, partial) in a slice of its windows

`PrepareBlock` checks each record against the spec (`SpecCombineFn.prepare`) and keys it;
`FoldPartials` folds each item into a partial accumulator per (group key, slice) and sends the
partials on when the bundle ends (or when `MAX_PARTIALS` are held), each timestamped inside
its slice, so that Beam's own windowing (`WindowInto` with the spec's window fn) puts it in the
windows its records belong to. A slice is a span of event time whose records all fall into the
same windows:

- tumbling: the window itself;
- hopping: ``gcd(size, every)`` long (window starts and ends are multiples of it), so
  `SlidingWindows` assigns a slice's partial to every window of its records;
- global: one slice;
- session: a cluster of a key's records whose session windows ``[t, t + gap)`` overlap
  within the bundle. Its partial is timestamped at the cluster's first record and, when the
  cluster spans more than a gap, followed by markers (``None`` partials) at records that
  chain the first one's window to the last one's, so that Beam's `Sessions` windows of these
  elements cover exactly what the records' windows cover and merge as the records' would.

With ``per_record`` (a count trigger, which counts elements) every record is its own partial,
sent on at once: Beam sees one element per record, as its trigger counts them.

Memory: one accumulator per (group, slice) seen since the last flush, at most `MAX_PARTIALS`.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import metrics
from transforms.aggregate.aggregators import Element, SpecCombineFn
from transforms.aggregate.spec import AggregateSpec
from transforms.blocks import Block, FoldPerBundle
from transforms.dead_letter import refused
from transforms.errors import RecordError
from transforms.fields import FieldCheck, aggregate_fields
from transforms.message import Record
from transforms.metrics import ReasonCounters

__all__ = [
    "AGGREGATED",
    "FAILED",
    "MAX_PARTIALS",
    "NOT_AGGREGATED",
    "FoldPartials",
    "Item",
    "MergePartials",
    "PrepareBlock",
    "group_key",
    "key_values",
]

AGGREGATED = metrics.AGGREGATED
# The tagged output of the records that cannot be aggregated (dead-letter dicts).
FAILED = "failed"
# Counted instead of dead-lettered, by a side aggregation (``not_aggregated.<reason>``).
NOT_AGGREGATED = metrics.NOT_AGGREGATED
MAX_PARTIALS = 50_000
# Sessions: a marker's window must overlap the previous one's by this much (the window coder
# keeps whole milliseconds), or the record between them is a marker too.
_MARGIN_MICROS = 1000

# A prepared record: the record, its group key and `SpecCombineFn.prepare`'s element.
Item = tuple[Record, tuple, Element]


def group_key(data: dict[str, Any], group_by: tuple[str, ...]) -> tuple:
    """Returns a record's group key: its ``group_by`` values (nested values as JSON text).

    A boolean is held as a 1-tuple, ``(True,)``: Python finds ``True == 1``, and the key
    ``true`` is not the key ``1``. `key_values` gives the values back.
    """
    return tuple([_key_value(data.get(name)) for name in group_by])


def _key_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if value is True or value is False:
        return (value,)
    return value


def key_values(key: tuple) -> list[Any]:
    """The values of a `group_key`, as the output row holds them (booleans as booleans)."""
    return [value[0] if type(value) is tuple else value for value in key]


@beam.typehints.with_output_types(Block)
class PrepareBlock(beam.DoFn):
    """Block of `Record`s -> one `Block` of items ``(record, group_key, (values, event_time))``.

    A record's event time is `Record.event_time`, or the block's timestamp when it has none.
    A record the spec refuses (`SpecCombineFn.prepare`) goes to the `FAILED` output as a
    dead-letter dict with step ``aggregate``; with ``dead_letter`` off (a side aggregation,
    whose records are written whole elsewhere) it is only counted in
    ``not_aggregated.<reason>``.

    A side aggregation also checks the fields it reads (`transforms.fields.aggregate_fields`:
    group keys, bare aggregated fields), which a pipeline does not require of every record for
    it: a record it cannot key (a group key missing, null, a list or an object) is counted in
    ``not_aggregated.missing_field`` or ``not_aggregated.wrong_type`` and left out. With
    ``dead_letter`` on, the pipeline checked them after Parse (`transforms.fields.CheckFields`).

    Args:
        spec: the aggregation.
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter: dead-letter refused records (else only count them).
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter: bool) -> None:
        self._group_by = spec.group_by
        self._combine = SpecCombineFn(spec)
        self._pipeline = pipeline
        self._dead_letter = dead_letter
        self._check = None if dead_letter else FieldCheck(aggregate_fields(spec)) or None

    def setup(self) -> None:
        self._refused = None if self._dead_letter else ReasonCounters(NOT_AGGREGATED)

    def process(
        self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        fallback = float(timestamp)
        prepare, group_by, check = self._combine.prepare, self._group_by, self._check
        items = Block()
        for record in block:
            event_time = record.event_time
            if event_time is None:
                event_time = fallback
            try:
                if check is not None:
                    check(record.data)
                element = prepare(record.data, event_time)
            except RecordError as exc:
                yield from self._failed(record, exc, event_time)
                continue
            items.append((record, group_key(record.data, group_by), element))
        if items:
            yield items

    def _failed(self, record: Record, exc: RecordError, event_time: float) -> Iterator[Any]:
        if self._refused is not None:
            self._refused.inc(exc.reason)
            return
        yield beam.pvalue.TaggedOutput(
            FAILED,
            refused(
                record, pipeline=self._pipeline, step="aggregate", error=exc, event_time=event_time
            ),
        )


class FoldPartials(FoldPerBundle):
    """Blocks of items (see `PrepareBlock`) -> ``(group_key, partial)``, timestamped in its slice.

    ``partial`` is a `SpecCombineFn` accumulator (``None`` for a session marker, see this
    module). Items are counted as ``aggregated``.

    Args:
        spec: the aggregation.
        per_record: send each record on alone, at once (a count trigger counts elements).
        by_window: fold per window instead of per slice and key each partial by
            ``(group_key, (window_start_micros, window_end_micros))`` (``None`` for the global
            window), windows found as Beam's FixedWindows and SlidingWindows (offset 0) find
            them; not for sessions.
    """

    def __init__(self, spec: AggregateSpec, per_record: bool, by_window: bool = False) -> None:
        window = spec.window
        self._combine = SpecCombineFn(spec)
        self._per_record = per_record
        self._by_window = by_window
        self._type = window.type
        self._size = size = Duration.of(window.size).micros
        self._every = every = Duration.of(window.every).micros or size
        self._slice = every if by_window else math.gcd(size, every)
        self._gap = Duration.of(window.gap).micros

    def setup(self) -> None:
        self._aggregated = metrics.counter(AGGREGATED)

    def limit(self) -> int:
        return 1 if self._per_record else MAX_PARTIALS

    def process(self, items: list[Item]) -> Iterator[Any]:
        if self._type == "session":
            fold = self._fold_session
        elif self._type == "global":
            fold = self._fold_global
        else:
            fold = self._fold_slice
        if self._per_record:
            for item in items:
                fold(item)
                yield from self.flush_if_full()
        else:
            for item in items:
                fold(item)
            yield from self.flush_if_full()
        self._aggregated.inc(len(items))

    def _fold_slice(self, item: Item) -> None:
        _, key, element = item
        # int(seconds * 1e6) is how Beam's Timestamp turns the event time into micros.
        micros = int(element[1] * 1e6)
        start = micros - micros % self._slice
        # By window: the starts of every window holding the record (one unless hopping).
        last = start - self._size if self._by_window else start - 1
        partials, combine = self.partials, self._combine
        while start > last:
            partial = partials.get((key, start))
            if partial is None:
                partial = combine.create_accumulator()
            partials[(key, start)] = combine.add_input(partial, element)
            start -= self._every

    def _fold_global(self, item: Item) -> None:
        _, key, element = item
        held = self.partials.get(key)
        if held is None:
            self.partials[key] = held = [self._combine.create_accumulator(), element[1]]
        elif element[1] < held[1]:
            held[1] = element[1]
        held[0] = self._combine.add_input(held[0], element)

    def _fold_session(self, item: Item) -> None:
        _, key, element = item
        micros = int(element[1] * 1e6)
        clusters = self.partials.get(key)
        if clusters is None:
            self.partials[key] = clusters = []
        elif clusters[-1][0] <= micros and micros // 1000 < clusters[-1][1] // 1000:
            # The usual case, records in time order: the record's window starts inside the
            # newest cluster's, which no earlier cluster reaches.
            newest = clusters[-1]
            newest[1] = max(newest[1], micros + self._gap)
            newest[2] = self._combine.add_input(newest[2], element)
            newest[3].append(micros)
            return
        state = self._combine.add_input(self._combine.create_accumulator(), element)
        _insert(clusters, [micros, micros + self._gap, state, [micros]], self._combine)

    def timestamped(self, key: Any, partial: Any) -> Iterator[tuple[Any, Timestamp | None]]:
        if self._type == "session":
            for cluster in partial:
                yield from self._session_elements(key, cluster)
        elif self._type == "global":
            yield ((key, None) if self._by_window else key, partial[0]), Timestamp.of(partial[1])
        elif self._by_window:
            group, start = key
            yield ((group, (start, start + self._size)), partial), Timestamp(micros=start)
        else:
            group, start = key
            yield (group, partial), Timestamp(micros=start)

    def _session_elements(self, key: Any, cluster: list[Any]) -> Iterator[tuple[Any, Timestamp]]:
        times = sorted(cluster[3])
        yield (key, cluster[2]), Timestamp(micros=times[0])
        point = times[0]
        for previous, following in zip(times, times[1:], strict=False):
            if following >= point + self._gap - _MARGIN_MICROS and previous != point:
                point = previous
                yield (key, None), Timestamp(micros=point)
        if times[-1] != point:
            yield (key, None), Timestamp(micros=times[-1])


def _insert(clusters: list[list[Any]], new: list[Any], combine: SpecCombineFn) -> None:
    """Puts a cluster ``[start, end, accumulator, times]`` in place, merged with those it overlaps.

    ``clusters`` are sorted by start and disjoint; two overlap when one's window starts before
    the other's ends (Beam's `Sessions` merge), in whole milliseconds as Beam's window coder
    keeps window bounds between steps.
    """
    high = bisect_left(clusters, new[1] // 1000, key=_start_millis)
    low = high
    while low > 0 and clusters[low - 1][1] // 1000 > new[0] // 1000:
        low -= 1
    parts = [*clusters[low:high], new]
    if len(parts) > 1:
        new = [
            min(c[0] for c in parts),
            max(c[1] for c in parts),
            combine.merge_accumulators([c[2] for c in parts]),
            [t for c in parts for t in c[3]],
        ]
    clusters[low:high] = [new]


def _start_millis(cluster: list[Any]) -> int:
    return int(cluster[0]) // 1000


class MergePartials(beam.CombineFn):
    """Merges partial accumulators of a `SpecCombineFn` (``None``: a session marker).

    Its own accumulator starts as ``None`` and takes the first partial as it is, so the usual
    case of a group seen in one bundle costs no merge.
    """

    def __init__(self, spec: AggregateSpec) -> None:
        self._combine = SpecCombineFn(spec)

    def create_accumulator(self) -> list[Any] | None:
        return None

    def add_input(self, accumulator: list[Any] | None, partial: list[Any] | None) -> Any:
        if accumulator is None:
            return partial
        if partial is None:
            return accumulator
        return self._combine.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators: Iterable[list[Any] | None]) -> list[Any] | None:
        partials = [partial for partial in accumulators if partial is not None]
        if len(partials) <= 1:
            return partials[0] if partials else None
        return self._combine.merge_accumulators(partials)

    def extract_output(self, accumulator: list[Any] | None) -> dict[str, Any]:
        if accumulator is None:
            accumulator = self._combine.create_accumulator()
        return self._combine.extract_output(accumulator)
