"""``bigquery-replica://`` sink: CDC changes kept as replica tables, by staging and MERGE.

URI::

    bigquery-replica://PROJECT:DATASET?tables=inventory.customers,inventory.orders
        &endpoint=http://127.0.0.1:9050&merge_every=60s&staging_suffix=_changelog
        &batch_size=500&attempts=forever

``bigquery-replica://PROJECT/DATASET`` names the same dataset. Input records are CDC changes
(``record.data`` is `transforms.cdc.change.Change.to_dict()`). Parameters:

* ``tables`` (required): the comma-separated source tables replicated. Each source table
  ``inventory.customers`` gets a replica table named like it with every character that is not a
  letter, digit or underscore replaced by ``_`` (``inventory_customers``), and a staging table of
  that name plus ``staging_suffix``. A change of another table is dead-lettered.
* ``endpoint``: the REST URL of a BigQuery emulator, as for ``bigquery://``.
* ``merge_every``: how often, in streaming, each replica table is merged from its staging table
  while changes arrive (a duration such as ``60s`` or ``5m``, whole seconds; default 60s).
  A bounded run merges each table that received changes once, at its end.
* ``staging_suffix``: the staging tables' suffix (default ``_changelog``).
* ``batch_size`` and ``attempts``: as for ``bigquery://``; ``attempts`` applies to the MERGE too.

How it works (the design of Datastream to BigQuery): every change is appended, through the
``bigquery://`` sink's insert path, to the staging table of its source table (created,
partitioned by day on ``ingest_time``)::

    key           STRING     the primary key as `transforms.cdc.change.key_text` writes it:
                             compact JSON of the canonical values, keys sorted: {"id":1001}
    op            STRING     upsert, delete or truncate
    sequence_key  STRING     `transforms.cdc.change.sequence_key` of the change's sequence
    row           JSON       the new row of an upsert, else NULL
    source_ts     TIMESTAMP  when the source committed the change, if known
    ingest_time   TIMESTAMP  when the sink staged it

Then a MERGE takes, per key, the staged change with the greatest ``sequence_key``
(``ROW_NUMBER() OVER (PARTITION BY key ORDER BY sequence_key DESC)``) and applies it to the
replica table only when it is strictly newer than the replica's ``_sequence``. The replica::

    key         STRING     as in staging
    row         JSON       the latest row; NULL once deleted
    _sequence   STRING     the sequence_key of the change the row reflects
    _deleted    BOOL       the key is deleted (a tombstone row: query WHERE NOT _deleted)
    _source_ts  TIMESTAMP  source_ts of that change
    _merged_at  TIMESTAMP  when the MERGE wrote it

A delete keeps its key as a tombstone (``_deleted``, ``row`` NULL, ``_sequence`` of the
delete), so an older upsert staged later never brings the row back; a newer upsert does. The
staging tables keep the whole history: replaying, duplicating or reordering changes gives the
same replica. A primary-key change arrives as a delete of the old key and an upsert of the new
one and needs nothing more.

A ``truncate`` is applied: every key whose ``_sequence`` is older than the truncate becomes a
tombstone with the truncate's sequence, and staged changes not newer than the latest truncate
are ignored. This assumes, as every log position does (Postgres LSN, MySQL binlog position,
Datastream ``sort_keys``), that sequences order the changes of all keys of a table.

Changes that are not valid changes, or are of a table not in ``tables``, come out as dead-letter
records with reason ``sink_rejected``, as do staging rows BigQuery rejects (a ``source_ts`` that
is not a timestamp, say); batches that kept failing transiently come out with reason
``sink_unavailable``. ``written`` counts staged changes; ``replica_merges`` counts MERGE
statements run. A MERGE that keeps failing fails its bundle (its changes are already staged,
so the next MERGE would take them).
"""

from __future__ import annotations

import re

import apache_beam as beam
from apache_beam.transforms import trigger, window

from transforms.cdc.apply import CHANGE_SCHEMA
from transforms.durations import parse_duration
from transforms.io.base import Sink, SinkContext
from transforms.io.bigquery.replica_steps import MergeFn, ReplicaTarget, StageFn, stage_tag
from transforms.io.bigquery.replica_tables import NOT_NAME, STAGING_SCHEMA, replica_name
from transforms.io.bigquery.sink import MAX_BATCH_SIZE, InsertRowsFn, InsertTarget
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.retry import RetryPolicy

__all__ = ["BigQueryReplicaSink"]

_PARAMS = frozenset(
    {"tables", "endpoint", "merge_every", "staging_suffix", "batch_size", "attempts"}
)
_DATASET = re.compile(r"(?P<project>[a-z][a-z0-9-]*[a-z0-9])[:/](?P<dataset>\w+)")
_REJECTED = "rejected"
_INSERTED = "inserted"


