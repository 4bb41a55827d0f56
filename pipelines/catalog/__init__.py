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
from transforms.metrics import COMMON, METRICS, WRITTEN, Balance, Metric

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
        metrics: the declared metrics (`transforms.metrics.METRICS`) the pipeline reports
            besides those every pipeline reports (`transforms.metrics.COMMON`).

    """

    name: str
    description: str
    options: tuple[Option, ...]
    configure: Callable[[dict[str, Any]], Any]
    build: Callable[[beam.Pipeline, Any], None]
    delivered: str = WRITTEN
    splits: str | None = None
    streaming_modes: tuple[str, ...] = ("EXACTLY_ONCE", "AT_LEAST_ONCE")
    metrics: tuple[str, ...] = ()
    watch: Callable[[Any], Callable[[Any], None] | None] | None = None

    @property
    def reported(self) -> tuple[Metric, ...]:
        """Every metric the pipeline reports, declared in `transforms.metrics`."""
        names = dict.fromkeys((*COMMON, self.delivered, *self.metrics))
        if self.splits:
            names[self.splits] = None
        return tuple(METRICS[name] for name in names)

    @property
    def balance(self) -> Balance:
        """How the pipeline's counters add up (see `transforms.metrics.Balance`)."""
        return Balance(self.delivered, self.splits)


def get_pipeline(name: str) -> PipelineSpec:
    """Returns the pipeline ``name``; raises `KeyError` listing the catalog."""
    if name not in CATALOG:
        raise KeyError(f"no pipeline {name!r}; the catalog has: {', '.join(sorted(CATALOG))}")
    return load(CATALOG[name])
