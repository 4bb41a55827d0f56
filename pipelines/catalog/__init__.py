"""The catalog: every pipeline by name, each a module exposing ``PIPELINE``.

Its targets are found as the registry finds sources and sinks (`transforms.io.registry.load`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from pipelines.framework.options import Option
from transforms.io.registry import load
from transforms.metrics import WRITTEN

__all__ = ["CATALOG", "PipelineSpec", "get_pipeline"]

CATALOG = {
    "events_to_bigquery": "pipelines.catalog.events_to_bigquery:PIPELINE",
    "metrics_to_redis": "pipelines.catalog.metrics_to_redis:PIPELINE",
    "enrich_and_alert": "pipelines.catalog.enrich_and_alert:PIPELINE",
    "sessionize": "pipelines.catalog.sessionize:PIPELINE",
    "cdc_replicate": "pipelines.catalog.cdc_replicate:PIPELINE",
    "dlq_replay": "pipelines.catalog.dlq_replay:PIPELINE",
}


@dataclass(frozen=True)
class PipelineSpec:
    """A runnable pipeline: its declared options, how they become a typed config, its graph.

    Attributes:
        name: the catalog name.
        description: one paragraph for ``describe`` and the template metadata.
        options: every option, declared once.
        configure: turns parsed option values into the pipeline's validated config; raises
            `OptionError` or `EndpointError` with a message that says what to change.
        build: adds the pipeline's steps to a Beam pipeline, given the config.
        delivered: the counter of input records that reached their end (see `RunReport`).
        splits: the counter of input records that became two records (a CDC key change: a
            delete and an upsert), each adding one to the records accounted for, if any.
        streaming_modes: the Dataflow streaming modes (``EXACTLY_ONCE``, ``AT_LEAST_ONCE``)
            the pipeline is correct under, the default first; empty for a batch-only pipeline.
            They become the template's ``streaming`` and ``supports*`` flags.
        watch: given the config, returns what a run calls with a
            `pipelines.framework.run.RunReport` of its counters while it lasts (see
            `pipelines.framework.watch`), or None; ``None``: nothing is called.

    """

    name: str
    description: str
    options: tuple[Option, ...]
    configure: Callable[[dict[str, Any]], Any]
    build: Callable[[beam.Pipeline, Any], None]
    delivered: str = WRITTEN
    splits: str | None = None
    streaming_modes: tuple[str, ...] = ("EXACTLY_ONCE", "AT_LEAST_ONCE")
    watch: Callable[[Any], Callable[[Any], None] | None] | None = None


def get_pipeline(name: str) -> PipelineSpec:
    """Returns the pipeline ``name``; raises `KeyError` listing the catalog."""
    if name not in CATALOG:
        raise KeyError(f"no pipeline {name!r}; the catalog has: {', '.join(sorted(CATALOG))}")
    return load(CATALOG[name])
