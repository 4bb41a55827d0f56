"""``cdc_replicate``: Debezium or Datastream changes into a replica, in order per key.

Graph::

    source -> drop tombstones -> Parse -> NormalizeChanges -> ApplyChanges -> sink
                                                                    `-> (file sink, bounded
                                                                         source) FinalState
       parse, normalize and apply failures + sink rejections -> dead letter

The sink receives the latest-state stream: `Record`s of applied `Change` dicts (see
`transforms.cdc.apply`), so any sink that takes it (a BigQuery replica, Redis latest state)
works. A ``file://`` sink with a bounded source instead gets the final table of every source
table (`transforms.cdc.final_state`). Balance: ``read + cdc_key_changes = applied +
dead_lettered + dropped`` (dropped: ``tombstone``, ``cdc_message``, ``cdc_duplicate``,
``cdc_stale``, ``cdc_superseded``): an update that changes its primary key is read as a delete
of the old key and an upsert of the new one (`transforms.cdc.envelope.KeyChange`), one more
change to account for, counted in ``cdc_key_changes``.

Keys: ``--key_columns=id`` declares ``id`` the key of every table; qualified entries
(``inventory.orders=order_id,line``) name one table's, and win over a bare default given with
them (``id;inventory.orders=order_id,line``). Key values are compared in canonical form
(`transforms.cdc.change.key_text`: ``1``, ``1.0`` and ``"1"`` are the key ``1``; ``true`` is its
own key); a null key value is dead-lettered ``cdc_no_key``, a list, object or NaN
``cdc_bad_key``.

Records travel in blocks (`transforms.blocks`) from Parse to the sink. Final tables need only
each key's latest change, so that run applies changes by keeping just those
(`transforms.cdc.compact`: memory of one change per key, the others counted as
``cdc_duplicate`` or ``cdc_superseded``). Every other sink keeps or forwards the stream of
applied changes (the BigQuery replica's change log, a topic, Redis, which dead-letters each
truncate), so it gets every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import COMMON_OPTIONS, Duration, Option, OptionError
from pipelines.framework.spine import PARSE_OPTIONS, ParseSettings, Spine, SpineConfig, SpineView
from transforms import metrics
from transforms.cdc.apply import APPLIED, CHANGE_SCHEMA, ApplyChanges
from transforms.cdc.debezium import DropTombstones
from transforms.cdc.envelope import parse_key_columns
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import FORMATS, KEY_CHANGES, NormalizeChanges
from transforms.durations import parse_duration
from transforms.io.base import SinkContext

__all__ = ["PIPELINE", "CdcConfig", "build", "configure"]

NAME = "cdc_replicate"

_PARSE_DEFAULTS: dict[str, dict[str, Any]] = {
    "event_time_field": {
        "default": "none",
        "help": "Field holding the event time, which times delete markers: 'none' keeps the "
        "source's timestamps; the source commit time is 'source.ts_ms' (Debezium, "
        "'payload.source.ts_ms' with schemas) or 'source_timestamp' (Datastream).",
    },
}
PARSE = tuple(replace(option, **_PARSE_DEFAULTS.get(option.name, {})) for option in PARSE_OPTIONS)

OPTIONS = (
    Option(
        "format",
        "The change envelopes: Debezium (JSON converter, with or without schemas), Datastream "
        "(JSON), or auto to tell them apart per record.",
        default="auto",
        choices=FORMATS,
        param_type="ENUM",
        group="Changes",
    ),
    Option(
        "key_columns",
        "Primary key columns: 'id' for every table, or per table, e.g. "
        "'inventory.customers=id;inventory.orders=order_id,line', or both, e.g. "
        "'id;inventory.orders=order_id,line' (a table's own entry wins); tables not named, "
        "without a default, take the Kafka message key or Datastream's primary_keys. Key "
        "values 1, 1.0 and '1' are one key.",
        default="",
        group="Changes",
    ),
    Option(
        "delete_retention",
        "How long (event time) a deleted key is remembered, so that a late older change "
        "cannot bring it back, e.g. 7d.",
        default="7d",
        duration=Duration(positive=True),
        group="Changes",
    ),
)


@dataclass(frozen=True)
class CdcConfig(SpineView):
    """The validated options of ``cdc_replicate``.

    Attributes:
        spine: endpoints and parse settings.
        format: ``debezium``, ``datastream`` or ``auto``.
        key_columns: declared primary key columns per table.
        delete_retention: how long delete markers are kept, in seconds.
        final_state: the sink gets the final tables (a file sink and a bounded source) instead
            of the latest-state stream.
    """

    spine: SpineConfig
    format: str
    key_columns: dict[str, tuple[str, ...]]
    delete_retention: float
    final_state: bool


def configure(values: dict[str, Any]) -> CdcConfig:
    """Validates the options: key columns, retention, the endpoints."""
    try:
        key_columns = parse_key_columns(values["key_columns"])
    except ValueError as exc:
        raise OptionError(f"--key_columns: {exc}") from None
    try:
        retention = parse_duration(values["delete_retention"], "--delete_retention")
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    if retention <= 0:
        raise OptionError("--delete_retention must be positive")
    parse = ParseSettings.from_options(values)
    spine = SpineConfig.from_options(NAME, values, parse, SinkContext(NAME, CHANGE_SCHEMA))
    final_state = spine.sink.endpoint.scheme == "file" and spine.source.bounded
    return CdcConfig(spine, values["format"], key_columns, retention, final_state)


def build(pipeline: beam.Pipeline, config: CdcConfig) -> None:
    """Adds source -> Parse -> Normalize -> Apply -> sink, with every failure dead-lettered."""
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read(before_parse="Drop tombstones" >> DropTombstones())
        normalize = NormalizeChanges(NAME, config.format, config.key_columns)
        changes = spine.apply("Normalize", normalize, blocks)
        apply = ApplyChanges(NAME, config.delete_retention, latest_only=config.final_state)
        applied = spine.apply("Apply", apply, changes)
        if config.final_state:
            final_state = FinalState(latest_per_key=apply.compacts(changes))
            applied = applied | "Final state" >> final_state
        spine.write("Write", config.sink, applied)


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Replicates database changes captured by Debezium or Datastream: normalizes every "
        "envelope into one change record, applies changes in source order per primary key "
        "(duplicates and stale changes dropped and counted, deletes remembered so late changes "
        "cannot resurrect rows, truncates carried to the sink) and writes the latest-state "
        "stream to a replica sink, or the final tables to files. Failures go to the "
        "dead-letter sink with their original bytes."
    ),
    options=COMMON_OPTIONS + PARSE + OPTIONS,
    configure=configure,
    build=build,
    delivered=APPLIED,
    splits=KEY_CHANGES,
    # Changes are applied by sequence, so a redelivered change is dropped as a duplicate:
    # at-least-once is as correct, and cheaper.
    streaming_modes=("AT_LEAST_ONCE", "EXACTLY_ONCE"),
    metrics=metrics.CDC,
)
