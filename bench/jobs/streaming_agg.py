"""``streaming_agg``: ``window_agg`` (per user and tumbling minute: count, sum, mean) streaming.

The Beam variants run in streaming mode (Beam's streaming DirectRunner) on a `TestStream` of
the file's lines: blocks of `BLOCK` lines with their event times, the watermark advanced to
each block's oldest event time after it, then to infinity. The lines are read and their event
times parsed before the pipeline is built (inside the timing, the same for both variants).

* ``naive_beam``: ``Map(json.loads)`` -> timestamps -> ``WindowInto(FixedWindows(60))`` ->
  ``CombinePerKey`` -> rows, as a user writes it;
* ``suite``: the suite's parse (`ParseJson` with the events schema, event time ``ts``) ->
  `WindowedAggregate` with ``window_agg``'s spec on an unbounded input (its streaming path:
  lateness gate, Beam's windows and triggers) -> rows; dead letters (none expected) beside.

Both write their lines with the same `_AppendLines`. The plain loops are ``window_agg``'s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.coders import BytesCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from bench.data import events_file
from bench.jobs.common import Job, loops
from bench.jobs.window_agg import WINDOW, WINDOW_SPEC, _MeanSum, _row, _window_loop
from pipelines.framework.spine import load_schema
from transforms.aggregate.spec import AggregateSpec
from transforms.aggregate.windowed import WindowedAggregate
from transforms.blocks import Batch
from transforms.event_time import parse_timestamp
from transforms.message import Message, Origin, Record
from transforms.parse import EventTime, ParseJson

BLOCK = 1000
NAME = "streaming_agg"

# The streaming DirectRunner runs bundles on several threads; one write per bundle at a time.
_WRITE_LOCK = threading.Lock()


class _AppendLines(beam.DoFn):
    """Text lines -> appended to the file ``path``, one write per bundle."""

    def __init__(self, path: str) -> None:
        self._path = path

    def start_bundle(self) -> None:
        self._lines: list[str] = []

    def process(self, line: str) -> None:
        self._lines.append(line)

    def finish_bundle(self) -> None:
        if self._lines:
            with _WRITE_LOCK, open(self._path, "a") as out:
                out.write("\n".join(self._lines) + "\n")
            self._lines = []


class _Timestamps(msgspec.Struct):
    ts: str


def _stream(path: Path) -> TestStream:
    """The file's lines (bytes) with their event times, in blocks; the watermark after each."""
    decode = msgspec.json.Decoder(_Timestamps).decode
    stream = TestStream(coder=BytesCoder())
    block: list[TimestampedValue] = []
    with path.open("rb") as lines:
        for line in lines:
            line = line.rstrip(b"\n")
            block.append(TimestampedValue(line, parse_timestamp(decode(line).ts)))
            if len(block) == BLOCK:
                _add(stream, block)
                block = []
    if block:
        _add(stream, block)
    return stream.advance_watermark_to_infinity()


def _add(stream: TestStream, block: list[TimestampedValue]) -> None:
    stream.add_elements(block)
    stream.advance_watermark_to(min(float(value.timestamp) for value in block))


def _run_streaming(path: Path, out: Path, job: beam.PTransform) -> int:
    """TestStream of ``path``'s lines -> ``job`` (lines -> text lines) -> ``out``."""
    stream = _stream(path)
    with beam.Pipeline(options=PipelineOptions(flags=[], streaming=True)) as pipeline:
        _ = pipeline | stream | job | beam.ParDo(_AppendLines(str(out)))
    return -1


@beam.ptransform_fn
def _naive(lines: beam.PCollection, decode: Callable[[Any], Any] = json.loads) -> beam.PCollection:
    """Lines (or what ``decode`` takes) -> decode -> window_agg's rows, as a user writes it."""
    return (
        lines
        | beam.Map(decode)
        | beam.Map(lambda e: TimestampedValue(e, parse_timestamp(e["ts"])))
        | beam.WindowInto(FixedWindows(WINDOW))
        | beam.Map(lambda e: (e["user_id"], e["latency_ms"]))
        | beam.CombinePerKey(_MeanSum())
        | beam.Map(_row)
    )


def _message(line: bytes) -> Message:
    return Message(line, {}, Origin("file"))


class _Suite(beam.PTransform):
    """Lines -> Message -> Batch -> ParseJson -> WindowedAggregate -> JSON rows; dead letters.

    Args:
        dead_letter: where the dead-letter records (parse failures, late records) go.
    """

    def __init__(self, dead_letter: Path) -> None:
        super().__init__()
        self._dead_letter = str(dead_letter)

    def expand(self, lines: beam.PCollection) -> beam.PCollection:
        records, parse_errors = (
            lines
            | "Message" >> beam.Map(_message)
            | "Blocks" >> Batch()
            | "Parse" >> ParseJson(NAME, load_schema("builtin:events"), EventTime("ts"))
        )
        spec = AggregateSpec.load(WINDOW_SPEC)
        rows, late = records | "Aggregate" >> WindowedAggregate(spec, NAME)
        _ = (
            (parse_errors, late)
            | "Errors" >> beam.Flatten()
            | "Error lines" >> beam.Map(json.dumps, default=str)
            | "Write errors" >> beam.ParDo(_AppendLines(self._dead_letter))
        )
        return rows | "Rows" >> beam.FlatMap(list) | "Row lines" >> beam.Map(_json_row)


def _json_row(record: Record) -> str:
    return json.dumps(record.data)


def _suite(path: Path, out: Path) -> int:
    return _run_streaming(path, out, _Suite(out.with_name(out.name + "-dead-letter")))


JOB = Job(
    events_file,
    {
        **loops(lambda decode, path, out: _window_loop(decode, path, out, WINDOW, WINDOW)),
        "naive_beam": lambda path, out: _run_streaming(path, out, _naive()),
        "suite": _suite,
    },
)
