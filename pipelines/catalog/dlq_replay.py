"""``dlq_replay``: dead letters sent back to a source once their cause is fixed.

Graph::

    dead letters (file, table, subscription) -> Parse -> Select -> [Ledger] -> Plan
        Plan -> replays -> sink (the original bytes and attributes, with the replay attributes)
             `-> parked  -> parked sink (the dead letters themselves)
        --preview=true: replays and parked -> report sink (one line each), nothing sent
       what is not a dead letter, a ``where`` that fails, sink rejections -> dead letter

``--source`` is where the dead letters are: the folder's files a file dead-letter sink wrote
(``file:///dlq/*.jsonl``), a dead-letter table (``bigquery://P:D.T``, with ``where=`` to read
part of it), or a subscription of a dead-letter topic. ``--sink`` is a source endpoint of the
pipeline to feed again: a Pub/Sub topic, a Kafka topic (``key=key`` keeps the original key), a
Kinesis stream (``partition_key=key``) or a folder of JSON Lines files (one payload a line; files
and Kinesis records keep no attributes). Each message sent is the original payload, unchanged,
with the original attributes plus ``dlq_replay_count`` (1 for the first replay),
``dlq_replay_of`` (the id of the first dead letter of its chain) and ``dlq_replay_id``
(``dlq_replay_of:dlq_replay_count``, unique per replay: a consumer can deduplicate on it, e.g.
Dataflow's Pub/Sub ``id_attribute``). When it fails again, the pipeline that reads it writes a
dead letter whose ``retry_count`` is that count and whose attributes keep those ids: it points to
the original, with the original bytes (`transforms.dead_letter`). A dead letter replayed
``--max_replays`` times already, or whose payload was cut (``payload_truncated``), is parked.

Sent once: with ``--ledger`` (a Redis database), every run claims each replay id before sending
it (`transforms.replay_ledger`), and a dead letter another run replayed is not sent again
(``dropped.already_replayed``). A Pub/Sub source needs none (its dead letters are acknowledged
once replayed); file and table sources, read whole by every run, do, or ``--ledger=none`` to
send again on purpose.

Balance: ``read = written (replays + parked, or report lines) + dead_lettered + dropped``
(``filtered``, ``already_replayed``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import COMMON_OPTIONS, Option, OptionError
from pipelines.framework.spine import ParseSettings, Spine, SpineConfig, SpineView
from transforms import metrics
from transforms.dead_letter import DEAD_LETTER_SCHEMA, truncate_payload
from transforms.errors import BadTimestamp
from transforms.event_time import parse_timestamp
from transforms.expressions import Expression, ExpressionError
from transforms.io.base import Sink, SinkContext
from transforms.io.endpoint import EndpointError
from transforms.io.registry import make_sink
from transforms.replay import PARKED, PlanReplays, SelectDeadLetters, Selection
from transforms.replay_ledger import ClaimReplays, Ledger
from transforms.replay_report import WOULD_PARK, DescribeReplays

__all__ = ["PIPELINE", "ReplayConfig", "build", "configure", "selection"]

NAME = "dlq_replay"
MAX_DEAD_LETTER_BYTES = 10_000_000

_ENDPOINT = r"[a-z][a-z0-9+.-]*://.*"
_GROUP = "Replay"
_ENDPOINT_HELP = {
    "source": "Where the dead letters are: file:///dlq/*.jsonl, bigquery://P:D.T (optionally "
    "?where=SQL), or pubsub://projects/P/subscriptions/S of a dead-letter topic.",
    "sink": "Where the original messages are sent again: pubsub://projects/P/topics/T, "
    "kafka://HOST:PORT/TOPIC?key=key, kinesis://STREAM?partition_key=key, or file:///dir.",
    "dead_letter": "Where this run's own failures go: what is not a dead letter, and replays the "
    "target refuses (with their original bytes and replay attributes).",
}
OPTIONS = tuple(
    replace(o, help=_ENDPOINT_HELP[o.name]) if o.name in _ENDPOINT_HELP else o
    for o in COMMON_OPTIONS
) + (
    Option(
        "parked",
        "Where dead letters past --max_replays (or with a cut payload) go instead, as dead "
        "letters: any sink, e.g. bigquery://P:D.parked or file:///parked.",
        required=True,
        regex=_ENDPOINT,
        group="Endpoints",
        sink=True,
    ),
    Option(
        "ledger",
        "Where the replays sent are recorded, so that no run sends one again: "
        "redis://HOST:PORT/DB?prefix=P; 'none' sends again what earlier runs sent (a Pub/Sub "
        "source needs none).",
        default="",
        group="Endpoints",
    ),
    Option("reasons", "Comma-separated reasons to replay (empty: all).", default="", group=_GROUP),
    Option("steps", "Comma-separated steps to replay (empty: all).", default="", group=_GROUP),
    Option(
        "pipelines", "Comma-separated pipelines to replay (empty: all).", default="", group=_GROUP
    ),
    Option(
        "since",
        "Replay dead letters that failed at or after this time (RFC 3339 or epoch seconds).",
        default="",
        group=_GROUP,
    ),
    Option(
        "until",
        "Replay dead letters that failed before this time (RFC 3339 or epoch seconds).",
        default="",
        group=_GROUP,
    ),
    Option(
        "where",
        "An expression over the dead letter's fields, e.g. retry_count < 2 and "
        "source.topic == 'orders' (empty: all); comparing a field with a value of another kind "
        "is refused.",
        default="",
        group=_GROUP,
    ),
    Option(
        "max_replays",
        "How many times a message is replayed at most; a dead letter replayed that often is "
        "parked.",
        type=int,
        default=3,
        param_type="NUMBER",
        group=_GROUP,
    ),
    Option(
        "preview",
        "A dry run: send nothing: count the dead letters by reason and write what would be sent or "
        "parked, one line each, to --report.",
        type=bool,
        default=False,
        group=_GROUP,
    ),
    Option(
        "report",
        "Where a dry run writes what it would send, one JSON line per dead letter.",
        default="stdout://",
        regex=_ENDPOINT,
        group=_GROUP,
        parent_name="preview",
        parent_trigger_values=("true",),
        sink=True,
    ),
)


@dataclass(frozen=True)
class ReplayConfig(SpineView):
    """The validated options of ``dlq_replay``.

    Attributes:
        spine: the dead letters' source, the target (``sink``, writing original messages) and
            the dead-letter sink of this pipeline.
        parked: the sink of parked dead letters.
        selection: which dead letters are replayed.
        max_replays: how many times a message is replayed at most.
        ledger: the ledger of replays, or ``None``.
        run_id: this run's id in the ledger.
        report: the dry run's report sink, or ``None`` for a real run.
    """

    spine: SpineConfig
    parked: Sink
    selection: Selection
    max_replays: int
    ledger: Ledger | None
    run_id: str
    report: Sink | None


def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _time(values: dict[str, Any], name: str) -> float | None:
    if not values[name]:
        return None
    try:
        return parse_timestamp(values[name])
    except BadTimestamp as error:
        raise OptionError(
            f"--{name}={values[name]}: {error}; give RFC 3339 or epoch seconds"
        ) from None


def selection(values: dict[str, Any]) -> Selection:
    """Returns the `Selection` of the options (``reasons``, ``where``, ``since``...).

    Raises:
        OptionError: a time or the expression cannot be used.
    """
    try:
        where = Expression(values["where"]) if values["where"] else None
        return Selection(
            reasons=_names(values["reasons"]),
            steps=_names(values["steps"]),
            pipelines=_names(values["pipelines"]),
            since=_time(values, "since"),
            until=_time(values, "until"),
            where=where,
        )
    except ExpressionError as error:
        raise OptionError(f"--where: {error}") from None
    except ValueError as error:
        raise OptionError(f"--since/--until: {error}") from None


def _ledger(values: dict[str, Any], source: str) -> Ledger | None:
    text = values["ledger"]
    if text == "none":
        return None
    if text:
        try:
            return Ledger.reached(text)
        except EndpointError as error:
            raise OptionError(f"--ledger: {error}") from None
    if source not in ("file", "bigquery") or values["preview"]:
        return None
    raise OptionError(
        f"--ledger is needed to replay from {source}:// (it is read whole by every run): give "
        "redis://HOST:PORT/DB?prefix=P, or --ledger=none to send again what earlier runs sent"
    )


def configure(values: dict[str, Any]) -> ReplayConfig:
    """Validates the options of this pipeline."""
    if values["max_replays"] < 1:
        raise OptionError("--max_replays must be at least 1")
    parse = ParseSettings(None, None, MAX_DEAD_LETTER_BYTES, "keep")
    spine = SpineConfig.from_options(NAME, values, parse, SinkContext(NAME, raw=True))
    source = spine.source.endpoint.scheme
    if values["preview"] and not spine.source.bounded:
        raise OptionError(
            f"--preview reads {source}:// for good (a subscription's messages are acknowledged): "
            "dry-run a copy of the dead letters in files or a table"
        )
    parked = make_sink(
        values["parked"],
        SinkContext(NAME, DEAD_LETTER_SCHEMA, "error_timestamp", shrink=truncate_payload),
    )
    report = make_sink(values["report"], SinkContext(NAME)) if values["preview"] else None
    return ReplayConfig(
        spine=spine,
        parked=parked,
        selection=selection(values),
        max_replays=values["max_replays"],
        ledger=_ledger(values, source),
        run_id=uuid.uuid4().hex,
        report=report,
    )


def build(pipeline: beam.Pipeline, config: ReplayConfig) -> None:
    """Adds dead letters -> Select -> [Ledger] -> Plan -> target and parked sinks (or report)."""
    with Spine(pipeline, config.spine) as spine:
        letters = spine.apply("Select", SelectDeadLetters(NAME, config.selection), spine.read())
        if config.ledger is not None:
            claim = ClaimReplays(config.ledger, config.run_id, dry_run=config.report is not None)
            letters = spine.apply("Ledger", claim, letters)
        counter = PARKED if config.report is None else WOULD_PARK
        replays, parked = letters | "Plan" >> PlanReplays(config.max_replays, counter)
        if config.report is not None:
            lines = (replays, parked) | "Describe" >> DescribeReplays(config.max_replays)
            spine.write("Report", config.report, lines)
        else:
            spine.write("Replay", config.sink, replays)
            spine.write("Park", config.parked, parked)


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Reads dead letters back (files, a BigQuery table or a Pub/Sub subscription), keeps "
        "those picked by reason, step, pipeline, time or an expression, and sends their "
        "original bytes and attributes again to a source (Pub/Sub, Kafka, Kinesis, files), "
        "each with its replay count and the id of its original dead letter, at most once per "
        "replay; past the most replays a dead letter is parked. A dry run counts and lists "
        "what would be sent, and sends nothing."
    ),
    options=OPTIONS,
    configure=configure,
    build=build,
    metrics=metrics.REPLAY,
)
