"""The suite's steps as Beam YAML transforms: Parse, Dedup, Route and Enrich on rows.

Each is a thin adapter: it converts rows to the suite's `Block`s (`rows`), applies the one
implementation of the step, and converts back; ``error_handling`` follows Beam YAML
(`outputs`). In a pipeline::

    - type: Parse
      input: Read
      config:
        schema: builtin:events
        event_time_field: ts
        keep_origin: true
        error_handling: {output: errors}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam

from pipelines.framework.spine import ParseSettings, parse_messages
from pipelines.yaml_provider.aggregates import aggregate_spec
from pipelines.yaml_provider.outputs import (
    DEFAULT_PIPELINE,
    ErrorHandling,
    RowStep,
    with_errors,
)
from pipelines.yaml_provider.rows import BlocksToRows, RowShape, as_data, message_of
from transforms.blocks import Batch, Block
from transforms.cdc.debezium import DropTombstones
from transforms.dedup import TIME_DOMAINS
from transforms.dedup import Dedup as DedupStep
from transforms.durations import parse_duration
from transforms.enrich.base import EnrichSettings, enrich_from_uri, parse_key
from transforms.fields import CheckFields, FieldCheck, RequiredField
from transforms.io.endpoint import Endpoint
from transforms.message import Message
from transforms.parse import DEFAULT_MAX_BYTES
from transforms.route import Route as RouteStep
from transforms.route import RouteSpec, tagged
from transforms.schema import Field, Schema

__all__ = ["Dedup", "Enrich", "Parse", "Route"]


class _MessagesFn(beam.DoFn):
    def __init__(self, payload_field: str) -> None:
        self._payload_field = payload_field

    def process(self, row: Any) -> Iterator[Message]:
        yield message_of(as_data(row), self._payload_field)


class Parse(beam.PTransform):
    """Parses message rows (JSON payloads) into record rows, with their event times.

    The pipelines' own parse (`pipelines.framework.spine.parse_messages`): the schema, the event
    time, the payload limit and the UDF are their options. Input rows hold the payload (bytes or
    text) in ``payload_field``, and optionally ``attributes`` and ``source`` (rows of
    ``ReadFromEndpoint``; ``line`` of ``ReadFromText`` with ``payload_field: line``). Output rows
    hold the record's fields (the schema's, typed), each at its event time; failures are dead
    letters of step ``parse`` (``udf``) with the original bytes.

    Args:
        schema: a BigQuery schema or JSON Schema file, ``builtin:events``, or ``none`` (any JSON
            object; the rows then have no fixed schema).
        event_time_field: the field holding the event time (dotted for nested fields), or
            ``attribute:NAME``; empty or ``none``: the input's timestamps.
        spec: the aggregation spec of a later ``WindowedAggregate`` (as it takes it): its
            ``event_time``, when it names one, is the event time field (over
            ``event_time_field``), as in the ``metrics_to_redis`` pipeline, which refuses a
            spec without event times too.
        event_time_unit: the unit of epoch numbers: ``auto``, ``s``, ``ms`` or ``us``.
        max_payload_bytes: larger payloads are dead-lettered as ``too_large``.
        unknown_fields: fields the schema does not declare: ``reject`` or ``drop`` the field.
        udf_file: a Python file whose ``udf_function`` is applied to every parsed record.
        udf_function: the function's name.
        keep_origin: output rows carry the message in ``message_origin``, so that the dead
            letters of later steps hold the original bytes (the suite's sinks leave it out).
        payload_field: the input field holding the payload.
        required_keys: fields every record must hold as a scalar (the group keys a later
            aggregation reads): a record without one is a dead letter of step ``fields``
            before any sink sees it, as with a ``metrics_to_redis`` spec's group keys (not
            for a side aggregation, ``dead_letter_late: false``, which counts such records).
        skip_tombstones: drop empty payloads (Debezium tombstones), counted as
            ``dropped.tombstone``.
        pipeline: the pipeline's name in dead letters.
        error_handling: ``{output: NAME}``: failures as dead-letter rows on ``NAME``.
    """

    def __init__(
        self,
        schema: str = "none",
        event_time_field: str = "",
        event_time_unit: str = "auto",
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        unknown_fields: str = "reject",
        udf_file: str = "",
        udf_function: str = "",
        keep_origin: bool = False,
        payload_field: str = "payload",
        required_keys: Sequence[str] = (),
        skip_tombstones: bool = False,
        spec: Mapping[str, Any] | str = "",
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        aggregation = aggregate_spec(spec) if spec else None
        values = {
            "schema": schema,
            "event_time_field": event_time_field or "none",
            "event_time_unit": event_time_unit,
            "max_payload_bytes": max_payload_bytes,
            "unknown_fields": unknown_fields,
            "udf_file": udf_file,
            "udf_function": udf_function,
        }
        required = tuple(RequiredField(name, "key", "required_keys") for name in required_keys)
        # metrics_to_redis's rule (`pipelines.catalog.metrics_to_redis.configure`).
        spec_time = aggregation.event_time if aggregation is not None else None
        settings = ParseSettings.from_options(values, event_time_field=spec_time)
        if aggregation is not None and settings.event_time is None:
            raise ValueError("an aggregation needs event times: set event_time in the spec")
        self._settings = replace(settings, required=required)
        if self._settings.schema is not None and unknown_fields == "keep":
            raise ValueError("unknown_fields: rows hold the schema's fields; use reject or drop")
        self._pipeline = pipeline
        self._shape = RowShape(self._settings.schema, keep_origin)
        self._payload_field = payload_field
        self._skip_tombstones = skip_tombstones
        self._handling = ErrorHandling(error_handling)

    def expand(self, rows: beam.PCollection) -> Any:
        messages = rows | "To messages" >> beam.ParDo(_MessagesFn(self._payload_field)) | Batch()
        if self._skip_tombstones:
            messages = messages | "Drop tombstones" >> DropTombstones()
        records, errors = parse_messages(messages, self._pipeline, self._settings)
        parsed = records | "To rows" >> BlocksToRows(self._shape)
        return with_errors({"main": parsed}, [errors], self._handling)


class Dedup(RowStep):
    """Drops repeated records within a span of event or processing time (counted).

    Args:
        key: the field identifying a record (dotted for nested fields), or ``@message_id`` /
            ``@source`` (rows parsed with ``keep_origin``).
        within: repeats within this span are duplicates, e.g. ``10m``.
        time_domain: ``event_time`` or ``processing_time``.
    """

    def __init__(
        self,
        key: str,
        within: str = "10m",
        time_domain: str = "event_time",
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if time_domain not in TIME_DOMAINS:
            raise ValueError(f"time_domain {time_domain!r}: use one of {TIME_DOMAINS}")
        self._step = DedupStep(key, parse_duration(within, "within"), time_domain)
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        return incoming

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        return blocks | "Dedup" >> self._step, []


class Route(RowStep):
    """Sends each record to the outputs its rules name; one output per rule and the default.

    Args:
        rules: ``{name: expression}`` in order, e.g. ``{big: "amount > 1000"}``.
        default: the output of records that match no rule.
        mode: ``first`` (the first matching rule) or ``all`` (every matching rule).
        output_field: set this field of every record a rule sends on to the rule's name (an
            alert's ``alert: high_amount``); records of the default output are left as they are.
        error_handling: ``{output: NAME}``: records a rule fails on, as dead-letter rows.
    """

    def __init__(
        self,
        rules: Mapping[str, str],
        default: str = "default",
        mode: str = "first",
        output_field: str = "",
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._step = RouteStep(RouteSpec.parse(dict(rules), default, mode), pipeline)
        self._output_field = output_field
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        if not self._output_field or incoming.schema is None:
            return incoming
        kept = tuple(f for f in incoming.schema.fields if f.name != self._output_field)
        return incoming.with_fields(
            Schema((*kept, Field(self._output_field, "STRING"))), incoming.derived
        )

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        routes, errors = blocks | "Route" >> self._step
        if self._output_field:
            default = self._step.spec.default
            routes = {
                name: routed
                if name == default
                else routed
                | f"Name {name}"
                >> beam.Map(tagged, name, self._output_field).with_output_types(Block)
                for name, routed in routes.items()
            }
        return routes, [errors]


class Enrich(RowStep):
    """Merges each record's reference row into it.

    The reference is looked up in Redis per record, or a table (a file, BigQuery, Redis hashes)
    held in a side input; a record lacking a field of the key is dead-lettered (``fields``).

    Args:
        reference: the reference URI, e.g. ``redis://HOST:PORT/0?key=customer:{customer_id}``
            or ``file:///profiles.jsonl?key={customer_id}``.
        into: the field the reference row is nested under.
        prefix: merge the row's fields at the top level with this prefix instead of ``into``.
        fields: the reference fields kept (all when empty).
        on_missing: no reference row: ``pass`` (nulls), ``drop`` (counted) or ``dead_letter``.
        on_unavailable: reference unreachable: ``dead_letter`` or ``missing``.
    """

    def __init__(
        self,
        reference: str,
        into: str | None = "reference",
        prefix: str | None = None,
        fields: Sequence[str] = (),
        on_missing: str = "pass",
        on_unavailable: str = "dead_letter",
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        settings = EnrichSettings(
            pipeline,
            into=None if prefix is not None else into,
            prefix=prefix,
            fields=tuple(fields),
            missing=on_missing,
            unavailable=on_unavailable,
        )
        self._settings = settings
        self._step = enrich_from_uri(reference, settings)
        key = parse_key(Endpoint.parse(reference).params["key"], "reference")
        self._check = FieldCheck(
            RequiredField(name, "join_key", "reference key") for name in key.fields
        )
        self.pipeline_name = pipeline
        self.handling = ErrorHandling(error_handling)

    def shape(self, incoming: RowShape) -> RowShape:
        if incoming.schema is None:
            return incoming
        settings = self._settings
        added = (
            [settings.into]
            if settings.into is not None
            else [settings.prefix + name for name in settings.fields]  # type: ignore[operator]
        )
        if settings.into is None and not settings.fields:
            return incoming.with_fields(None, incoming.derived)
        kept = [f for f in incoming.schema.fields if f.name not in added]
        fields = tuple(kept) + tuple(Field(name, "JSON") for name in added)
        return incoming.with_fields(Schema(fields), incoming.derived)

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        checked, missing = blocks | "Check key" >> CheckFields(self.pipeline_name, self._check)
        enriched, errors = checked | "Enrich" >> self._step
        return enriched, [missing, errors]
