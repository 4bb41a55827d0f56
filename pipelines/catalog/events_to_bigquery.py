"""``events_to_bigquery``: raw events from any source into a table, failures to a dead letter.

Graph::

    source -> Parse -> sink
                  `--> per-window counts -> counts sink (optional)
       parse failures + sink rejections -> dead letter
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import (
    COMMON_OPTIONS,
    Option,
    OptionError,
    duration_option,
    option_group,
)
from pipelines.framework.spine import PARSE_OPTIONS, ParseSettings, Spine, SpineConfig, SpineView
from transforms import metrics
from transforms.aggregate.spec import AggregateSpec, SpecError
from transforms.aggregate.windowed import WindowedAggregate, row_schema
from transforms.io.base import Sink, SinkContext
from transforms.io.registry import make_sink

__all__ = ["PIPELINE", "EventsConfig", "build"]

NAME = "events_to_bigquery"
COUNTS = metrics.WRITTEN_COUNTS

COUNTS_OPTIONS = option_group(
    "Per-window counts",
    Option(
        "counts_sink",
        "Optional sink for event counts per window and group, e.g. bigquery://P:D.T_counts.",
        default="",
        sink=True,
    ),
    duration_option(
        "counts_window",
        "Length of the count windows (tumbling), e.g. 60s or 5m.",
        "60s",
        positive=True,
    ),
    Option(
        "counts_group_by",
        "Comma-separated top-level fields the counts are grouped by (empty: one count per "
        "window); a record without one is written but not counted.",
        default="",
    ),
)


@dataclass(frozen=True)
class EventsConfig(SpineView):
    """The validated options of ``events_to_bigquery``.

    Attributes:
        spine: endpoints and parse settings.
        counts: the per-window count spec and its sink, when ``--counts_sink`` is set.
    """

    spine: SpineConfig
    counts: tuple[AggregateSpec, Sink] | None = None


def _counts(values: dict[str, Any], parse: ParseSettings) -> tuple[AggregateSpec, Sink] | None:
    if not values["counts_sink"]:
        # Counts options without a counts sink would be ignored: refuse them, as a template
        # refuses a conditional parameter (their defaults are what an unset option reads).
        for option in COUNTS_OPTIONS[1:]:
            if values[option.name] != option.default:
                raise OptionError(
                    f"--{option.name} applies only with --counts_sink: set --counts_sink "
                    f"(e.g. bigquery://P:D.T_counts) or leave out --{option.name}"
                )
        return None
    if parse.event_time is None:
        raise OptionError("--counts_sink needs event times: set --event_time_field")
    group_by = [name.strip() for name in values["counts_group_by"].split(",") if name.strip()]
    try:
        spec = AggregateSpec.from_dict(
            {
                "window": {"type": "tumbling", "size": values["counts_window"]},
                "group_by": group_by,
                "aggregates": {"events": "count()"},
            }
        )
        if parse.schema is not None:
            spec.check_fields(parse.schema.names)
    except SpecError as exc:
        raise OptionError(f"--counts_*: {exc}") from None
    context = SinkContext(NAME, row_schema(spec, parse.schema), "window_start", counter=COUNTS)
    return spec, make_sink(values["counts_sink"], context)


def configure(values: dict[str, Any]) -> EventsConfig:
    """Validates the options of this pipeline."""
    parse = ParseSettings.from_options(values)
    # The counts are a side aggregation: records need not have its group keys (the counts
    # count what they cannot key as not_aggregated.<reason>); the main sink writes them all.
    counts = _counts(values, parse)
    return EventsConfig(SpineConfig.from_options(NAME, values, parse), counts)


def build(pipeline: beam.Pipeline, config: EventsConfig) -> None:
    """Adds source -> Parse -> sink (and the counts), with every failure dead-lettered."""
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read()
        spine.write("Write", config.sink, blocks)
        if config.counts is not None:
            spec, sink = config.counts
            # Late records are written whole by the main sink; the counts only count them.
            counts = WindowedAggregate(spec, NAME, dead_letter_late=False)
            rows = spine.apply("Counts", counts, blocks)
            spine.write("Write counts", sink, rows)


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Reads JSON events from a source, validates them against a schema, stamps their event "
        "time and writes them to BigQuery (or files, Pub/Sub, stdout), optionally with event "
        "counts per window. Every record that fails to parse or that the sink rejects goes to "
        "the dead-letter sink with its original bytes."
    ),
    options=COMMON_OPTIONS + PARSE_OPTIONS + COUNTS_OPTIONS,
    configure=configure,
    build=build,
    metrics=metrics.AGGREGATION + (metrics.WRITTEN_COUNTS,),
)