class BigQueryReplicaSink(Sink):
    """Keeps BigQuery replica tables of CDC changes (blocks of `Record`s of `Change.to_dict()`).

    ``expand`` returns the dead-letter dicts of the changes that were not staged (reasons
    ``sink_rejected`` and ``sink_unavailable``), each in its record's window and timestamp.

    Args:
        endpoint: a ``bigquery-replica://`` URI; see this module for its parameters.
        context: the pipeline writing to the sink.

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: a dataset not named
            ``PROJECT:DATASET``, no or duplicate ``tables``, source tables whose replica names
            collide, unknown parameters, a bad duration or number, or records of a schema
            that is not the change records' (`transforms.cdc.apply.CHANGE_SCHEMA`).
    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(_PARAMS)
        if context.schema is not None and context.schema != CHANGE_SCHEMA:
            raise EndpointError(
                f"{endpoint}: bigquery-replica:// keeps CDC replicas of change records, not "
                f"records of fields {list(context.schema.names)}: write those to a bigquery:// "
                "table"
            )
        if endpoint.username or endpoint.password:
            raise EndpointError(f"{endpoint}: credentials do not belong in a BigQuery URI")
        match = _DATASET.fullmatch(endpoint.authority + endpoint.path)
        if match is None:
            raise EndpointError(
                f"{endpoint}: name the dataset as bigquery-replica://PROJECT:DATASET (or "
                "PROJECT/DATASET): a lower-case project id, then a dataset name of letters, "
                "digits and underscores"
            )
        emulator = endpoint.params.get("endpoint") or None
        if emulator is not None and not emulator.startswith(("http://", "https://")):
            raise EndpointError(f"{endpoint}: endpoint must be an http:// or https:// URL")
        suffix = endpoint.params.get("staging_suffix", "_changelog")
        if not suffix or NOT_NAME.search(suffix):
            raise EndpointError(
                f"{endpoint}: staging_suffix must be letters, digits and underscores"
            )
        try:
            merge_every = parse_duration(endpoint.params.get("merge_every", "60s"), "merge_every")
        except ValueError as error:
            raise EndpointError(f"{endpoint}: {error}") from None
        if merge_every < 1:
            raise EndpointError(f"{endpoint}: merge_every must be at least 1s")
        self.merge_seconds = round(merge_every)  # processing-time triggers take whole seconds
        self.batch_size = endpoint.positive("batch_size", int, 500)
        if self.batch_size > MAX_BATCH_SIZE:
            raise EndpointError(f"{endpoint}: batch_size must be at most {MAX_BATCH_SIZE}")
        self.replica = ReplicaTarget(
            project=match["project"],
            dataset=match["dataset"],
            endpoint=emulator,
            tables=self._tables(endpoint),
            staging_suffix=suffix,
            retry=RetryPolicy.from_endpoint(endpoint),
            pipeline=context.pipeline,
        )

    @staticmethod
    def _tables(endpoint: Endpoint) -> tuple[tuple[str, str], ...]:
        """Returns ``(source table, replica name)`` of ``tables=``, checked."""
        sources = [name.strip() for name in endpoint.params.get("tables", "").split(",")]
        if not all(sources):
            raise EndpointError(
                f"{endpoint}: tables=<source tables> is required: the comma-separated tables "
                "to replicate, e.g. tables=inventory.customers,inventory.orders"
            )
        pairs = tuple((source, replica_name(source)) for source in sources)
        names = [name for _, name in pairs]
        clashes = sorted({source for source, name in pairs if names.count(name) > 1})
        if clashes:
            raise EndpointError(
                f"{endpoint}: tables {clashes} are listed twice or share a replica table name"
            )
        return pairs

    @property
    def tables(self) -> dict[str, str]:
        """The replicated source tables and their replica tables, ``project.dataset.table``."""
        return {source: self.replica.table(name) for source, name in self.replica.tables}

    def _merge_window(self, blocks: beam.PCollection) -> beam.PTransform:
        """Returns the windowing of the merge signals.

        Bounded input has no processing-time clock: the global window fires once, at the end.
        Unbounded input merges each table at most every ``merge_every`` while changes arrive,
        and once more when the window closes (a drain).
        """
        if blocks.is_bounded:
            return beam.WindowInto(window.GlobalWindows())
        return beam.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.Repeatedly(trigger.AfterProcessingTime(self.merge_seconds)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        replica = self.replica
        names = [name for _, name in replica.tables]
        staged = blocks | "Stage" >> beam.ParDo(StageFn(replica)).with_outputs(
            *map(stage_tag, names), main=_REJECTED
        )
        dead_letters = [staged[_REJECTED]]
        inserted = []
        for name in names:
            target = InsertTarget(
                table=replica.staging(name),
                project=replica.project,
                endpoint=replica.endpoint,
                schema=STAGING_SCHEMA,
                create="if_needed",
                partition_field="ingest_time",
                clustering=("key",),
                batch_size=self.batch_size,
                retry=replica.retry,
                pipeline=replica.pipeline,
                counter=self.context.counter,
                inserted_tag=_INSERTED,
            )
            written = staged[stage_tag(name)] | f"Insert {name}" >> beam.ParDo(
                InsertRowsFn(target)
            ).with_outputs(_INSERTED, main=_REJECTED)
            dead_letters.append(written[_REJECTED])
            inserted.append(written[_INSERTED])
        _ = (
            inserted
            | "Inserted" >> beam.Flatten()
            | "Merge window" >> self._merge_window(blocks)
            | "Per table" >> beam.CombinePerKey(sum)
            | "Merge" >> beam.ParDo(MergeFn(replica))
        )
        return dead_letters | "Dead letters" >> beam.Flatten()
