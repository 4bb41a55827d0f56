"""WindowedAggregate: group records into event-time windows and compute the spec's aggregates.

    Blocks of Records -> prepare and key (refused -> dead letter)
        [-> lateness gate (unbounded, windowed input): late records -> dead letter, "late"]
        -> fold into partial aggregates per (group, window slice) within the bundle
        -> WindowInto(windows, trigger, lateness) -> CombinePerKey(merge partials)
        -> output rows [-> having] -> Blocks of Records

One implementation for bounded and unbounded input, every runner: the records of a block are
folded into partial aggregates inside the bundle (`transforms.aggregate.fold`), so the shuffle
carries partials, not records, and Beam's own windowing combines them, so panes (EARLY,
ON_TIME, LATE), lateness and triggers keep Beam's semantics. A count trigger counts elements:
with one, each record is its own partial.

A bounded input without a count trigger (tumbling, hopping or global windows) has exactly one
pane per group and window, the ``ON_TIME`` one Beam fires at the end of input. Beam's trigger
machinery costs far more per (group, window) than the aggregation itself, so there the partials
are folded per window and keyed by it, combined in the global window, and each row is emitted
as Beam would emit it (its window, its last instant, ``ON_TIME``, pane 0, final unless a late
firing may follow). Sessions merge windows, so they always take Beam's windowing.

An output row (the data of an output `Record`) looks like::

    {"endpoint": "/api/cart",                      # the group keys
     "window_start": "2026-11-25T10:00:00Z", "window_end": "2026-11-25T10:01:00Z",
     "requests": 120, "errors": 3, ...,            # the aggregates
     "timing": "ON_TIME", "is_final": False, "pane_index": 1}

``timing`` is ``EARLY``, ``ON_TIME`` or ``LATE``; a sink keyed by group keys and window
overwrites earlier panes, so a re-fired pane replaces the figure instead of adding to it. A
row's `Record.event_time` is its window's last instant (end minus 1 us).

Late records: Beam's GroupByKey drops records that arrive after a window's end plus the allowed
lateness, silently; on an unbounded input the lateness gate (`transforms.aggregate.gate`)
dead-letters them first, with reason ``late``. A bounded input has nothing late, and the
global window never closes: neither has a gate.
 Records that cannot be aggregated (`transforms.aggregate.aggregators.SpecCombineFn.prepare` says
which: reasons ``bad_value``, ``expression_limit``, ``bad_timestamp``) are dead-lettered with step
``aggregate`` before they are keyed; a ``having`` that fails on a row counts ``having_failed``
and leaves the row out.

``is_final`` is Beam's own flag of the last pane; Beam rarely sets it (it does not fire a final
pane when a window expires), so read ``timing`` with the allowed lateness instead: with none,
the ON_TIME pane is the window's last.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms import window as windows
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.aggregate.fold import (
    AGGREGATED,
    FAILED,
    NOT_AGGREGATED,
    FoldPartials,
    MergePartials,
    PrepareBlock,
    group_key,
    key_values,
)
from transforms.aggregate.gate import LATE_TAG, LatenessGate, ShardBlocks
from transforms.aggregate.spec import AggregateSpec, WindowSpec
from transforms.blocks import Batch
from transforms.event_time import format_timestamp
from transforms.expressions import Expression
from transforms.message import Record
from transforms.schema import Field, Schema

__all__ = [
    "AGGREGATED",
    "FAILED",
    "HAVING_FAILED",
    "LATE",
    "NOT_AGGREGATED",
    "WindowedAggregate",
    "group_key",
    "passes",
    "row_schema",
]

LATE = metrics.LATE
HAVING_FAILED = metrics.HAVING_FAILED
_TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE"}


def passes(having: Expression | None, row: dict[str, Any]) -> bool:
    """Whether an output row passes ``having``; a failing ``having`` counts and leaves it out."""
    if having is None:
        return True
    try:
        return bool(having(row))
    except Exception:  # noqa: BLE001 (any failure on one row)
        metrics.counter(HAVING_FAILED).inc()
        return False


class _ToRow(beam.DoFn):
    """``(group_key, aggregates)`` in a window and pane -> the output `Record`."""

    def __init__(self, spec: AggregateSpec) -> None:
        self._group_by = spec.group_by
        self._having = spec.having

    def setup(self) -> None:
        # Window bounds as text, by window: many groups share each window.
        self._bounds: dict[Any, tuple[str | None, str | None]] = {}

    def process(
        self,
        element: tuple[tuple, dict[str, Any]],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Record]:
        key, aggregates = element
        row = self.row(key, window, aggregates)
        row.update(timing=_TIMING.get(pane.timing, "UNKNOWN"), is_final=pane.is_last,
                   pane_index=pane.index)  # fmt: skip
        if passes(self._having, row):
            yield Record(row, None, float(window.max_timestamp()))

    def row(self, key: tuple, window: Any, aggregates: dict[str, Any]) -> dict[str, Any]:
        """The row of a group and window, without its pane fields."""
        row: dict[str, Any] = dict(zip(self._group_by, key_values(key), strict=True))
        bounds = self._bounds.get(window)
        if bounds is None:
            bounds = (None, None)
            if isinstance(window, windows.IntervalWindow):
                bounds = (
                    format_timestamp(float(window.start)),
                    format_timestamp(float(window.end)),
                )
            self._bounds[window] = bounds
        row["window_start"], row["window_end"] = bounds
        row.update(aggregates)
        return row


class _FinalRow(_ToRow):
    """``((group_key, window), aggregates)`` -> the `Record` of the one pane of a bounded input.

    What Beam fires for a bounded input without a count trigger: one ``ON_TIME`` pane (index
    0) per group and window, last unless a late firing may follow, in its window and at its
    last instant.
    """

    def __init__(self, spec: AggregateSpec, final: bool) -> None:
        super().__init__(spec)
        self._final = final

    def process(self, element: tuple[tuple[tuple, Any], dict[str, Any]]) -> Iterator[Any]:  # type: ignore[override]
        (key, bounds), aggregates = element
        window: windows.BoundedWindow = windows.GlobalWindow()
        if bounds is not None:
            window = windows.IntervalWindow(
                Timestamp(micros=bounds[0]), Timestamp(micros=bounds[1])
            )
        row = self.row(key, window, aggregates)
        row.update(timing="ON_TIME", is_final=self._final, pane_index=0)
        if passes(self._having, row):
            end = window.max_timestamp()
            yield WindowedValue(Record(row, None, float(end)), end, (window,))


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
    if early is None:
        # An on-time pane, then a late pane for each late record the shuffle keeps (it keeps
        # them for the lateness, including the gate's slack): Beam's default trigger, for which
        # Beam's trigger machinery keeps far less state than for AfterWatermark(late=...)
        # (measured on the streaming DirectRunner: CONTRIBUTING.md, "Speed quirks").
        return triggers.DefaultTrigger()
    # Every record the shuffle keeps must reach a pane, so a late firing exists whenever the
    # shuffle allows lateness, including the gate's slack.
    late = triggers.AfterCount(1) if lateness > 0 else None
    return triggers.AfterWatermark(early=early, late=late)


class WindowedAggregate(beam.PTransform):
    """Aggregates blocks of `Record`s per group and event-time window, as an `AggregateSpec` says.

    Input: `Block`s of `Record`s, each with its `Record.event_time` (a record without one takes
    its block's timestamp). Returns ``(rows, errors)``: ``rows`` are `Block`s of `Record`s
    whose data is the output row described in this module; ``errors`` are dead-letter dicts
    (step ``aggregate``) of records that came too late (reason ``late``) or that the spec
    refuses (``bad_value``, ``expression_limit``, ``bad_timestamp``). Records that enter the
    aggregation are counted as ``aggregated``.

    Args:
        spec: the aggregation.
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter_late: dead-letter late and refused records (the default); ``False`` only
            counts them, in ``late_records`` and ``not_aggregated.<reason>``, for a side
            aggregation whose records are also written whole elsewhere (``errors`` is then
            empty). Such a side aggregation checks the group keys and aggregated fields itself
            and counts a record it cannot key in ``not_aggregated.missing_field`` or
            ``not_aggregated.wrong_type``; with the default, the pipeline requires them after
            Parse (`transforms.fields.CheckFields`).
    """

    def __init__(self, spec: AggregateSpec, pipeline: str, dead_letter_late: bool = True) -> None:
        super().__init__()
        self._spec = spec
        self._pipeline = pipeline
        self._dead_letter_late = dead_letter_late

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        spec = self._spec
        # Without late firings, records after the on-time pane are late.
        lateness = spec.allowed_lateness if spec.trigger.late else 0.0
        prepared = blocks | "Prepare" >> beam.ParDo(
            PrepareBlock(spec, self._pipeline, self._dead_letter_late)
        ).with_outputs(FAILED, main="items")
        items, errors = prepared.items, [prepared[FAILED]]
        slack = 0.0
        if not blocks.is_bounded and spec.window.type != "global":
            gate = LatenessGate(spec.window, lateness, self._pipeline, self._dead_letter_late)
            gated = (
                items
                | "Shard" >> beam.ParDo(ShardBlocks())
                | "Lateness gate" >> beam.ParDo(gate).with_outputs(LATE_TAG, main="on_time")
            )
            items = gated.on_time
            if self._dead_letter_late:
                errors.append(gated[LATE_TAG])
            slack = spec.window.step
        accumulation = (
            triggers.AccumulationMode.ACCUMULATING
            if spec.trigger.accumulating
            else triggers.AccumulationMode.DISCARDING
        )
        if blocks.is_bounded and not spec.trigger.early_count and spec.window.type != "session":
            rows = (
                items
                | "Fold" >> beam.ParDo(FoldPartials(spec, per_record=False, by_window=True))
                | "Aggregate" >> beam.CombinePerKey(MergePartials(spec))
                | "Rows" >> beam.ParDo(_FinalRow(spec, final=lateness == 0))
                | "Blocks" >> Batch()
            )
            return rows, errors | "Errors" >> beam.Flatten()
        rows = (
            items
            | "Fold" >> beam.ParDo(FoldPartials(spec, per_record=spec.trigger.early_count > 0))
            | "Window"
            >> beam.WindowInto(
                _window_fn(spec.window),
                trigger=_trigger(spec, lateness + slack, blocks.is_bounded),
                accumulation_mode=accumulation,
                allowed_lateness=Duration.of(lateness + slack),
            )
            | "Aggregate" >> beam.CombinePerKey(MergePartials(spec))
            | "Rows" >> beam.ParDo(_ToRow(spec))
            | "Blocks" >> Batch()
        )
        return rows, errors | "Errors" >> beam.Flatten()
