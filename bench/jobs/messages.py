"""What the stream jobs share: one `Message` per element, as a stream delivers them.

Pub/Sub, Kafka and Kinesis hand a pipeline one element per message: its payload, attributes and
origin (here Pub/Sub's: message id and publish time), stamped with its publish time. The stream
jobs read their generated file that way, every variant alike:

* `MessageSource`: an ``Impulse`` and a ``FlatMap`` that reads the file's lines on the worker
  (the graph stays small; the cost of making the messages is the same for every variant), for
  the FnApiRunner (`fnapi_pipeline`), the SDK harness Dataflow workers run;
* `StreamedMessages`: the same messages on a `TestStream` (bundles of `BUNDLE` messages, the
  watermark advanced to each bundle's oldest publish time after it), for Beam's streaming
  DirectRunner (`streaming_pipeline`).

The suite's variants are configured as the command line configures a pipeline that reads a
Pub/Sub subscription (`stream_config`), with that source then replaced by one of these, and run
by `run_graph`, which checks that the run balances (read = delivered + dead-lettered + dropped).
`floor` is the least any suite graph pays for a stream: the messages, `Batch` and a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from bench.data import START
from bench.jobs.common import Variant
from pipelines.catalog import PipelineSpec
from pipelines.framework.options import parse_options
from pipelines.framework.run import RunReport
from transforms.blocks import Batch
from transforms.event_time import format_timestamp, parse_timestamp
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint
from transforms.message import Message, Origin
from transforms.metrics import counter_totals

SUBSCRIPTION = "pubsub://projects/local-project/subscriptions/bench"
ATTRIBUTES = {"producer": "bench", "content_type": "application/json"}
PUBLISH_DELAY = 0.25  # seconds from an event's time to its publish time
BUNDLE = 1000

TimeOf = Callable[[bytes], float]


class _Ts(msgspec.Struct):
    ts: str


class _TsMs(msgspec.Struct):
    ts_ms: int


_decode_ts = msgspec.json.Decoder(_Ts).decode
_decode_ts_ms = msgspec.json.Decoder(_TsMs).decode


def event_time(line: bytes) -> float:
    """The event time of a generated event (its ``ts``), epoch seconds."""
    return parse_timestamp(_decode_ts(line).ts)


def change_time(line: bytes) -> float:
    """The time of a Debezium change event (its ``ts_ms``), epoch seconds."""
    return _decode_ts_ms(line).ts_ms / 1000


def messages(path: Path, time_of: TimeOf) -> Iterator[TimestampedValue]:
    """The lines of ``path`` as Pub/Sub would deliver them, stamped with their publish time.

    A message is published `PUBLISH_DELAY` after its event time; one whose time cannot be read
    (a malformed line) right after the message before it.

    Yields:
        ``TimestampedValue(Message(payload=<the line>, attributes=ATTRIBUTES,
        origin=Origin("pubsub", message_id="0", publish_time="2025-11-25T10:00:00.250Z")),
        <publish time>)``.
    """
    published = START
    with path.open("rb") as lines:
        for number, line in enumerate(lines):
            line = line.rstrip(b"\n")
            try:
                published = time_of(line) + PUBLISH_DELAY
            except (msgspec.MsgspecError, ValueError, OverflowError):  # BadTimestamp too
                pass
            origin = Origin(
                "pubsub", message_id=str(number), publish_time=format_timestamp(published)
            )
            yield TimestampedValue(Message(line, dict(ATTRIBUTES), origin), published)


def decode(message: Message) -> Any:
    """``json.loads`` of a message's payload: what a naive pipeline does with each message."""
    return json.loads(message.payload)


class _Messages(Source):
    """A file's lines as a stream's messages, in place of a Pub/Sub subscription."""

    bounded = False

    def __init__(self, path: Path, time_of: TimeOf) -> None:
        super().__init__(Endpoint.parse(SUBSCRIPTION))
        self.path = path
        self.time_of = time_of


