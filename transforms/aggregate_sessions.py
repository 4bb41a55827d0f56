"""BoundedSessions: the bounded fast path of `WindowedAggregate` for session windows.

    records -> key by group_by -> CombinePerKey(sessions of the key) -> one row per session

On a bounded input nothing is late and every session has exactly one, final pane, so Beam's
merging session windows (a window per element, merged in the trigger machinery) are left
out: the sessions of a key are found by integer arithmetic, exactly as the general path finds
them. There each event gets the window ``[t, t + gap)``, which reaches the merge in whole
milliseconds (Beam's window coder floors both ends), and windows that overlap merge; so a
session is a run of events, in event-time order, each of whose window starts before the
windows so far end, and its window is ``[floor_ms(first), floor_ms(last + gap))``.

The accumulator of a key is its list of partial sessions, sorted by start and disjoint (no
two windows overlap)::

    [[window_start_millis, window_end_millis, spec_accumulator], ...]

so that Beam's combiner lifting folds records into partial sessions before the shuffle, and the
partial sessions of several bundles merge after it the way Beam merges windows (overlapping
windows merge, their `SpecCombineFn` accumulators too). Memory: the partial sessions of the
keys in the combiner's cache, and after the shuffle one key's sessions at a time.

Records the spec refuses (`transforms.aggregators.SpecCombineFn.prepare`: reasons
``bad_value``, ``expression_limit``, ``bad_timestamp``) are dead-lettered with step
``aggregate`` before they are keyed, as on the general path.

Rows are those of the general path: the group keys, ``window_start``/``window_end`` of the
merged session window, the aggregates, ``timing`` ``ON_TIME``, ``pane_index`` 0 and
``is_final`` as Beam sets it in a batch run (true unless a late firing is allowed), each
timestamped as the general path's rows reach the next step (the window's last instant, in
whole milliseconds). Like the other bounded fast path, the rows are in the global window.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms import window as windows
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.aggregate import (
    AGGREGATED,
    FAILED,
    KeyByGroup,
    PrepareFailures,
    group_key,
    passes,
)
from transforms.aggregate_spec import AggregateSpec
from transforms.aggregators import SpecCombineFn
from transforms.blocks import FoldPerBundle
from transforms.errors import RecordError
from transforms.event_time import format_timestamp
from transforms.message import Record
from transforms.metrics import NAMESPACE

__all__ = ["MAX_KEYS", "BoundedSessions", "SessionBlocks", "SessionsCombineFn"]

MAX_KEYS = 50_000

# A partial session: [window_start_millis, window_end_millis, SpecCombineFn accumulator].
Session = list[Any]


class SessionsCombineFn(beam.CombineFn):
    """Splits a key's events into sessions and aggregates each with the spec's `SpecCombineFn`.

    Input elements are ``(values, event_time_micros)``, ``values`` as
    `SpecCombineFn.prepare` gives them; the accumulator is the list of
    partial sessions described in this module; the output is
    ``[(window_start_millis, window_end_millis, {aggregate_name: value}), ...]`` in start order.
    """

    def __init__(self, spec: AggregateSpec) -> None:
        self._combine = SpecCombineFn(spec)
        # Beam's Sessions adds the gap as a Duration, truncated to whole microseconds.
        self._gap = Duration.of(spec.window.gap).micros

    def prepare(self, record: dict[str, Any], event_time: float) -> tuple[tuple[Any, ...], float]:
        """Prepares a record for the spec (see `SpecCombineFn.prepare`)."""
        return self._combine.prepare(record, event_time)

    def create_accumulator(self) -> list[Session]:
        return []

    def add_input(self, sessions: list[Session], element: tuple[tuple[Any, ...], int]) -> Any:
        values, micros = element
        value = (values, micros / 1_000_000)
        start, end = micros // 1000, (micros + self._gap) // 1000
        if sessions:
            newest = sessions[-1]
            # The usual case, events in time order: the event's window starts inside the
            # newest session's, which no earlier session reaches.
            if newest[0] <= start < newest[1]:
                newest[1] = max(newest[1], end)
                newest[2] = self._combine.add_input(newest[2], value)
                return sessions
        state = self._combine.add_input(self._combine.create_accumulator(), value)
        return self._insert(sessions, [start, end, state])

    def merge_accumulators(self, accumulators: Iterable[list[Session]]) -> list[Session]:
        merged: list[Session] = []
        for session in sorted((s for sessions in accumulators for s in sessions), key=_start):
            if merged and session[0] < merged[-1][1]:
                merged[-1] = self._merge([merged[-1], session])
            else:
                merged.append(session)
        return merged

    def extract_output(self, sessions: list[Session]) -> list[tuple[int, int, dict[str, Any]]]:
        return [(start, end, self._combine.extract_output(state)) for start, end, state in sessions]

    def _insert(self, sessions: list[Session], new: Session) -> list[Session]:
        """Puts ``new`` in place, merged with the sessions whose windows overlap its window."""
        high = bisect_left(sessions, new[1], key=_start)
        low = high
        while low > 0 and sessions[low - 1][1] > new[0]:
            low -= 1
        sessions[low:high] = [self._merge([*sessions[low:high], new])]
        return sessions

    def _merge(self, sessions: list[Session]) -> Session:
        """Returns one session of sessions whose windows overlap."""
        if len(sessions) == 1:
            return sessions[0]
        return [
            min(s[0] for s in sessions),
            max(s[1] for s in sessions),
            self._combine.merge_accumulators([s[2] for s in sessions]),
        ]


def _start(session: Session) -> int:
    return session[0]


def _wire_micros(millis: int) -> int:
    """Returns the output time Beam gives a window ending at ``millis``, in microseconds.

    The window's last microsecond, as Beam's element coder keeps it: whole milliseconds,
    truncated toward zero.
    """
    last = millis * 1000 - 1
    return (abs(last) // 1000 * 1000) * (1 if last >= 0 else -1)


class _SessionRows(beam.DoFn):
    """``(group_key, [(start_ms, end_ms, aggregates), ...])`` -> one output `Record` a session."""

    def __init__(self, spec: AggregateSpec) -> None:
        self._group_by = spec.group_by
        self._having = spec.having
        # In a batch run Beam marks the on-time pane last unless a late firing may follow.
        self._final = not (spec.trigger.late and spec.allowed_lateness > 0)

    def process(
        self, element: tuple[tuple, list[tuple[int, int, dict[str, Any]]]]
    ) -> Iterator[Any]:
        key, sessions = element
        for start, end, aggregates in sessions:
            row: dict[str, Any] = dict(zip(self._group_by, key, strict=True))
            row["window_start"] = format_timestamp(start / 1000)
            row["window_end"] = format_timestamp(end / 1000)
            row.update(aggregates)
            row.update(timing="ON_TIME", is_final=self._final, pane_index=0)
            if passes(self._having, row):
                yield windows.TimestampedValue(Record(row), Timestamp(micros=_wire_micros(end)))


class _PreSessions(FoldPerBundle):
    """Blocks of ``(Record, event_time_seconds)`` -> ``(group_key, partial_sessions)``.

    One output per key seen in the bundle (or since the last flush); refused records go to the
    `FAILED` output (see `PrepareFailures`).
    """

    def __init__(self, spec: AggregateSpec, pipeline: str) -> None:
        self._group_by = spec.group_by
        self._combine = SessionsCombineFn(spec)
        self._pipeline = pipeline

    def setup(self) -> None:
        self._aggregated = beam.metrics.Metrics.counter(NAMESPACE, AGGREGATED)
        self._failures = PrepareFailures(self._pipeline, dead_letter=True)

    def limit(self) -> int:
        return MAX_KEYS

    def process(self, block: list[tuple[Record, float]]) -> Iterator[Any]:
        keys, add, group_by = self.partials, self._combine.add_input, self._group_by
        prepare = self._combine.prepare
        aggregated = 0
        for record, event_time in block:
            try:
                values, _ = prepare(record.data, event_time)
            except RecordError as exc:
                yield from self._failures.failed(record, exc, event_time)
                continue
            aggregated += 1
            key = group_key(record.data, group_by)
            # int(seconds * 1e6) is how Beam's Timestamp turns the event time into micros.
            keys[key] = add(keys.get(key) or [], (values, int(event_time * 1e6)))
        self._aggregated.inc(aggregated)
        yield from self.flush_if_full()


class _MergeSessions(beam.CombineFn):
    """Merges the partial sessions of a key (lists, as `SessionsCombineFn` accumulates them)."""

    def __init__(self, combine: SessionsCombineFn) -> None:
        self._combine = combine

    def create_accumulator(self) -> list[Session]:
        return []

    def add_input(self, sessions: list[Session], partial: list[Session]) -> list[Session]:
        return self._combine.merge_accumulators([sessions, partial])

    def merge_accumulators(self, accumulators: Iterable[list[Session]]) -> list[Session]:
        return self._combine.merge_accumulators(accumulators)

    def extract_output(self, sessions: list[Session]) -> list[tuple[int, int, dict[str, Any]]]:
        return self._combine.extract_output(sessions)


def _supports(spec: AggregateSpec) -> bool:
    return spec.window.type == "session" and not spec.trigger.early_count


class BoundedSessions(beam.PTransform):
    """Aggregates a bounded input's `Record`s per group and session, as `WindowedAggregate` does.

    Input: `Record`s timestamped with their event time. Returns ``(rows, errors)``: `Record`s
    holding the rows of `transforms.aggregate` (one final ``ON_TIME`` pane per group and
    session), and dead-letter dicts of the records the spec refuses. Records that enter a
    session are counted as ``aggregated``.

    Args:
        spec: the aggregation; `supports` says which specs this path takes.
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter: dead-letter refused records (else only count them, see `PrepareFailures`).
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter: bool = True) -> None:
        super().__init__()
        if not _supports(spec):
            raise ValueError("BoundedSessions takes session windows without a count trigger")
        self._spec = spec
        self._pipeline = pipeline
        self._dead_letter = dead_letter

    @staticmethod
    def supports(spec: AggregateSpec) -> bool:
        """Whether the spec's bounded result is one final pane per session."""
        return _supports(spec)

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        keyed = records | "Key" >> beam.ParDo(
            KeyByGroup(self._spec, self._pipeline, micros=True, dead_letter=self._dead_letter)
        ).with_outputs(FAILED, main="keyed")
        rows = (
            keyed.keyed
            | "Sessions" >> beam.CombinePerKey(SessionsCombineFn(self._spec))
            | "Rows" >> beam.ParDo(_SessionRows(self._spec))
        )
        return rows, keyed[FAILED]


