"""``stream_enrich``: ``enrich``'s job from one `Message` per element, on the FnApiRunner.

Events joined with a users table by ``user_id`` (a side input), the events delivered one
message per element as a stream delivers them.

The input is ``enrich``'s (events and the users table next to them); the events are read by
`bench.jobs.messages.MessageSource`.

* ``naive_beam``: ``Map(json.loads)`` of the payload -> ``Map(join, AsDict(the table))`` ->
  ``WriteToText``, the table read with ``ReadFromText``, as ``enrich``'s;
* ``suite``: `suite_graph` on ``enrich``'s bench pipeline configured for a Pub/Sub subscription
  (the events schema, ``SideInputEnrich`` from ``file:///...?key={user_id}``, file sinks), the
  source replaced by the messages.

The plain loops are ``enrich``'s, over the file's lines.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam

from bench.jobs import enrich
from bench.jobs.common import EVENTS_SCHEMA, Job, loops, sink_args
from bench.jobs.messages import (
    MessageSource,
    decode,
    event_time,
    floor,
    fnapi_pipeline,
    run_graph,
    stream_config,
)
from pipelines.framework.spine import Spine
from transforms.metrics import WRITTEN


def suite_graph(pipeline: beam.Pipeline, config: enrich.EnrichConfig) -> None:
    """Source -> Parse -> enrich -> sink; parse and enrich failures, rejections -> dead letters."""
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read()
        spine.write("Write", config.sink, spine.apply("Enrich", config.enrich, blocks))


def _suite(path: Path, out: Path) -> int:
    reference = f"--reference=file://{enrich.table_of(path)}?key={{user_id}}"
    args = [*sink_args(out), reference, EVENTS_SCHEMA]
    config = stream_config(enrich.SUITE, args, MessageSource(path, event_time))
    return run_graph(enrich.SUITE, suite_graph, config, fnapi_pipeline()).count(WRITTEN)


def _naive(path: Path, out: Path) -> int:
    """Messages -> Map(json.loads) -> Map(join, AsDict(the table)) -> WriteToText."""
    with fnapi_pipeline() as pipeline:
        table = (
            pipeline
            | "Read users" >> beam.io.ReadFromText(str(enrich.table_of(path)))
            | "Key users" >> beam.Map(enrich._keyed)
        )
        _ = (
            pipeline
            | "Messages" >> MessageSource(path, event_time)
            | "Decode" >> beam.Map(decode)
            | "Join" >> beam.Map(enrich._join, beam.pvalue.AsDict(table))
            | "Write" >> beam.io.WriteToText(str(out))
        )
    return -1


JOB = Job(
    enrich.JOB.data,
    {
        **loops(enrich._enrich_loop),
        "naive_beam": _naive,
        "floor": floor(event_time),
        "suite": _suite,
    },
)