class MessageSource(_Messages):
    """One `Message` per element, read from the file on the worker (see `messages`).

    Args:
        path: the JSON Lines file.
        time_of: reads the event time of a line (raises when it cannot).
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        path, time_of = self.path, self.time_of
        return pbegin | beam.Impulse() | beam.FlatMap(lambda _: messages(path, time_of))


class StreamedMessages(_Messages):
    """One `Message` per element on a `TestStream` (streaming); the watermark follows.

    The messages are read when the graph is built. After each bundle of `BUNDLE` messages the
    watermark moves to the bundle's oldest publish time, then to infinity at the end.
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        stream = TestStream()
        bundle: list[TimestampedValue] = []
        for value in messages(self.path, self.time_of):
            bundle.append(value)
            if len(bundle) == BUNDLE:
                stream = _add(stream, bundle)
                bundle = []
        if bundle:
            stream = _add(stream, bundle)
        return pbegin | stream.advance_watermark_to_infinity()


class _Batched(Source):
    """A stream's messages as every source of the suite gives them: in `Block`s (`Batch`)."""

    bounded = False

    def __init__(self, messages: Source) -> None:
        super().__init__(messages.endpoint)
        self.messages = messages

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | self.messages | "Blocks" >> Batch()


def _add(stream: TestStream, bundle: list[TimestampedValue]) -> TestStream:
    stream.add_elements(bundle)
    return stream.advance_watermark_to(min(float(value.timestamp) for value in bundle))


def fnapi_pipeline() -> beam.Pipeline:
    """A pipeline on the FnApiRunner (in memory, one SDK harness: Dataflow's worker code)."""
    return beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(flags=[]))


def streaming_pipeline() -> beam.Pipeline:
    """A pipeline in streaming mode on Beam's DirectRunner (a `TestStream` source), as shipped.

    The suite's live driver (`transforms.io.live`) is not enabled: every variant runs on the
    same runner, and `run_graph`'s balance check reads the counters Beam reports.
    """
    return beam.Pipeline(options=PipelineOptions(flags=[], streaming=True))


def floor(
    time_of: TimeOf,
    source: type[MessageSource | StreamedMessages] = MessageSource,
    make: Callable[[], beam.Pipeline] = fnapi_pipeline,
) -> Variant:
    """The ``floor`` variant: the messages -> `Batch` -> ``Map(len)``, and nothing else.

    Every suite graph of a stream starts so (`stream_config`), so its rate is the ceiling of
    any suite variant of the job; ``floor / naive_beam`` is the best ratio the suite can reach.
    """

    def run(path: Path, out: Path) -> int:
        with make() as pipeline:
            blocks = pipeline | source(path, time_of) | "Blocks" >> Batch()
            _ = blocks | "No-op" >> beam.Map(len)
        return -1

    return run


def stream_config(spec: PipelineSpec, args: list[str], source: Source) -> Any:
    """The config ``spec`` builds from ``args`` for a Pub/Sub subscription, reading ``source``.

    Args:
        spec: the pipeline whose options and ``configure`` are used (a catalog pipeline, or a
            bench one).
        args: its options but ``--source``, e.g. ``["--sink=file:///tmp/x", ...]``.
        source: what the spine reads instead of the subscription, one message per element.

    Returns:
        The pipeline's config, its ``spine.source`` replaced by ``source`` read in blocks
        (`Batch`), as a stream's read gives them.
    """
    argv = [*args, f"--source={SUBSCRIPTION}"]
    values, _ = parse_options(f"bench {spec.name}", spec.description, spec.options, argv)
    config = spec.configure(values)
    return replace(config, spine=replace(config.spine, source=_Batched(source)))


def run_graph(
    spec: PipelineSpec,
    graph: Callable[[beam.Pipeline, Any], None],
    config: Any,
    pipeline: beam.Pipeline,
) -> RunReport:
    """Adds ``graph(pipeline, config)``, runs it and checks that the run balances.

    Returns:
        The run's report (counters as for ``spec``: its ``delivered`` and ``splits``).
    """
    graph(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    report = RunReport(spec.name, str(result.state), counter_totals(result.metrics()),
                       delivered=spec.delivered, splits=spec.splits)  # fmt: skip
    assert report.balanced, report.render()
    return report
