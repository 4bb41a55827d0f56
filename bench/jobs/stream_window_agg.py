"""``stream_window_agg`` and ``stream_window_agg_direct``: ``window_agg`` from one `Message` each.

Per user and tumbling minute: count, sum, mean of ``latency_ms``, the events delivered one
message per element as a stream delivers them.

``stream_window_agg`` runs on the FnApiRunner (`bench.jobs.messages.MessageSource`),
``stream_window_agg_direct`` on Beam's streaming DirectRunner (`StreamedMessages`, a
`TestStream` whose watermark advances):

* ``naive_beam``: ``Map(json.loads)`` of the payload -> timestamps ->
  ``WindowInto(FixedWindows(60))`` -> ``CombinePerKey`` -> rows -> ``WriteToText`` (on the
  streaming runner `streaming_agg`'s appending ``DoFn``, as in that job);
* ``suite``: `suite_graph` on ``metrics_to_redis``'s config for a Pub/Sub subscription
  (``window_agg``'s spec, the events schema, file sinks), the source replaced by the messages.

The plain loops are ``window_agg``'s, over the file's lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apache_beam as beam

from bench.data import events_file
from bench.jobs.common import EVENTS_SCHEMA, Job, Variant, loops, sink_args
from bench.jobs.messages import (
    MessageSource,
    StreamedMessages,
    decode,
    event_time,
    floor,
    fnapi_pipeline,
    run_graph,
    stream_config,
    streaming_pipeline,
)
from bench.jobs.streaming_agg import _AppendLines, _naive
from bench.jobs.window_agg import WINDOW, WINDOW_SPEC, _window_loop
from pipelines.catalog.metrics_to_redis import PIPELINE, MetricsConfig
from pipelines.framework.spine import Spine
from transforms.aggregate.windowed import AGGREGATED, WindowedAggregate


def suite_graph(pipeline: beam.Pipeline, config: MetricsConfig) -> None:
    """Source -> Parse -> WindowedAggregate -> sink; parse errors, late records -> dead letters."""
    with Spine(pipeline, config.spine) as spine:
        aggregate = WindowedAggregate(config.spec, config.spine.pipeline)
        records = spine.read()
        spine.write("Write", config.sink, spine.apply("Aggregate", aggregate, records))


def _suite(
    source: type[MessageSource | StreamedMessages], make: Callable[[], beam.Pipeline]
) -> Variant:
    def run(path: Path, out: Path) -> int:
        args = [*sink_args(out), f"--spec={WINDOW_SPEC}", EVENTS_SCHEMA]
        config = stream_config(PIPELINE, args, source(path, event_time))
        return run_graph(PIPELINE, suite_graph, config, make()).count(AGGREGATED)

    return run


def _naive_fnapi(path: Path, out: Path) -> int:
    with fnapi_pipeline() as pipeline:
        _ = (
            pipeline
            | MessageSource(path, event_time)
            | _naive(decode)
            | beam.io.WriteToText(str(out))
        )
    return -1


def _naive_streaming(path: Path, out: Path) -> int:
    with streaming_pipeline() as pipeline:
        _ = (
            pipeline
            | StreamedMessages(path, event_time)
            | _naive(decode)
            | beam.ParDo(_AppendLines(str(out)))
        )
    return -1


_LOOPS = loops(lambda decode, path, out: _window_loop(decode, path, out, WINDOW, WINDOW))

JOB = Job(
    events_file,
    {
        **_LOOPS,
        "naive_beam": _naive_fnapi,
        "floor": floor(event_time),
        "suite": _suite(MessageSource, fnapi_pipeline),
    },
)
DIRECT_JOB = Job(
    events_file,
    {
        **_LOOPS,
        "naive_beam": _naive_streaming,
        "floor": floor(event_time, StreamedMessages, streaming_pipeline),
        "suite": _suite(StreamedMessages, streaming_pipeline),
    },
)
