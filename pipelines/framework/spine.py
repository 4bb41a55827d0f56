"""The spine every pipeline shares: source -> Parse -> steps -> sinks, failures -> dead letters.

`SpineConfig` holds the validated endpoints and parse settings that every pipeline has; a
pipeline's ``build`` declares its steps through a `Spine`, which owns the graph's error contract:
it collects every step's and sink's error output and writes them through the dead-letter writer,
and it refuses a graph that leaves an error output unconsumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import apache_beam as beam

from pipelines.framework.options import Option, OptionError
from pipelines.framework.udf import UDF_OPTIONS, ApplyUdf, Udf
from transforms.dead_letter_writer import (
    DeadLetterWriter,
    UnroutedErrors,
    dead_letter_sink,
    unrouted_errors,
)
from transforms.fields import CheckFields, FieldCheck, RequiredField
from transforms.io.base import Sink, SinkContext, Source
from transforms.io.registry import make_sink, make_source
from transforms.metrics import READ, Count
from transforms.parse import DEFAULT_MAX_BYTES, EventTime, ParseJson
from transforms.schema import Schema

__all__ = [
    "PARSE_OPTIONS",
    "ParseSettings",
    "Spine",
    "SpineConfig",
    "SpineView",
    "load_schema",
    "parse_messages",
    "read_and_parse",
]

BUILTIN_SCHEMAS = ("events",)

PARSE_OPTIONS = (
    Option(
        "schema",
        "Record schema: a BigQuery schema or JSON Schema file, 'builtin:events', or 'none' to "
        "accept any JSON object.",
        default="none",
        group="Parse",
    ),
    Option(
        "event_time_field",
        "Field holding the event time (dotted for nested fields), or 'attribute:NAME' to read "
        "it from a message attribute; 'none' keeps the source's timestamps.",
        default="ts",
        group="Parse",
    ),
    Option(
        "event_time_unit",
        "Unit of epoch-number event times.",
        default="auto",
        choices=("auto", "s", "ms", "us"),
        param_type="ENUM",
        group="Parse",
    ),
    Option(
        "max_payload_bytes",
        "Larger payloads are dead-lettered with reason too_large.",
        type=int,
        default=DEFAULT_MAX_BYTES,
        param_type="NUMBER",
        group="Parse",
    ),
    Option(
        "unknown_fields",
        "What to do with fields the schema does not declare.",
        default="reject",
        choices=("reject", "drop", "keep"),
        param_type="ENUM",
        group="Parse",
    ),
) + UDF_OPTIONS


def load_schema(spec: str) -> Schema | None:
    """Reads ``builtin:NAME``, ``none`` or a schema file path."""
    if spec in ("", "none"):
        return None
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN_SCHEMAS:
            raise OptionError(f"--schema={spec}: built-in schemas are {list(BUILTIN_SCHEMAS)}")
        text = resources.files("pipelines.schemas").joinpath(f"{name}.json").read_text()
        return Schema.from_bigquery(json.loads(text)["fields"])
    try:
        return Schema.load(spec)
    except ValueError as exc:
        raise OptionError(f"--schema: {exc}") from None


@dataclass(frozen=True)
class ParseSettings:
    """How a pipeline parses its input.

    Attributes:
        schema: the record schema, or ``None`` for any JSON object.
        event_time: where event times are read, or ``None``.
        max_payload_bytes: the payload size limit.
        unknown_fields: ``reject``, ``drop`` or ``keep``.
        udf: the Python UDF applied to every parsed record, if any.
        required: the fields the pipeline's options name, checked on every record after
            Parse and the UDF (see `transforms.fields`).
    """

    schema: Schema | None
    event_time: EventTime | None
    max_payload_bytes: int
    unknown_fields: Any
    udf: Udf | None = None
    required: tuple[RequiredField, ...] = ()

    @classmethod
    def from_options(
        cls, values: dict[str, Any], event_time_field: str | None = None
    ) -> ParseSettings:
        """Validates the parse options; ``event_time_field`` overrides ``--event_time_field``.

        Raises:
            OptionError: an option cannot be used.
        """
        schema = load_schema(values["schema"])
        field = event_time_field or values["event_time_field"] or None
        if field == "none":
            field = None
        event_time = EventTime.parse(field, values["event_time_unit"]) if field else None
        if schema is not None and event_time is not None and event_time.field is not None:
            top = event_time.field.split(".")[0]
            if top not in schema:
                raise OptionError(
                    f"--event_time_field={field}: the schema has no field {top!r}; "
                    f"its fields are {list(schema.names)}"
                )
        if values["max_payload_bytes"] <= 0:
            raise OptionError("--max_payload_bytes must be positive")
        udf = Udf.from_options(values)
        return cls(schema, event_time, values["max_payload_bytes"], values["unknown_fields"], udf)

    @property
    def time_field(self) -> str | None:
        """The record field holding the event time, if it comes from a field."""
        return self.event_time.field if self.event_time is not None else None


@dataclass(frozen=True)
class SpineConfig:
    """The validated endpoints and parse settings of a pipeline.

    Attributes:
        pipeline: the pipeline's name.
        source: the source, built from ``--source``.
        sink: the main sink, built from ``--sink``.
        dead_letter: the dead-letter sink, built from ``--dead_letter``.
        parse: how the input is parsed.
        max_seconds: how long an endless run lasts (0: until Ctrl-C).
    """

    pipeline: str
    source: Source
    sink: Sink
    dead_letter: Sink
    parse: ParseSettings
    max_seconds: float

    @classmethod
    def from_options(
        cls,
        pipeline: str,
        values: dict[str, Any],
        parse: ParseSettings | None = None,
        output: SinkContext | None = None,
    ) -> SpineConfig:
        """Validates the common options and builds the endpoints.

        Args:
            pipeline: the pipeline's name.
            values: the parsed option values.
            parse: the parse settings, when the pipeline already built them.
            output: what the sink writes, when it is not the parsed records themselves.

        Raises:
            OptionError, EndpointError: an option cannot be used.
        """
        parse = parse or ParseSettings.from_options(values)
        if values["max_seconds"] < 0:
            raise OptionError("--max_seconds must be 0 (no limit) or positive")
        context = output or SinkContext(pipeline, parse.schema, parse.time_field)
        return cls(
            pipeline=pipeline,
            source=make_source(values["source"], parse.max_payload_bytes),
            sink=make_sink(values["sink"], context),
            dead_letter=dead_letter_sink(values["dead_letter"], pipeline),
            parse=parse,
            max_seconds=values["max_seconds"],
        )


class SpineView:
    """Lets a pipeline's config that holds a `SpineConfig` as ``spine`` show its endpoints.

    The runner reads ``source``, ``sink``, ``dead_letter`` and ``max_seconds`` of any config.
    """

    spine: SpineConfig

    @property
    def source(self) -> Source:
        """The source (the runner checks which runners it supports)."""
        return self.spine.source

    @property
    def max_seconds(self) -> float:
        """How long an endless run lasts."""
        return self.spine.max_seconds

    @property
    def sink(self) -> Sink:
        """The main sink."""
        return self.spine.sink

    @property
    def dead_letter(self) -> Sink:
        """The dead-letter sink."""
        return self.spine.dead_letter


def read_and_parse(
    pipeline: beam.Pipeline,
    config: SpineConfig,
    before_parse: beam.PTransform | None = None,
) -> tuple[beam.PCollection, beam.PCollection]:
    """Reads the source, counts what is read, parses it and applies the UDF, if any.

    Then it checks the fields the pipeline's options name (`ParseSettings.required`, see
    `transforms.fields`). Every step takes and gives `transforms.blocks.Block`s, whatever the
    source: a file's chunks, or what one bundle of a stream holds.

    Args:
        pipeline: the Beam pipeline.
        config: the pipeline's endpoints and parse settings.
        before_parse: a step on the Blocks of `Message`s between the read and Parse (e.g. one
            that drops Debezium tombstones, counted).

    Returns:
        ``(blocks, errors)``: Blocks of `Record`s (each with its ``event_time``), and
        dead-letter dicts of what did not parse, what the UDF failed on and what lacks a
        required field.
    """
    messages = pipeline | "Read" >> config.source | "Count read" >> Count(READ)
    if before_parse is not None:
        messages = messages | before_parse
    return parse_messages(messages, config.pipeline, config.parse)


def parse_messages(
    messages: beam.PCollection, pipeline: str, parse: ParseSettings
) -> tuple[beam.PCollection, beam.PCollection]:
    """Parses Blocks of `Message`s, applies the UDF, if any, and checks the required fields.

    Args:
        messages: Blocks of `Message`s.
        pipeline: the pipeline's name, for the dead letters.
        parse: how to parse.

    Returns:
        ``(blocks, errors)`` as `read_and_parse` returns them.
    """
    records, parse_errors = messages | "Parse" >> ParseJson(
        pipeline,
        schema=parse.schema,
        event_time=parse.event_time,
        max_bytes=parse.max_payload_bytes,
        unknown_fields=parse.unknown_fields,
    )
    errors = [parse_errors]
    if parse.udf is not None:
        records, udf_errors = records | "UDF" >> ApplyUdf(
            pipeline, parse.udf, parse.schema, parse.unknown_fields
        )
        errors.append(udf_errors)
    check = FieldCheck(parse.required)
    if check:
        records, field_errors = records | "Check fields" >> CheckFields(pipeline, check)
        errors.append(field_errors)
    if len(errors) == 1:
        return records, parse_errors
    return records, tuple(errors) | "Parse, UDF and field errors" >> beam.Flatten()


class Spine:
    """Builds one pipeline's graph: its steps, and every error output to the dead letters.

    A pipeline's ``build`` declares its steps through a spine::

        with Spine(pipeline, config.spine) as spine:
            records = spine.read()
            rows = spine.apply("Aggregate", WindowedAggregate(spec, NAME), records)
            spine.write("Write", config.sink, rows)

    A step applied with `apply` returns ``(main, errors)`` (main: what the next step takes;
    errors: dead-letter dicts) or only a main output; the spine keeps the errors and hands back
    the main output. `read` keeps the failures of Parse, the UDF and the field checks, `write`
    the records a sink could not write. When the ``with`` block ends, the spine writes all of
    them through the dead-letter writer (`transforms.dead_letter_writer.DeadLetterWriter`), lets
    the source add what must follow every write (`Source.after_write`), and checks the finished
    graph: as in Beam YAML, where an unconsumed error output fails construction, it raises
    `UnroutedErrors` naming every step whose error output does not reach the dead-letter writer
    (a sink, or a step with Beam failures, applied beside the spine; see
    `transforms.dead_letter_writer.unrouted_errors`).

    Args:
        pipeline: the Beam pipeline.
        config: the pipeline's endpoints and parse settings.
    """

    def __init__(self, pipeline: beam.Pipeline, config: SpineConfig) -> None:
        self._pipeline = pipeline
        self._config = config
        self._errors: list[beam.PCollection] = []

    def __enter__(self) -> Spine:
        return self

    def __exit__(self, exc_type: Any, *unused: Any) -> None:
        if exc_type is None:
            self.finish()

    def read(self, before_parse: beam.PTransform | None = None) -> beam.PCollection:
        """Reads, parses and checks the input (`read_and_parse`); returns Blocks of records."""
        records, errors = read_and_parse(self._pipeline, self._config, before_parse)
        self._errors.append(errors)
        return records

    def apply(self, label: str, step: beam.PTransform, pcoll: Any) -> Any:
        """Applies ``step`` to ``pcoll`` as ``label``; keeps its errors, returns its main output."""
        outputs = pcoll | label >> step
        if not isinstance(outputs, tuple):
            return outputs
        main, errors = outputs
        self._errors.append(errors)
        return main

    def write(self, label: str, sink: Sink, blocks: beam.PCollection) -> None:
        """Writes blocks of records through ``sink`` as ``label``; keeps what it could not write."""
        failures = blocks | label >> sink
        if failures is not None:
            self._errors.append(failures)

    def finish(self) -> None:
        """Writes every kept error output as dead letters, then checks the graph.

        Raises:
            UnroutedErrors: an error output of the graph does not reach the dead-letter writer.
        """
        if self._errors:
            errors = tuple(self._errors) | "All errors" >> beam.Flatten()
            _ = errors | "Write dead letters" >> DeadLetterWriter(self._config.dead_letter)
        self._config.source.after_write()
        unrouted = unrouted_errors(self._pipeline)
        if unrouted:
            raise UnroutedErrors(
                f"{self._config.pipeline}: error outputs that do not reach the dead-letter "
                f"writer (their failures would be lost): {', '.join(map(repr, unrouted))}; "
                "apply each step with Spine.apply (a sink with Spine.write)"
            )
