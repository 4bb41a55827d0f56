"""WindowedAggregate: group records into event-time windows and compute the spec's aggregates.

    records -> key by group_by -> lateness gate -> WindowInto(windows, trigger, lateness)
            -> CombinePerKey(all aggregates) -> output rows [-> having]
                          `-> late records -> dead letter (reason "late")

An output row (the data of an output `Record`) looks like::

    {"endpoint": "/api/cart",                      # the group keys
     "window_start": "2026-11-25T10:00:00Z", "window_end": "2026-11-25T10:01:00Z",
     "requests": 120, "errors": 3, ...,            # the aggregates
     "timing": "ON_TIME", "is_final": False, "pane_index": 1}

``timing`` is ``EARLY``, ``ON_TIME`` or ``LATE``; a sink keyed by group keys and window
overwrites earlier panes, so a re-fired pane replaces the figure instead of adding to it.

Late records: Beam's GroupByKey drops records that arrive after a window's end plus the allowed
lateness, silently. So before the shuffle a small stateful step (the lateness gate, a few shards
in the global window) follows the input watermark from below with event-time timers and
dead-letters, with reason ``late``, every record whose windows have all closed by that bound.
The bound trails the true watermark by at most one window step while data flows, so the
shuffle is given that step as extra lateness: a record the gate lets through is never dropped
(at worst it updates its window in a LATE pane). Records are dealt to the shards in turn and
every shard is primed with the first record's event time, so all shards follow the watermark.
Limits: after the whole input was idle for longer than the windows' span, the first records
are judged against an older bound, and one late beyond that bound plus the slack can still be
dropped by Beam unseen; with hopping windows a record is dead-lettered only when its last window
has closed (its earlier, closed windows drop it silently).

Records that cannot be aggregated (`transforms.aggregators.SpecCombineFn.prepare` says which:
reasons ``bad_value``, ``expression_limit``, ``bad_timestamp``) are dead-lettered with step
``aggregate`` before they are keyed, on every path (this one, `transforms.aggregate_blocks` and
`transforms.aggregate_sessions`); a ``having`` that fails on a row counts ``having_failed`` and
leaves the row out.

``is_final`` is Beam's own flag of the last pane; Beam rarely sets it (it does not fire a final
pane when a window expires), so read ``timing`` with the allowed lateness instead: with none,
the ON_TIME pane is the window's last.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import FloatCoder
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms import window as windows
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration

from transforms.aggregate_spec import AggregateSpec, WindowSpec
from transforms.aggregators import Element, SpecCombineFn
from transforms.dead_letter import error_record
from transforms.errors import RecordError
from transforms.event_time import format_timestamp
from transforms.expressions import Expression
from transforms.message import Record
from transforms.metrics import NAMESPACE, Count, ReasonCounters
from transforms.schema import Field, Schema

__all__ = [
    "AGGREGATED",
    "FAILED",
    "GATE_SHARDS",
    "HAVING_FAILED",
    "LATE",
    "NOT_AGGREGATED",
    "FinalRow",
    "KeyByGroup",
    "PrepareFailures",
    "WindowedAggregate",
    "group_key",
    "passes",
    "row_schema",
    "window_starts",
]

AGGREGATED = "aggregated"
LATE = "late_records"
# The tagged output of the records that cannot be aggregated (dead-letter dicts).
FAILED = "failed"
# Counted instead of dead-lettered, by a side aggregation (``not_aggregated.<reason>``).
NOT_AGGREGATED = "not_aggregated"
HAVING_FAILED = "having_failed"
GATE_SHARDS = 8
_TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE"}


def _key_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def group_key(data: dict[str, Any], group_by: tuple[str, ...]) -> tuple:
    """Returns a record's group key: its ``group_by`` values (nested values as JSON text)."""
    return tuple([_key_value(data.get(name)) for name in group_by])


class PrepareFailures:
    """What a keying step does with a record that `SpecCombineFn.prepare` refuses.

    Create it in a DoFn's ``setup``; `failed` returns the outputs for a refused record: its
    dead-letter dict on the `FAILED` output, or nothing when ``dead_letter`` is off (a side
    aggregation, whose records are written whole elsewhere), then counted in
    ``not_aggregated.<reason>``.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter: dead-letter refused records (else only count them).
    """

    def __init__(self, pipeline: str, dead_letter: bool) -> None:
        self._pipeline = pipeline
        self._counters = None if dead_letter else ReasonCounters(NOT_AGGREGATED)

    def failed(self, record: Record, exc: RecordError, event_time: float) -> Iterator[Any]:
        """Returns the outputs for ``record``, which ``exc`` refused."""
        if self._counters is not None:
            self._counters.inc(exc.reason)
            return iter(())
        dead = error_record(
            record,
            pipeline=self._pipeline,
            step="aggregate",
            reason=exc.reason,
            error_type=type(exc).__name__,
            error_message=str(exc),
            event_timestamp=event_time,
        )
        return iter((beam.pvalue.TaggedOutput(FAILED, dead),))


