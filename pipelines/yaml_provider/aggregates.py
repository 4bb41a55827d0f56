"""The suite's stateful steps as Beam YAML transforms: WindowedAggregate, Sessionize, ApplyChanges.

Thin adapters over the one implementation of each step (see `steps` for how rows become blocks
and back). Output rows are typed: the aggregate's rows from the spec and the input's fields,
session rows likewise, changes by `transforms.cdc.apply.CHANGE_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from pipelines.catalog.metrics_to_redis import load_spec
from pipelines.yaml_provider.outputs import DEFAULT_PIPELINE, ErrorHandling, RowStep
from pipelines.yaml_provider.rows import RowShape
from transforms.aggregate.spec import AggregateSpec
from transforms.aggregate.windowed import WindowedAggregate as AggregateStep
from transforms.aggregate.windowed import row_schema
from transforms.cdc.apply import CHANGE_SCHEMA
from transforms.cdc.apply import ApplyChanges as ApplyStep
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import FORMATS, NormalizeChanges
from transforms.durations import parse_duration
from transforms.fields import CheckFields, FieldCheck, RequiredField, aggregate_fields
from transforms.sessions import Sessionize as SessionStep
from transforms.sessions import SessionSpec, session_schema

__all__ = ["ApplyChanges", "Sessionize", "WindowedAggregate", "aggregate_spec"]


def aggregate_spec(spec: Mapping[str, Any] | str) -> AggregateSpec:
    """An aggregation spec given inline (a mapping), as YAML text, a file or ``builtin:NAME``."""
    return AggregateSpec.from_dict(spec) if isinstance(spec, Mapping) else load_spec(spec)


def _checked(
    step: RowStep, blocks: beam.PCollection, fields: Sequence[RequiredField]
) -> tuple[beam.PCollection, beam.PCollection]:
    """Checks the fields a step reads (`transforms.fields`) before it, as a pipeline's read does."""
    return blocks | "Check fields" >> CheckFields(step.pipeline_name, FieldCheck(fields))


class WindowedAggregate(RowStep):
    """Aggregates records per group and event-time window, as an aggregation spec says.

    Output rows: the group keys, ``window_start``, ``window_end``, the aggregates, ``timing``
    (``EARLY``, ``ON_TIME``, ``LATE``), ``is_final`` and ``pane_index``, each in its window.

    Args:
        spec: the aggregation, inline (``{window: {type: tumbling, size: 60s}, group_by: [...],
            aggregates: {requests: count()}, ...}``), as YAML text, a file path, or
            ``builtin:api_metrics``.
        dead_letter_late: records too late for their window are dead letters (``late``);
            ``false`` (a side aggregation, whose records are written elsewhere): they are only
            counted, as are records without a group key (``not_aggregated.<reason>``).
        pipeline: the pipeline's name in dead letters.
        error_handling: ``{output: NAME}``: failures (bad values, late records) as rows.
    """

    def __init__(
        self,
        spec: Mapping[str, Any] | str,
        dead_letter_late: bool = True,
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._spec = aggregate_spec(spec)
        self._step = AggregateStep(self._spec, pipeline, dead_letter_late=dead_letter_late)
        self._side = not dead_letter_late
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        schema = row_schema(self._spec, incoming.schema)
        if incoming.schema is None:  # group keys of unknown type
            schema = type(schema)(
                tuple(
                    type(f)(f.name, "JSON") if f.name in self._spec.group_by else f
                    for f in schema.fields
                )
            )
        return RowShape(schema, derived=True)

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        if self._side:  # the step counts what it cannot key (not_aggregated.<reason>)
            rows, errors = blocks | "Aggregate" >> self._step
            return rows, [errors]
        checked, missing = _checked(self, blocks, aggregate_fields(self._spec))
        rows, errors = checked | "Aggregate" >> self._step
        return rows, [missing, errors]


class Sessionize(RowStep):
    """Groups records into sessions per key: a session ends after ``gap`` without events.

    Output rows: the key, ``session_start``, ``session_end``, ``event_count``, ``duration_s``,
    ``first_<f>`` / ``last_<f>`` of ``include_fields``, and ``timing``. The key and the included
    values are the records' own: those the input rows do not type hold any JSON value.

    Args:
        key_field: the field a session belongs to, e.g. ``user_id``.
        gap: the inactivity that ends a session, e.g. ``30m``.
        allowed_lateness: how long late records still update a closed session.
        early: emit EARLY rows of open sessions this often (streaming runs), e.g. ``30s``.
        include_fields: fields of the first and last events to keep.
    """

    def __init__(
        self,
        key_field: str,
        gap: str = "30m",
        allowed_lateness: str = "0s",
        early: str = "",
        include_fields: Sequence[str] = (),
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._spec = SessionSpec(
            key_field=key_field,
            gap=parse_duration(gap, "gap"),
            allowed_lateness=parse_duration(allowed_lateness, "allowed_lateness"),
            early_seconds=parse_duration(early, "early") if early else 0.0,
            include_fields=tuple(include_fields),
        )
        self._step = SessionStep(self._spec, pipeline)
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        # The key and the first and last values are the records' own: a field the records do
        # not type holds any JSON value (`session_schema` declares it STRING for the sinks).
        schema = session_schema(self._spec, incoming.schema)
        spec = self._spec
        copies = {spec.key_field: spec.key_field}
        copies.update(
            (f"{end}_{name}", name) for end in ("first", "last") for name in spec.include_fields
        )
        loose = frozenset(
            f.name
            for f in schema.fields
            if f.name in copies and not incoming.holds(copies[f.name], f)
        )
        return RowShape(schema, derived=True, loose=loose)

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        key = RequiredField(self._spec.key_field, "key", "key_field")
        checked, missing = _checked(self, blocks, [key])
        rows, errors = checked | "Sessionize" >> self._step
        return rows, [missing, errors]


class ApplyChanges(RowStep):
    """Applies Debezium or Datastream change envelopes in order per primary key.

    Input rows: parsed envelopes (Parse with ``skip_tombstones``, ``keep_origin`` for the Kafka
    message key). Output rows: the latest-state stream of applied changes (``table``, ``key``,
    ``op``, ``row``, ``sequence``, ``source_ts``), or with ``final_state`` (a bounded input) the
    final rows of every table.

    Args:
        format: ``debezium``, ``datastream`` or ``auto``.
        key_columns: primary keys, e.g. ``id`` or ``inventory.orders=order_id,line``.
        delete_retention: how long a deleted key is remembered, e.g. ``7d``.
        final_state: emit the final tables instead of the stream (bounded input).
    """

    def __init__(
        self,
        format: str = "auto",
        key_columns: str = "",
        delete_retention: str = "7d",
        final_state: bool = False,
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"format {format!r}: use one of {FORMATS}")
        self._normalize = NormalizeChanges(pipeline, format, key_columns)
        self._apply = ApplyStep(pipeline, delete_retention, latest_only=final_state)
        self._final_state = final_state
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        if self._final_state:  # final rows are no single message's
            return RowShape(CHANGE_SCHEMA, derived=True)
        return incoming.with_fields(CHANGE_SCHEMA)

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        changes, bad = blocks | "Normalize" >> self._normalize
        applied, errors = changes | "Apply" >> self._apply
        if self._final_state:
            final = FinalState(latest_per_key=self._apply.compacts(changes))
            applied = applied | "Final state" >> final
        return applied, [bad, errors]
