"""``metrics_to_redis``: windowed metrics from any source into Redis (or any sink), live.

source -> Parse -> WindowedAggregate(spec) -> sink (a Redis hash per group and window)
                                           -> publish (optional: PUBLISH per update, and the
                                              run's balance each second, for the dashboard)
                                           -> history (optional: BigQuery or files)
   parse failures + late and refused records + sink rejections -> dead letter
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from typing import Any
from urllib.parse import quote

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.dashboard.balance import BalancePublisher
from pipelines.framework.options import COMMON_OPTIONS, Option, OptionError
from pipelines.framework.spine import PARSE_OPTIONS, ParseSettings, Spine, SpineConfig, SpineView
from transforms import metrics
from transforms.aggregate.spec import AggregateSpec, SpecError
from transforms.aggregate.windowed import AGGREGATED, WindowedAggregate, row_schema
from transforms.fields import aggregate_fields
from transforms.io.base import Sink, SinkContext
from transforms.io.registry import make_sink

__all__ = ["PIPELINE", "MetricsConfig"]

NAME = "metrics_to_redis"
BUILTIN_SPECS = ("api_metrics",)

OPTIONS = (
    Option(
        "spec",
        "The aggregation: a YAML or JSON file, inline YAML, or 'builtin:api_metrics' "
        "(per-minute requests, errors and latency per endpoint).",
        required=True,
        group="Aggregation",
    ),
    Option(
        "publish",
        "Optional second sink for every updated row, e.g. "
        "redis://host:6379/0?mode=publish&key=metrics (live dashboards: a Redis channel also "
        "gets the run's balance each second; see python -m pipelines dashboard).",
        default="",
        group="Endpoints",
        sink=True,
    ),
    Option(
        "console",
        "Also show the latest row per group and window as a live table in the terminal.",
        type=bool,
        default=False,
        param_type="BOOLEAN",
        group="Endpoints",
    ),
    Option(
        "history",
        "Optional sink keeping every pane, e.g. bigquery://P:D.T or file:///dir.",
        default="",
        group="Endpoints",
        sink=True,
    ),
)


def load_spec(text: str) -> AggregateSpec:
    """Reads ``builtin:NAME``, a spec file or inline YAML; raises `OptionError`."""
    try:
        if text.startswith("builtin:"):
            name = text.removeprefix("builtin:")
            if name not in BUILTIN_SPECS:
                raise OptionError(f"--spec={text}: built-in specs are {list(BUILTIN_SPECS)}")
            document = resources.files("pipelines.specs").joinpath(f"{name}.yaml").read_text()
            return AggregateSpec.load(document)
        return AggregateSpec.load(text)
    except SpecError as exc:
        raise OptionError(f"--spec: {exc}") from None


@dataclass(frozen=True)
class MetricsConfig(SpineView):
    """The validated options of ``metrics_to_redis``.

    Attributes:
        spine: endpoints and parse settings.
        spec: the aggregation.
        extra_sinks: the ``--publish`` and ``--history`` sinks that are set.
    """

    spine: SpineConfig
    spec: AggregateSpec
    extra_sinks: tuple[tuple[str, Sink], ...]


def configure(values: dict[str, Any]) -> MetricsConfig:
    """Validates the options: the spec, its fields against the schema, the endpoints."""
    spec = load_spec(values["spec"])
    parse = ParseSettings.from_options(values, event_time_field=spec.event_time)
    parse = replace(parse, required=aggregate_fields(spec, "the spec's"))
    if parse.event_time is None:
        raise OptionError("an aggregation needs event times: set event_time in the spec")
    if parse.schema is not None:
        try:
            spec.check_fields(parse.schema.names)
        except SpecError as exc:
            raise OptionError(f"--spec: {exc}") from None
    rows = SinkContext(NAME, row_schema(spec, parse.schema), "window_start")
    uris = {name: values[name] for name in ("publish", "history") if values[name]}
    if values["console"]:
        key = ",".join((*spec.group_by, "window_start"))
        shown = (*spec.group_by, "window_start", *(a.name for a in spec.aggregates), "timing")
        uris["console"] = (
            f"console://?key={quote(key)}&columns={quote(','.join(shown))}&title={NAME}"
        )
    extra = tuple(
        (name, make_sink(uri, replace(rows, counter=f"{metrics.WRITTEN}_{name}")))
        for name, uri in uris.items()
    )
    return MetricsConfig(SpineConfig.from_options(NAME, values, parse, rows), spec, extra)


def build(pipeline: beam.Pipeline, config: MetricsConfig) -> None:
    """Adds source -> Parse -> WindowedAggregate -> sinks, with every failure dead-lettered."""
    with Spine(pipeline, config.spine) as spine:
        records = spine.read()
        blocks = spine.apply("Aggregate", WindowedAggregate(config.spec, NAME), records)
        spine.write("Write", config.sink, blocks)
        for name, sink in config.extra_sinks:
            spine.write(f"Write {name}", sink, blocks)


def publish_balance(config: MetricsConfig) -> BalancePublisher | None:
    """Returns what publishes the run's balance on the ``--publish`` channel, if it is Redis."""
    return BalancePublisher.first(sink for name, sink in config.extra_sinks if name == "publish")


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Aggregates events per group and event-time window as a spec says (counts, sums, "
        "means, quantiles, distinct counts; early, on-time and late panes) and writes one row "
        "per group and window to Redis (or any sink), optionally publishing every update and "
        "keeping a history. Late records and failures go to the dead-letter sink."
    ),
    options=COMMON_OPTIONS + PARSE_OPTIONS + OPTIONS,
    configure=configure,
    build=build,
    delivered=AGGREGATED,
    # Under at-least-once a redelivered record would be counted twice in its window.
    streaming_modes=("EXACTLY_ONCE",),
    metrics=metrics.AGGREGATION,
    watch=publish_balance,
)