def passes(having: Expression | None, row: dict[str, Any]) -> bool:
    """Whether an output row passes ``having``; a failing ``having`` counts and leaves it out."""
    if having is None:
        return True
    try:
        return bool(having(row))
    except Exception:  # noqa: BLE001 (any failure on one row)
        beam.metrics.Metrics.counter(NAMESPACE, HAVING_FAILED).inc()
        return False


def _expiry(window: WindowSpec, lateness: float, event_time: float) -> float:
    """Returns when the last window holding ``event_time`` stops taking records."""
    if window.type == "session":
        return event_time + window.gap + lateness
    step = window.size if window.type == "tumbling" else window.every
    return math.floor(event_time / step) * step + window.size + lateness


@beam.typehints.with_output_types(tuple[int, Any])
class _KeyByShard(beam.DoFn):
    """Record -> ``(shard, (group_key, record))``, shards taken in turn.

    Taking shards in turn (not by key) keeps every shard of the gate busy, so each follows the
    watermark closely. The first record an instance sees also primes every shard with its
    event time (``(shard, None)``), so that no shard judges a record without a bound.
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter: bool) -> None:
        self._group_by = spec.group_by
        self._combine = SpecCombineFn(spec)
        self._pipeline = pipeline
        self._dead_letter = dead_letter

    def setup(self) -> None:
        self._next = 0
        self._primed = False
        self._failures = PrepareFailures(self._pipeline, self._dead_letter)

    def process(
        self, record: Record, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[tuple[int, Any]]:
        event_time = float(timestamp)
        try:
            prepared = self._combine.prepare(record.data, event_time)
        except RecordError as exc:
            yield from self._failures.failed(record, exc, event_time)
            return
        if not self._primed:
            self._primed = True
            for shard in range(GATE_SHARDS):
                yield shard, None
        key = group_key(record.data, self._group_by)
        self._next = (self._next + 1) % GATE_SHARDS
        yield self._next, (key, record, prepared)


class _LatenessGate(beam.DoFn):
    """Passes records whose windows are still open; tags the others ``late``.

    Output: ``(group_key, prepared)`` (see `SpecCombineFn.prepare`), or the late `Record` on
    ``late``.

    A shard's state is one value, ``(horizon, newest, armed)``, each a float or None: the bound
    records are judged against (the last clock firing), the newest event time passed, and when
    the clock is set for (None while it is not set). One value, not three, so that a record
    costs one state read and at most one write.
    """

    GATE = ReadModifyWriteStateSpec(
        "gate", beam.coders.TupleCoder([beam.coders.NullableCoder(FloatCoder())] * 3)
    )
    CLOCK = TimerSpec("clock", TimeDomain.WATERMARK)

    def __init__(self, window: WindowSpec, lateness: float) -> None:
        self._window = window
        self._lateness = lateness
        self._step = window.step
        self._span = max(window.size, window.gap) + lateness + window.step

    def setup(self) -> None:
        self._aggregated = beam.metrics.Metrics.counter(NAMESPACE, AGGREGATED)

    def process(
        self,
        element: tuple[int, tuple[tuple, Record, Element]],
        timestamp: Any = beam.DoFn.TimestampParam,
        gate: Any = beam.DoFn.StateParam(GATE),
        clock: Any = beam.DoFn.TimerParam(CLOCK),
    ) -> Iterator[Any]:
        _, keyed = element
        event_time = float(timestamp)
        bound, latest, armed = gate.read() or (None, None, None)
        if keyed is None:  # a primer: start following the watermark from its event time
            if armed is None and bound is None:
                clock.set(event_time)
                gate.write((None, event_time, event_time))
            return
        key, record, prepared = keyed
        if bound is not None and _expiry(self._window, self._lateness, event_time) < bound:
            yield beam.pvalue.TaggedOutput("late", record)
            return
        newest = event_time if latest is None or event_time > latest else latest
        target = armed
        if target is None:
            target = event_time if bound is None else bound + self._step
            clock.set(target)
        if newest != latest or target != armed:
            gate.write((bound, newest, target))
        self._aggregated.inc()
        yield key, prepared

    @on_timer(CLOCK)
    def on_clock(
        self,
        fired: Any = beam.DoFn.TimestampParam,
        gate: Any = beam.DoFn.StateParam(GATE),
        clock: Any = beam.DoFn.TimerParam(CLOCK),
    ) -> Iterator[Any]:
        now = float(fired)
        _, latest, _ = gate.read() or (None, None, None)
        if latest is not None and now < latest + self._span:
            clock.set(now + self._step)
            gate.write((now, latest, now + self._step))
        else:
            gate.write((now, latest, None))
        return iter(())


class KeyByGroup(beam.DoFn):
    """Record -> ``(group_key, (values, event_time))``, counted as ``aggregated``.

    ``(values, event_time)`` is the record prepared for the spec (`SpecCombineFn.prepare`), the
    event time in seconds, or with ``micros`` in whole microseconds. A record the spec refuses
    goes to the `FAILED` output (see `PrepareFailures`).

    Args:
        spec: the aggregation.
        pipeline: the pipeline's name, for the dead-letter records.
        micros: give the event time in whole microseconds.
        dead_letter: dead-letter refused records (else only count them).
    """

    def __init__(
        self, spec: AggregateSpec, pipeline: str, micros: bool = False, dead_letter: bool = True
    ) -> None:
        self._group_by = spec.group_by
        self._combine = SpecCombineFn(spec)
        self._pipeline = pipeline
        self._micros = micros
        self._dead_letter = dead_letter

    def setup(self) -> None:
        self._aggregated = beam.metrics.Metrics.counter(NAMESPACE, AGGREGATED)
        self._failures = PrepareFailures(self._pipeline, self._dead_letter)

    def process(self, record: Record, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        event_time = float(timestamp)
        try:
            values, _ = self._combine.prepare(record.data, event_time)
        except RecordError as exc:
            yield from self._failures.failed(record, exc, event_time)
            return
        self._aggregated.inc()
        time = timestamp.micros if self._micros else event_time
        yield group_key(record.data, self._group_by), (values, time)


class _LateToDeadLetter(beam.DoFn):
    def __init__(self, pipeline: str, window: WindowSpec, lateness: float) -> None:
        self._pipeline = pipeline
        self._window = window
        self._lateness = lateness

    def process(self, record: Record, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        event_time = float(timestamp)
        closed = format_timestamp(_expiry(self._window, 0.0, event_time))
        yield error_record(
            record,
            pipeline=self._pipeline,
            step="aggregate",
            reason="late",
            error_type="LateRecord",
            error_message=(
                f"event time {format_timestamp(event_time)} is too late: its window closed at "
                f"{closed} and the allowed lateness is {self._lateness:g}s"
            ),
            event_timestamp=event_time,
        )


class _ToRow(beam.DoFn):
    """``(group_key, aggregates)`` in a window and pane -> the output `Record`."""

    def __init__(self, spec: AggregateSpec) -> None:
        self._group_by = spec.group_by
        self._having = spec.having

    def process(
        self,
        element: tuple[tuple, dict[str, Any]],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Record]:
        key, aggregates = element
        row: dict[str, Any] = dict(zip(self._group_by, key, strict=True))
        bounded = isinstance(window, windows.IntervalWindow)
        row["window_start"] = format_timestamp(float(window.start)) if bounded else None
        row["window_end"] = format_timestamp(float(window.end)) if bounded else None
        row.update(aggregates)
        row["timing"] = _TIMING.get(pane.timing, "UNKNOWN")
        row["is_final"] = pane.is_last
        row["pane_index"] = pane.index
        if passes(self._having, row):
            yield Record(row)


_INTEGER_RESULTS = {"count", "count_if", "approx_count_distinct"}
_FLOAT_RESULTS = {"mean", "approx_quantile"}


def row_schema(spec: AggregateSpec, records: Schema | None) -> Schema:
    """Returns the schema of the output rows (to create a table for them).

    Group keys and ``sum``/``min``/``max``/``latest`` of a plain field take the field's type
    from the record schema when there is one; otherwise STRING and FLOAT.
    """

    def field_type(name: str, default: str) -> str:
        spec_field = records.get(name) if records is not None else None
        if spec_field is None or spec_field.mode == "REPEATED" or spec_field.type == "RECORD":
            return default
        return spec_field.type

    fields = [Field(name, field_type(name, "STRING")) for name in spec.group_by]
    fields += [Field("window_start", "TIMESTAMP"), Field("window_end", "TIMESTAMP")]
    for call in spec.aggregates:
        if call.function in _INTEGER_RESULTS:
            kind = "INTEGER"
        elif call.function in _FLOAT_RESULTS or call.argument is None:
            kind = "FLOAT"
        else:
            kind = field_type(call.argument.text.strip(), "FLOAT")
        fields.append(Field(call.name, kind))
    fields += [Field("timing", "STRING"), Field("is_final", "BOOLEAN"),
               Field("pane_index", "INTEGER")]  # fmt: skip
    return Schema(tuple(fields))


@beam.typehints.with_output_types(tuple[tuple[tuple, int], tuple[tuple, float]])
class _KeyByWindow(KeyByGroup):
    """Record -> ``((group_key, window_start_micros), (values, event_time))`` per window.

    Window starts follow Beam's FixedWindows and SlidingWindows (offset 0), in microseconds;
    the global window has start 0 (its rows carry no bounds). Refused records as `KeyByGroup`.
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter: bool) -> None:
        super().__init__(spec, pipeline, dead_letter=dead_letter)
        window = spec.window
        self._global = window.type == "global"
        self._size = round(window.size * 1_000_000)
        self._every = round((window.every or window.size) * 1_000_000)

    def process(self, record: Record, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        event_time = float(timestamp)
        try:
            value = self._combine.prepare(record.data, event_time)
        except RecordError as exc:
            yield from self._failures.failed(record, exc, event_time)
            return
        self._aggregated.inc()
        key = group_key(record.data, self._group_by)
        if self._global:
            yield (key, 0), value
            return
        for start in window_starts(timestamp.micros, self._size, self._every):
            yield (key, start), value


def window_starts(micros: int, size: int, every: int) -> Iterator[int]:
    """Yields the starts of the windows (``size`` long, one every ``every``) holding ``micros``.

    All in microseconds, as Beam's FixedWindows and SlidingWindows (offset 0) compute them.
    """
    start = micros - micros % every
    while start > micros - size:
        yield start
        start -= every


class FinalRow(beam.DoFn):
    """``((group_key, window_start_micros), aggregates)`` -> the output `Record` (final pane)."""

    def __init__(self, spec: AggregateSpec) -> None:
        self._group_by = spec.group_by
        self._having = spec.having
        self._global = spec.window.type == "global"
        self._size = spec.window.size

    def setup(self) -> None:
        # Window bounds as text, by window start: many groups share each window.
        self._bounds: dict[int, tuple[str | None, str | None]] = {}

    def process(self, element: tuple[tuple[tuple, int], dict[str, Any]]) -> Iterator[Any]:
        (key, start_micros), aggregates = element
        row: dict[str, Any] = dict(zip(self._group_by, key, strict=True))
        start = start_micros / 1_000_000
        bounds = self._bounds.get(start_micros)
        if bounds is None:
            bounds = (None, None)
            if not self._global:
                bounds = (format_timestamp(start), format_timestamp(start + self._size))
            self._bounds[start_micros] = bounds
        row["window_start"], row["window_end"] = bounds
        row.update(aggregates)
        row.update(timing="ON_TIME", is_final=True, pane_index=0)
        if passes(self._having, row):
            end = windows.GlobalWindow().max_timestamp() if self._global else start + self._size
            yield windows.TimestampedValue(Record(row), end - 1e-6 if not self._global else end)


def _window_fn(window: WindowSpec) -> windows.WindowFn:
    if window.type == "tumbling":
        return windows.FixedWindows(window.size)
    if window.type == "hopping":
        return windows.SlidingWindows(window.size, window.every)
    if window.type == "session":
        return windows.Sessions(window.gap)
    return windows.GlobalWindows()


def _trigger(spec: AggregateSpec, lateness: float, bounded: bool) -> triggers.TriggerFn:
    """Returns the trigger.

    Args:
        spec: the aggregation.
        lateness: what the shuffle allows (declared plus the gate's slack).
        bounded: the input is bounded (a batch run, which has no processing-time clock:
            time-based early firings are left out, and a global window fires once at the end).
    """
    trigger = spec.trigger
    early: triggers.TriggerFn | None = None
    if trigger.early_seconds and bounded:
        early = None
    elif trigger.early_seconds:
        # Beam takes whole seconds here.
        early = triggers.AfterProcessingTime(max(1, round(trigger.early_seconds)))
    elif trigger.early_count:
        early = triggers.AfterCount(trigger.early_count)
    if spec.window.type == "global":
        return triggers.AfterWatermark() if early is None else triggers.Repeatedly(early)
    # Every record the shuffle keeps must reach a pane, so a late firing exists whenever the
    # shuffle allows lateness, including the gate's slack.
    late = triggers.AfterCount(1) if lateness > 0 else None
    return triggers.AfterWatermark(early=early, late=late)


class WindowedAggregate(beam.PTransform):
    """Aggregates `Record`s per group and event-time window, as an `AggregateSpec` says.

    Input: `Record`s timestamped with their event time (as `ParseJson` emits them). Returns
    ``(rows, errors)``: ``rows`` are `Record`s whose data is the output row described in this
    module; ``errors`` are dead-letter dicts (step ``aggregate``) of records that came too late
    (reason ``late``) or that the spec refuses (``bad_value``, ``expression_limit``,
    ``bad_timestamp``). Records that enter the aggregation are counted as ``aggregated``.

    Args:
        spec: the aggregation.
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter_late: dead-letter late and refused records (the default); ``False`` only
            counts them, in ``late_records`` and ``not_aggregated.<reason>``, for a side
            aggregation whose records are also written whole elsewhere (``errors`` is then
            empty).
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter_late: bool = True) -> None:
        super().__init__()
        self._spec = spec
        self._pipeline = pipeline
        self._dead_letter_late = dead_letter_late

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        spec = self._spec
        # Without late firings, records after the on-time pane are late.
        lateness = spec.allowed_lateness if spec.trigger.late else 0.0
        if records.is_bounded and spec.window.type != "session" and not spec.trigger.early_count:
            return self._batch(records)
        # Imported here because that module builds on this one.
        from transforms.aggregate_sessions import BoundedSessions

        if records.is_bounded and BoundedSessions.supports(spec):
            return records | "Sessions" >> BoundedSessions(
                spec, self._pipeline, self._dead_letter_late
            )
        if spec.window.type == "global" or records.is_bounded:
            # A global window never closes, and a bounded input has nothing late.
            keyed = records | "Key" >> beam.ParDo(
                KeyByGroup(spec, self._pipeline, dead_letter=self._dead_letter_late)
            ).with_outputs(FAILED, main="keyed")
            errors = keyed[FAILED]
            keyed = keyed.keyed
            slack = 0.0
        else:
            sharded = records | "Shard" >> beam.ParDo(
                _KeyByShard(spec, self._pipeline, self._dead_letter_late)
            ).with_outputs(FAILED, main="sharded")
            gated = sharded.sharded | "Lateness gate" >> beam.ParDo(
                _LatenessGate(spec.window, lateness)
            ).with_outputs("late", main="on_time")
            keyed = gated.on_time
            late = gated.late | "Count late" >> Count(LATE)
            if self._dead_letter_late:
                late = late | "Late to dead letter" >> beam.ParDo(
                    _LateToDeadLetter(self._pipeline, spec.window, lateness)
                )
            else:
                late = late | "Only counted" >> beam.Filter(lambda record: False)
            errors = (sharded[FAILED], late) | "Errors" >> beam.Flatten()
            slack = spec.window.step
        accumulation = (
            triggers.AccumulationMode.ACCUMULATING
            if spec.trigger.accumulating
            else triggers.AccumulationMode.DISCARDING
        )
        rows = (
            keyed
            | "Window"
            >> beam.WindowInto(
                _window_fn(spec.window),
                trigger=_trigger(spec, lateness + slack, records.is_bounded),
                accumulation_mode=accumulation,
                allowed_lateness=Duration.of(lateness + slack),
            )
            | "Aggregate" >> beam.CombinePerKey(SpecCombineFn(spec))
            | "Rows" >> beam.ParDo(_ToRow(spec))
        )
        return rows, errors

    def _batch(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        """The bounded fast path: windows by arithmetic, one final pane per group and window.

        A bounded input has a single, final pane per window and nothing late, so Beam's
        windowing machinery (about 26 us per element) and the lateness gate are left out:
        records are keyed by (group key, window start) and combined before the shuffle.
        """
        spec = self._spec
        keyed = records | "Key by window" >> beam.ParDo(
            _KeyByWindow(spec, self._pipeline, self._dead_letter_late)
        ).with_outputs(FAILED, main="keyed")
        rows = (
            keyed.keyed
            | "Aggregate" >> beam.CombinePerKey(SpecCombineFn(spec))
            | "Rows" >> beam.ParDo(FinalRow(spec))
        )
        return rows, keyed[FAILED]
