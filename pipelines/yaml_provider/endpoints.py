"""The suite's sources and sinks as Beam YAML transforms, by endpoint URI.

``ReadFromEndpoint`` reads any source of the registry (`transforms.io.registry`) into message
rows, counting ``read``; ``WriteToEndpoint`` writes record rows (or, with ``dead_letters``, the
dead-letter rows of error outputs, through the dead-letter writer) to any sink::

    - type: ReadFromEndpoint
      config: {uri: "file:///data/in/*.jsonl"}
    - type: WriteToEndpoint
      input: Parse
      config: {uri: "bigquery://P:D.T", schema: builtin:events}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import apache_beam as beam

from pipelines.framework.spine import load_schema
from pipelines.yaml_provider.outputs import DEFAULT_PIPELINE, ErrorHandling, with_errors
from pipelines.yaml_provider.rows import (
    MESSAGE_TYPE,
    RowShape,
    RowsToBlocks,
    as_data,
    message_row,
)
from transforms.blocks import Block
from transforms.dead_letter import DEAD_LETTER_SCHEMA, truncate_payload
from transforms.dead_letter_writer import DeadLetterWriter, dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.registry import make_sink, make_source
from transforms.metrics import READ, WRITTEN, Count
from transforms.parse import DEFAULT_MAX_BYTES

__all__ = ["DEAD_LETTER", "ReadFromEndpoint", "WriteToEndpoint"]

DEAD_LETTER = "dead_letter"  # the schema of dead letters written as ordinary records


class _MessageRowsFn(beam.DoFn):
    def process(self, block: Block) -> Iterator[beam.Row]:
        for message in block:
            yield message_row(message)


class ReadFromEndpoint(beam.PTransform):
    """Reads a source named by its URI: one message row per message (see `rows.MESSAGE_TYPE`).

    Args:
        uri: the source, e.g. ``file:///in/*.jsonl``, ``kafka://HOST:PORT/TOPIC``,
            ``pubsub://projects/P/subscriptions/S``, ``generator://events?count=100``.
        max_payload_bytes: the payload size limit (longer file lines are kept as a prefix).
    """

    def __init__(self, uri: str, max_payload_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__()
        self._source = make_source(uri, max_payload_bytes)

    def expand(self, root: beam.pvalue.PBegin) -> beam.PCollection:
        blocks = root | "Read" >> self._source | "Count read" >> Count(READ)
        return blocks | "To rows" >> beam.ParDo(_MessageRowsFn()).with_output_types(MESSAGE_TYPE)


class _DeadLettersFn(beam.DoFn):
    """A dead-letter row -> its dict; ``source`` keeps the coordinates that are set."""

    def process(self, row: Any) -> Iterator[dict[str, Any]]:
        letter = as_data(row)
        source = letter.get("source")
        if source is not None:
            letter["source"] = {k: v for k, v in source.items() if v is not None}
        yield letter


class WriteToEndpoint(beam.PTransform):
    """Writes record rows to a sink named by its URI.

    Args:
        uri: the sink, e.g. ``file:///out``, ``bigquery://P:D.T``, ``redis://H:P/0?key=...``.
        schema: the records' schema for sinks that create tables (``builtin:events`` or a
            file); by default the rows' own types. ``dead_letter``: the rows are dead letters
            written as records (those ``ReplayDeadLetters`` parks): the dead-letter table's
            schema, a payload too large for the sink's requests cut.
        event_time_field: the field tables are partitioned by, if any.
        counter: the counter of what is written (``written``; another name for side outputs,
            so that the balance counts each input record once).
        raw: write each row's original message (``message_origin``: its payload and
            attributes, unchanged) instead of its fields: the replays of ``ReplayDeadLetters``.
        dead_letters: the input rows are dead-letter rows (error outputs): they are counted
            by reason and written through the dead-letter writer, which fails the bundle on
            one it could not write.
        pipeline: the pipeline's name, in the sink's own dead letters.
        error_handling: ``{output: NAME}``: the records the sink rejected, as dead-letter rows.

    Several inputs given as a mapping (``input: {a: Route.a, bursts: Bursts}``) are written
    together, each row with its own fields (Beam YAML flattens a list of inputs first, into
    rows of the fields of all of them).
    """

    def __init__(
        self,
        uri: str,
        schema: str = "",
        event_time_field: str = "",
        counter: str = WRITTEN,
        raw: bool = False,
        dead_letters: bool = False,
        pipeline: str = DEFAULT_PIPELINE,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._uri = uri
        self._handling = ErrorHandling(error_handling)
        if dead_letters and self._handling.output is not None:
            raise ValueError("dead_letters: the dead-letter writer has no error output")
        self._dead_letters = dead_letters
        shrink = truncate_payload if schema == DEAD_LETTER else None
        self._schema = DEAD_LETTER_SCHEMA if shrink else load_schema(schema) if schema else None
        self._context = SinkContext(
            pipeline, None, event_time_field or None, counter, shrink=shrink, raw=raw
        )
        if dead_letters:
            self._writer: Any = DeadLetterWriter(dead_letter_sink(uri, pipeline))
        elif self._schema is not None:  # validated now; else with the rows' schema when applied
            make_sink(uri, replace(self._context, schema=self._schema))

    def expand(self, rows: beam.PCollection) -> Any:
        if self._dead_letters:
            letters = rows | "Dead letters" >> beam.ParDo(_DeadLettersFn())
            _ = letters | "Write" >> self._writer
            return None
        inputs = rows if isinstance(rows, dict) else {"input": rows}
        blocks = [
            pcoll | ("To blocks" if len(inputs) == 1 else f"To blocks {key}") >> RowsToBlocks()
            for key, pcoll in inputs.items()
        ]
        schema = self._schema
        if schema is None and len(inputs) == 1:
            schema = RowShape.of(next(iter(inputs.values())).element_type).schema
        context = replace(self._context, schema=schema)
        if len(blocks) > 1:
            blocks = [tuple(blocks) | "Inputs" >> beam.Flatten()]
        failures = blocks[0] | "Write" >> make_sink(self._uri, context)
        if self._handling.output is None and failures is None:
            return None
        errors = [failures] if failures is not None else []
        outputs = with_errors(dict(inputs), errors, self._handling)
        if self._handling.output is None:
            return None
        return {self._handling.output: outputs[self._handling.output]}
