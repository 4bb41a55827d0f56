"""``sessionize``: sessions per key from any source into any sink, late records dead-lettered.

source -> Parse -> Sessionize(key, gap) -> sink (one row per session and pane)
   parse failures + keyless and late records + sink rejections -> dead letter

Without ``--dead_letter``, dead letters go next to the sink: ``file:///out`` ->
``file:///out_dead_letter``, ``bigquery://P:D.T`` -> ``bigquery://P:D.T_dead_letter`` (same
parameters); for any other sink ``--dead_letter`` must be given. Where they go is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import COMMON_OPTIONS, Duration, Option, OptionError
from pipelines.framework.spine import PARSE_OPTIONS, ParseSettings, Spine, SpineConfig, SpineView
from transforms import metrics
from transforms.aggregate.windowed import AGGREGATED
from transforms.durations import parse_duration
from transforms.fields import RequiredField
from transforms.io.base import SinkContext
from transforms.io.endpoint import Endpoint
from transforms.sessions import Sessionize, SessionSpec, session_schema

__all__ = ["PIPELINE", "SessionizeConfig", "default_dead_letter"]

NAME = "sessionize"
log = logging.getLogger(__name__)

OPTIONS = (
    Option(
        "key_field",
        "Field whose value a session belongs to, e.g. user_id.",
        required=True,
        group="Sessions",
    ),
    Option(
        "gap",
        "Inactivity that ends a session, e.g. 30m.",
        default="30m",
        duration=Duration(positive=True),
        group="Sessions",
    ),
    Option(
        "allowed_lateness",
        "How long after a session closes late records still update it (a LATE row); later "
        "records are dead-lettered with reason late.",
        default="0s",
        duration=Duration(),
        group="Sessions",
    ),
    Option(
        "early",
        "Emit EARLY rows of open sessions this often (processing time, streaming runs only), "
        "e.g. 30s; empty: one row when a session closes.",
        default="",
        duration=Duration(),
        group="Sessions",
    ),
    Option(
        "include_fields",
        "Comma-separated fields of the first and last event to keep as first_<f> and last_<f>.",
        default="",
        group="Sessions",
    ),
)
# The dead-letter sink defaults to one next to the sink (see default_dead_letter).
_DEAD_LETTER = Option(
    "dead_letter",
    "Where records that fail any step are written; default: next to a file:// or bigquery:// "
    "sink (<sink>_dead_letter).",
    default="",
    regex=r"([a-z][a-z0-9+.-]*://.*)?",
    group="Endpoints",
    sink=True,
)


def default_dead_letter(sink_uri: str) -> str:
    """Returns the dead-letter URI next to a sink.

    ``file:///out`` -> ``file:///out_dead_letter``; ``bigquery://P:D.T?endpoint=...`` ->
    ``bigquery://P:D.T_dead_letter?endpoint=...``.

    Raises:
        OptionError: the sink is of another kind, for which no place is safe to assume.
    """
    endpoint = Endpoint.parse(sink_uri)
    base, _, query = sink_uri.partition("?")
    if endpoint.scheme == "file":
        return f"file://{endpoint.path.rstrip('/')}_dead_letter"
    if endpoint.scheme == "bigquery":
        return f"{base.rstrip('/')}_dead_letter" + (f"?{query}" if query else "")
    raise OptionError(
        f"--dead_letter is required with a {endpoint.scheme}:// sink (a default exists only "
        "next to file:// and bigquery:// sinks), e.g. --dead_letter=file:///tmp/dead_letter"
    )


@dataclass(frozen=True)
class SessionizeConfig(SpineView):
    """The validated options of ``sessionize``.

    Attributes:
        spine: endpoints and parse settings.
        sessions: what makes a session.
    """

    spine: SpineConfig
    sessions: SessionSpec


def _sessions(values: dict[str, Any], parse: ParseSettings) -> SessionSpec:
    include = tuple(name.strip() for name in values["include_fields"].split(",") if name.strip())
    try:
        spec = SessionSpec(
            key_field=values["key_field"],
            gap=parse_duration(values["gap"], "--gap"),
            allowed_lateness=parse_duration(values["allowed_lateness"], "--allowed_lateness"),
            early_seconds=parse_duration(values["early"], "--early") if values["early"] else 0.0,
            include_fields=include,
        )
    except ValueError as exc:
        # The durations are checked by their options, but for the gap's least.
        options = "--gap" if "gap" in str(exc) else "--key_field/--include_fields"
        raise OptionError(f"{options}: {exc}") from None
    if parse.schema is not None:
        missing = sorted(spec.input_fields - set(parse.schema.names))
        if missing:
            raise OptionError(
                f"fields {missing} are not in the schema; its fields: {list(parse.schema.names)}"
            )
    return spec


def configure(values: dict[str, Any]) -> SessionizeConfig:
    """Validates the options: sessions, their fields against the schema, the endpoints."""
    parse = ParseSettings.from_options(values)
    if parse.event_time is None:
        raise OptionError("sessions need event times: set --event_time_field")
    sessions = _sessions(values, parse)
    parse = replace(parse, required=(RequiredField(sessions.key_field, "key", "--key_field"),))
    if not values["dead_letter"]:
        values = {**values, "dead_letter": default_dead_letter(values["sink"])}
        log.warning("%s: no --dead_letter given: dead letters go to %s", NAME,
                    Endpoint.parse(values["dead_letter"]))  # fmt: skip
    rows = SinkContext(NAME, session_schema(sessions, parse.schema), "session_start")
    return SessionizeConfig(SpineConfig.from_options(NAME, values, parse, rows), sessions)


def build(pipeline: beam.Pipeline, config: SessionizeConfig) -> None:
    """Adds source -> Parse -> Sessionize -> sink, with every failure dead-lettered."""
    with Spine(pipeline, config.spine) as spine:
        records = spine.read()
        rows = spine.apply("Sessionize", Sessionize(config.sessions, NAME), records)
        spine.write("Write", config.sink, rows)


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Groups events into sessions per key (a user, a device): a session ends after a gap "
        "of inactivity. Writes one row per session with its key, start, end (the last "
        "event's time), event count, duration and optionally fields of its first and last "
        "event. Records without the key, too late for their session, or that fail to parse "
        "go to the dead-letter sink."
    ),
    options=tuple(
        _DEAD_LETTER if option.name == "dead_letter" else option for option in COMMON_OPTIONS
    )
    + PARSE_OPTIONS
    + OPTIONS,
    configure=configure,
    build=build,
    delivered=AGGREGATED,
    # A record delivered twice would count twice in its session.
    streaming_modes=("EXACTLY_ONCE",),
    metrics=metrics.AGGREGATION,
)
