"""``enrich_and_alert``: transactions enriched with customer profiles, alerts by rules and bursts.

Graph::

    source -> Parse -> Dedup -> Enrich(profiles) -> sink (every enriched record)
                                        |-> Route(rules) -> alert sink (or a route's own sink)
                                        `-> bursts: more than N per key in M minutes -> alert sink
      parse failures + enrich failures + rule failures + sink rejections -> dead letter

Balance: ``read = enriched + dead_lettered + dropped`` (duplicates, and missing profiles when
``--on_missing=drop``); every enriched record goes to the sink, so with no sink rejection
``enriched = written``. Alerts are extra copies: their sinks count ``written_alerts`` (or
``written_alerts_<route>``), and their failures, dead-lettered with ``sink_`` reasons, are not
input records; nor is a rule that fails on a record (dead-lettered ``rule_error``, step
``route``): the record itself was written, only its alerts are lost.

Each alert is the enriched record with ``alert`` set to its rule's name; a burst alert is the
window row (``window_start``, ``window_end``, the key, ``events``) with ``alert: burst``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

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
from transforms.aggregate.windowed import WindowedAggregate
from transforms.blocks import Block
from transforms.dedup import TIME_DOMAINS, Dedup
from transforms.durations import parse_duration
from transforms.enrich.base import (
    MISSING_POLICIES,
    UNAVAILABLE_POLICIES,
    EnrichSettings,
    enrich_from_uri,
    parse_key,
)
from transforms.fields import RequiredField
from transforms.io.base import Sink, SinkContext
from transforms.io.endpoint import Endpoint
from transforms.io.registry import make_sink
from transforms.metrics import Count
from transforms.route import MODES, Route, RouteSpec, tagged

__all__ = ["ENRICHED", "PIPELINE", "AlertConfig", "build", "configure"]

NAME = "enrich_and_alert"
ENRICHED = metrics.ENRICHED
ALERTS = metrics.WRITTEN_ALERTS
# The field of an alert naming its rule (or ``burst``).
ALERT = "alert"
BURST = "burst"
DEFAULT_RULES = (
    '{high_amount: "amount > 3 * profile.typical_amount", high_risk: "profile.risk_score > 0.8"}'
)

OPTIONS = (
    option_group(
        "Enrich",
        Option(
            "profiles",
            "Customer profiles: redis://HOST:PORT/DB?key=customer:{customer_id} (a lookup per "
            "record, cached), or a table loaded as a side input: file:///profiles.jsonl?key="
            "{customer_id}&refresh=5m, bigquery://P:D.T?key={customer_id}, redis://...&mode=snapshot.",
            required=True,
        ),
        Option(
            "profile_field",
            "The record field the profile is nested under (rules read profile.risk_score...).",
            default="profile",
            regex=r"[A-Za-z_][A-Za-z0-9_]*",
        ),
        Option(
            "on_missing",
            "A transaction without a profile: pass (profile null), drop (counted) or dead_letter.",
            default="pass",
            choices=MISSING_POLICIES,
            param_type="ENUM",
        ),
        Option(
            "on_unavailable",
            "Profiles unreachable (timeouts after retries): dead_letter, or missing "
            "(as on_missing).",
            default="dead_letter",
            choices=UNAVAILABLE_POLICIES,
            param_type="ENUM",
        ),
    )
    + option_group(
        "Dedup",
        Option(
            "dedup_key",
            "Field identifying a transaction, or @message_id / @source; empty: no dedup.",
            default="transaction_id",
        ),
        duration_option(
            "dedup_within", "Repeats of an id within this span are duplicates, e.g. 10m.", "10m"
        ),
        Option(
            "dedup_time",
            "Whether the span is event time or processing time.",
            default="event_time",
            choices=TIME_DOMAINS,
            param_type="ENUM",
        ),
    )
    + option_group(
        "Alerts",
        Option(
            "rules",
            "Alert rules {name: expression} as inline YAML or a YAML file; a record matching none "
            "raises no alert.",
            default=DEFAULT_RULES,
        ),
        Option(
            "route_mode",
            "first: a record raises the alert of the first rule it matches; all: of every rule.",
            default="first",
            choices=MODES,
            param_type="ENUM",
        ),
        Option(
            "alert_sink",
            "Where alerts go: pubsub://projects/P/topics/T, redis://H:P/0?mode=stream&key=alerts, "
            "file:///dir...",
            required=True,
            regex=r"[a-z][a-z0-9+.-]*://.*",
            sink=True,
        ),
        Option(
            "route_sinks",
            "Space-separated NAME=URI pairs sending a rule's alerts to their own sink instead.",
            default="",
            sink=True,
        ),
        Option(
            "burst_count",
            "Alert when a key has more than this many transactions in one window; 0: off.",
            type=int,
            default=0,
            param_type="NUMBER",
        ),
        duration_option(
            "burst_window", "The (tumbling) window of burst alerts, e.g. 10m.", "10m", positive=True
        ),
        Option(
            "burst_key",
            "The top-level field burst alerts count per (a record without it raises no burst).",
            default="customer_id",
        ),
    )
)


@dataclass(frozen=True)
class AlertConfig(SpineView):
    """The validated options of ``enrich_and_alert``.

    Attributes:
        spine: endpoints and parse settings.
        dedup: the dedup step, or ``None``.
        enrich: the enrich step (`transforms.enrich.base` family).
        route: the alert rules.
        alert_sinks: ``(sink, rule names)``: where each rule's alerts go, in order.
        bursts: the burst aggregation (its ``having`` is the threshold), or ``None``.
    """

    spine: SpineConfig
    dedup: Dedup | None
    enrich: beam.PTransform
    route: RouteSpec
    alert_sinks: tuple[tuple[Sink, tuple[str, ...]], ...]
    bursts: AggregateSpec | None


def _route(values: dict[str, Any]) -> RouteSpec:
    text = values["rules"]
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as handle:
            text = handle.read()
    elif ":" not in text and ("/" in text or text.endswith((".yaml", ".yml"))):  # a path
        raise OptionError(
            f"--rules: no such file {text!r}; give a YAML file of name: expression pairs, or "
            "the rules inline, e.g. --rules='high_value: amount > 1000'"
        )
    try:
        # The default output raises no alert; its name cannot clash with a rule's.
        return RouteSpec.parse(text, default="_no_alert", mode=values["route_mode"])
    except ValueError as error:
        raise OptionError(f"--rules: {error}") from None


def _alert_sinks(
    values: dict[str, Any], route: RouteSpec, bursts: bool
) -> tuple[tuple[Sink, tuple[str, ...]], ...]:
    own: dict[str, str] = {}
    for pair in values["route_sinks"].split():
        name, _, uri = pair.partition("=")
        if not uri or name not in route.outputs[:-1]:
            raise OptionError(
                f"--route_sinks: {pair!r}: expected NAME=URI with NAME one of the rules "
                f"{list(route.outputs[:-1])}"
            )
        own[name] = uri
    shared = tuple(name for name in route.outputs[:-1] if name not in own)
    context = SinkContext(NAME, counter=ALERTS)
    sinks = []
    if shared or bursts:
        sinks.append(
            (make_sink(values["alert_sink"], context), shared + ((BURST,) if bursts else ()))
        )
    for name, uri in own.items():
        sinks.append((make_sink(uri, replace(context, counter=f"{ALERTS}_{name}")), (name,)))
    return tuple(sinks)


def _bursts(values: dict[str, Any], parse: ParseSettings) -> AggregateSpec | None:
    count = values["burst_count"]
    if count < 0:
        raise OptionError(
            f"--burst_count={count}: give the number of transactions per key and window "
            "above which a burst alert is raised (a positive number), or 0 for no bursts"
        )
    if count == 0:
        # Burst options without bursts would be ignored: refuse them.
        defaults = {option.name: option.default for option in OPTIONS}
        for name in ("burst_window", "burst_key"):
            if values[name] != defaults[name]:
                raise OptionError(
                    f"--{name} applies only with burst alerts: set --burst_count to a "
                    f"positive number, or leave out --{name}"
                )
        return None
    if parse.event_time is None:
        raise OptionError("--burst_count needs event times: set --event_time_field")
    try:
        return AggregateSpec.from_dict(
            {
                "window": {"type": "tumbling", "size": values["burst_window"]},
                "group_by": [values["burst_key"]],
                "aggregates": {"events": "count()"},
                "having": f"events > {values['burst_count']}",
            }
        )
    except SpecError as error:
        raise OptionError(f"--burst_*: {error}") from None


def _required(profiles: str) -> tuple[RequiredField, ...]:
    """The fields records need: the join key's (if present, a scalar).

    Not the burst key: the bursts are a side aggregation; a record without a burst key is
    written like any other and counted as ``not_aggregated.<reason>`` by the bursts.
    """
    key = parse_key(Endpoint.parse(profiles).params["key"], "--profiles")
    return tuple(RequiredField(name, "join_key", "--profiles key") for name in key.fields)


def configure(values: dict[str, Any]) -> AlertConfig:
    """Validates the options and builds the steps and endpoints (nothing runs)."""
    parse = ParseSettings.from_options(values)
    dedup = None
    if values["dedup_key"]:
        try:
            within = parse_duration(values["dedup_within"], "--dedup_within")
            dedup = Dedup(values["dedup_key"], within, values["dedup_time"])
        except ValueError as error:
            raise OptionError(f"--dedup_*: {error}") from None
        if values["dedup_time"] == "event_time" and parse.event_time is None:
            raise OptionError("--dedup_time=event_time needs event times: set --event_time_field")
    settings = EnrichSettings(
        NAME,
        into=values["profile_field"],
        missing=values["on_missing"],
        unavailable=values["on_unavailable"],
    )
    try:
        enrich = enrich_from_uri(values["profiles"], settings)
    except ValueError as error:  # EndpointError included
        raise OptionError(f"--profiles: {error}") from None
    route = _route(values)
    bursts = _bursts(values, parse)
    parse = replace(parse, required=_required(values["profiles"]))
    output = SinkContext(NAME, None, parse.time_field)
    return AlertConfig(
        spine=SpineConfig.from_options(NAME, values, parse, output),
        dedup=dedup,
        enrich=enrich,
        route=route,
        alert_sinks=_alert_sinks(values, route, bursts is not None),
        bursts=bursts,
    )


def build(pipeline: beam.Pipeline, config: AlertConfig) -> None:
    """Adds source -> Parse -> Dedup -> Enrich -> sinks and alerts, failures dead-lettered.

    Every step takes and gives `Block`s of records.
    """
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read()
        if config.dedup is not None:
            blocks = spine.apply("Dedup", config.dedup, blocks)
        enriched = spine.apply("Enrich", config.enrich, blocks)
        enriched = enriched | "Count enriched" >> Count(ENRICHED)
        spine.write("Write", config.sink, enriched)
        routes = spine.apply("Route", Route(config.route, NAME), enriched)
        alerts = {
            name: routed | f"Alert {name}" >> beam.Map(tagged, name, ALERT).with_output_types(Block)
            for name, routed in routes.items()
            if name != config.route.default
        }
        if config.bursts is not None:
            # Late records are written whole by the main sink; the bursts only count them.
            bursts = WindowedAggregate(config.bursts, NAME, dead_letter_late=False)
            rows = spine.apply("Bursts", bursts, enriched)
            # Rows come in their windows; the alerts they are flattened with are global.
            rows = rows | "Unwindowed" >> beam.WindowInto(GlobalWindows())
            alerts[BURST] = rows | "Alert burst" >> beam.Map(
                tagged, BURST, ALERT
            ).with_output_types(Block)
        for index, (sink, names) in enumerate(config.alert_sinks):
            merged = tuple(alerts[name] for name in names) | f"Alerts {index}" >> beam.Flatten()
            spine.write(f"Write alerts {index}", sink, merged)


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Fraud-style alerting: reads transactions, drops duplicates, enriches each with its "
        "customer profile (a cached Redis lookup, or a table from a file, BigQuery or Redis "
        "refreshed on a schedule), writes every enriched transaction to the sink, and sends "
        "alerts to the alert sink: transactions matching rules (amount > 3 * "
        "profile.typical_amount...) and customers with more than N transactions in a window. "
        "Failures go to the dead-letter sink."
    ),
    options=COMMON_OPTIONS + PARSE_OPTIONS + OPTIONS,
    configure=configure,
    build=build,
    delivered=ENRICHED,
    # A record delivered twice could raise a second alert and count twice in a burst.
    streaming_modes=("EXACTLY_ONCE",),
    metrics=metrics.ENRICHMENT + metrics.AGGREGATION,
)