class SessionBlocks(beam.PTransform):
    """`BoundedSessions` over blocks of parsed records: the same rows, per-block Beam costs.

    Input: a bounded PCollection of lists of ``(Record, event_time_seconds)`` pairs, as
    `transforms.parse.ParseJsonBlocks` emits them with an event time. Each block's records are
    folded into partial sessions per key right away (memory: the partial sessions of at most
    `MAX_KEYS` keys, then flushed), so only partial sessions cross the shuffle. Output and
    counting as `BoundedSessions`, and so are the errors returned.

    Args:
        spec: the aggregation; `BoundedSessions.supports` says which specs this path takes.
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(self, spec: AggregateSpec, pipeline: str) -> None:
        super().__init__()
        if not _supports(spec):
            raise ValueError("SessionBlocks takes session windows without a count trigger")
        self._spec = spec
        self._pipeline = pipeline

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        partials = blocks | "Pre-sessions" >> beam.ParDo(
            _PreSessions(self._spec, self._pipeline)
        ).with_outputs(FAILED, main="partials")
        rows = (
            partials.partials
            | "Sessions" >> beam.CombinePerKey(_MergeSessions(SessionsCombineFn(self._spec)))
            | "Rows" >> beam.ParDo(_SessionRows(self._spec))
        )
        return rows, partials[FAILED]
