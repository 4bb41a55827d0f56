"""``stream_parse_sink``: ``parse_dlq``'s job from one `Message` per element, on the FnApiRunner.

Parse, validate, good records and dead letters to files, the events delivered one message per
element as a stream delivers them.

The input is ``parse_dlq``'s (events, 1% malformed), read by `bench.jobs.messages.MessageSource`.

* ``naive_beam``: ``parse_dlq``'s ``ParDo`` (``json.loads`` of the payload, the schema's checks,
  a tagged ``dead`` output) -> two ``WriteToText``;
* ``suite``: `suite_graph` on ``events_to_bigquery``'s config for a Pub/Sub subscription (the
  events schema, the file sink in JSON Lines, file dead letters), the source replaced by the
  messages.

The plain loops are ``parse_dlq``'s, over the file's lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.jobs import parse_dlq
from bench.jobs.common import EVENTS_SCHEMA, Job, loops, sink_args
from bench.jobs.messages import (
    MessageSource,
    event_time,
    floor,
    fnapi_pipeline,
    run_graph,
    stream_config,
)
from pipelines.catalog.events_to_bigquery import PIPELINE, EventsConfig
from pipelines.framework.spine import Spine
from transforms.message import Message
from transforms.metrics import WRITTEN


def suite_graph(pipeline: beam.Pipeline, config: EventsConfig) -> None:
    """Source -> Parse -> sink; parse failures and sink rejections -> dead letters."""
    with Spine(pipeline, config.spine) as spine:
        spine.write("Write", config.sink, spine.read())


def _suite(path: Path, out: Path) -> int:
    config = stream_config(
        PIPELINE, [*sink_args(out), EVENTS_SCHEMA], MessageSource(path, event_time)
    )
    return run_graph(PIPELINE, suite_graph, config, fnapi_pipeline()).count(WRITTEN)


class _ParseMessageFn(parse_dlq._ParseFn):
    def process(self, message: Message) -> Iterator[Any]:  # type: ignore[override]
        return super().process(message.payload)


def _naive(path: Path, out: Path) -> int:
    """Messages -> ParDo with a tagged dead-letter output -> two WriteToText."""
    with fnapi_pipeline() as pipeline:
        results = (
            pipeline
            | MessageSource(path, event_time)
            | beam.ParDo(_ParseMessageFn()).with_outputs("dead", main="good")
        )
        _ = results.good | "Write good" >> beam.io.WriteToText(str(out))
        _ = results.dead | "Write dead" >> beam.io.WriteToText(f"{out}-dead")
    return -1


JOB = Job(
    parse_dlq.JOB.data,
    {
        **loops(parse_dlq._parse_loop),
        "naive_beam": _naive,
        "floor": floor(event_time),
        "suite": _suite,
    },
)
