"""``stream_cdc_apply``: ``cdc_apply``'s job from one `Message` per element, on the FnApiRunner.

Debezium changes over 10k keys -> the final table, the changes delivered one message per
element as a stream delivers them.

The input is ``cdc_apply``'s, read by `bench.jobs.messages.MessageSource` (publish times from
the changes' ``ts_ms``).

* ``naive_beam``: ``Map(json.loads)`` of the payload -> key by primary key -> ``GroupByKey`` ->
  the max LSN per key -> ``WriteToText``, as ``cdc_apply``'s;
* ``suite``: `suite_graph` on ``cdc_replicate``'s config for a Pub/Sub subscription (Debezium,
  ``inventory.customers=id``, file sinks), the source replaced by the messages: the final
  tables, as ``cdc_apply`` writes them. (A replica sink on a live stream gets the latest-state
  stream instead: ``cdc_replicate`` builds that graph for a Pub/Sub source.)

The plain loops are ``cdc_apply``'s, over the file's lines.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam

from bench.jobs import cdc_apply
from bench.jobs.common import Job, loops, sink_args
from bench.jobs.messages import (
    MessageSource,
    change_time,
    decode,
    floor,
    fnapi_pipeline,
    run_graph,
    stream_config,
)
from pipelines.catalog.cdc_replicate import PIPELINE, CdcConfig
from pipelines.framework.spine import Spine
from transforms.cdc.apply import APPLIED, ApplyChanges
from transforms.cdc.debezium import DropTombstones
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import NormalizeChanges

ARGS = ["--format=debezium", "--key_columns=inventory.customers=id"]


def suite_graph(pipeline: beam.Pipeline, config: CdcConfig) -> None:
    """Source -> drop tombstones -> Parse -> Normalize -> Apply (latest only) -> final tables.

    Parse, normalize and apply failures and sink rejections -> dead letters.
    """
    name = config.spine.pipeline
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read(before_parse="Drop tombstones" >> DropTombstones())
        normalize = NormalizeChanges(name, config.format, config.key_columns)
        changes = spine.apply("Normalize", normalize, blocks)
        apply = ApplyChanges(name, config.delete_retention, latest_only=True)
        final_state = FinalState(latest_per_key=apply.compacts(changes))
        tables = spine.apply("Apply", apply, changes) | "Final state" >> final_state
        spine.write("Write", config.sink, tables)


def _suite(path: Path, out: Path) -> int:
    config = stream_config(PIPELINE, [*sink_args(out), *ARGS], MessageSource(path, change_time))
    return run_graph(PIPELINE, suite_graph, config, fnapi_pipeline()).count(APPLIED)


def _naive(path: Path, out: Path) -> int:
    """Messages -> Map(json.loads) -> key by primary key -> GroupByKey -> the max LSN per key."""
    with fnapi_pipeline() as pipeline:
        _ = (
            pipeline
            | MessageSource(path, change_time)
            | beam.Map(decode)
            | beam.Map(cdc_apply._change)
            | beam.GroupByKey()
            | beam.FlatMap(cdc_apply._latest)
            | beam.io.WriteToText(str(out))
        )
    return -1


JOB = Job(
    cdc_apply.JOB.data,
    {
        **loops(cdc_apply._cdc_loop),
        "naive_beam": _naive,
        "floor": floor(change_time),
        "suite": _suite,
    },
    keys=cdc_apply.CDC_KEYS,
)
