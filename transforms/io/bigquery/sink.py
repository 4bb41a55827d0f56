"""``bigquery://`` sink: rows into a table created from the pipeline's schema.

URI::

    bigquery://PROJECT:DATASET.TABLE?method=storage_write&mode=exactly_once
        &schema_update=add_fields&partition_field=ts&partition_type=DAY&cluster=a,b
        &batch_size=500&create=if_needed&attempts=forever&endpoint=http://127.0.0.1:9050
        &storage_endpoint=127.0.0.1:9060&metadata=true

``bigquery://PROJECT/DATASET.TABLE`` names the same table. Parameters:

* ``method``: ``storage_write`` (default) writes through the Storage Write API
  (`transforms.io.bigquery.storage_write`); ``insert_all``: legacy streaming inserts
  (`transforms.io.bigquery.insert_all`), at least once.
* ``mode`` (Storage Write): ``at_least_once`` (default, the default stream) or
  ``exactly_once`` (committed streams with offsets, and the write log of
  `transforms.io.bigquery.ledger`).
* ``schema_update`` (Storage Write): ``none`` (default) or ``add_fields``: new top-level fields
  become NULLABLE columns (`transforms.io.bigquery.evolve`).
* ``endpoint``: the REST URL of a BigQuery emulator; without it ``BIGQUERY_EMULATOR_HOST`` or,
  when that is unset, the real BigQuery API with Application Default Credentials.
  ``storage_endpoint``: the emulator's Storage Write gRPC ``HOST:PORT``; without it
  ``BIGQUERY_STORAGE_EMULATOR_HOST``.
* ``create``: ``if_needed`` (default) creates the dataset and table from the schema unless they
  exist; ``never`` requires the table to exist. Without a schema (a pipeline run without
  ``--schema``), ``if_needed`` reads the schema of the existing table when the sink is built,
  and refuses to build when the table does not exist.
* ``partition_field``: a ``TIMESTAMP`` or ``DATE`` field of the schema (default: the event-time
  field when the schema has one of those types), ``_PARTITIONTIME`` (ingestion time) or
  ``none``; ``partition_type``: ``DAY`` (default), ``HOUR``, ``MONTH`` or ``YEAR``.
* ``cluster``: up to four comma-separated fields of the schema to cluster the created table by.
* ``metadata``: ``true`` adds the source's metadata to each row as ``_meta_*`` columns (message
  id, publish time, attributes, Kafka topic/partition/offset/key, Kinesis stream/shard/sequence,
  file path/line: `transforms.io.metadata`), to the created table's schema too; default
  ``false``. A table the sink does not create must have them.
* ``batch_size``: the most rows per request (default 500). A request is also cut before it
  would pass 9 MB (BigQuery refuses requests over 10 MB); a single row that alone would pass
  it is dead-lettered with reason ``row_too_large``, its payload truncated (a sink of dead
  letters cuts such a row's payload instead, `transforms.io.base.SinkContext.shrink`).
* ``attempts``: ``forever`` (default) sends a request that failed as a whole with a transient
  error (5xx, 429, gRPC unavailable, connection lost) again, with exponential backoff and
  jitter, until BigQuery is back, holding the stream; a number N gives up after N sends (see
  `transforms.io.retry`).

Rows BigQuery (or the row encoder) rejects come out as dead-letter records with reason
``sink_rejected`` (``schema_mismatch`` with ``schema_update=add_fields``) and the reason given;
with ``attempts=N``, a batch whose request kept failing transiently comes out with reason
``sink_unavailable``.
"""

from __future__ import annotations

import logging
import os
import re

import apache_beam as beam

from transforms.io.base import Sink, SinkContext
from transforms.io.bigquery.client import (
    EMULATOR_ENV,
    INGESTION_TIME,
    STORAGE_EMULATOR_ENV,
    make_client,
    table_schema,
)
from transforms.io.bigquery.insert_all import (
    MAX_BATCH_SIZE,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT,
    ROW_TOO_LARGE,
    InsertRowsFn,
    InsertTarget,
    insert_id,
    to_insert_row,
    to_json_row,
)
from transforms.io.bigquery.storage_write import StorageWriteFn
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.metadata import METADATA_SCHEMA, AddMetadata, keeps_metadata, with_metadata
from transforms.io.retry import SINK_UNAVAILABLE, RetryPolicy
from transforms.schema import Schema

__all__ = [
    "MAX_REQUEST_BYTES",
    "REQUEST_TIMEOUT",
    "ROW_TOO_LARGE",
    "SINK_UNAVAILABLE",
    "TABLE_PATTERN",
    "WRITE_MODES",
    "BigQuerySink",
    "InsertRowsFn",
    "InsertTarget",
    "insert_id",
    "table_location",
    "to_insert_row",
    "to_json_row",
]

MAX_CLUSTER_FIELDS = 4
SCHEMA_TIMEOUT = 10.0  # the most seconds reading an existing table's schema may take

_PARAMS = frozenset(
    {
        "endpoint", "storage_endpoint", "method", "mode", "schema_update", "create",
        "partition_field", "partition_type", "cluster", "batch_size", "attempts", "metadata",
    }
)  # fmt: skip
STORAGE_WRITE, INSERT_ALL = "storage_write", "insert_all"
AT_LEAST_ONCE, EXACTLY_ONCE = "at_least_once", "exactly_once"
METHODS = (STORAGE_WRITE, INSERT_ALL)
MODES = (AT_LEAST_ONCE, EXACTLY_ONCE)
WRITE_MODES: tuple[tuple[str, str, str], ...] = (
    (f"method={STORAGE_WRITE}&mode={AT_LEAST_ONCE} (default)", "",
     "the Storage Write API's default stream: at least once (a request sent again after a "
     "lost answer may write its rows twice)"),
    (f"mode={EXACTLY_ONCE}", f"mode={EXACTLY_ONCE}",
     "Storage Write committed streams, each request at its offset, and a write log: exactly "
     "once"),
    (f"method={INSERT_ALL}", f"method={INSERT_ALL}",
     "legacy streaming inserts (insertAll) with insert ids: at least once"),
)  # fmt: skip
"""The ways a ``bigquery://`` sink writes: (URI parameters, runner matrix kind, what it means)."""
_SCHEMA_UPDATES = ("none", "add_fields")
_PARTITION_GRAINS = ("DAY", "HOUR", "MONTH", "YEAR")
_CREATE_MODES = ("if_needed", "never")
_PARTITION_TYPES = frozenset({"TIMESTAMP", "DATE"})
_UNCLUSTERABLE_TYPES = frozenset({"FLOAT", "RECORD", "JSON"})
_LOG = logging.getLogger(__name__)
TABLE_PATTERN = re.compile(
    r"(?P<project>[a-z][a-z0-9-]*[a-z0-9])[:/](?P<dataset>\w+)\.(?P<table>\w[\w-]*)"
)


def table_location(endpoint: Endpoint) -> str:
    """Returns ``PROJECT:DATASET.TABLE`` or ``PROJECT/DATASET.TABLE`` as written in the URI."""
    return endpoint.authority + endpoint.path


class BigQuerySink(Sink):
    """Writes blocks of `Record`s (``record.data`` is the row dict).

    ``expand`` returns the dead-letter dicts of the rows BigQuery did not take (reasons
    ``sink_rejected``, ``sink_unavailable`` and ``row_too_large``; a row too large is first
    made smaller with ``context.shrink`` when set), each in its record's window.

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: a table not named
            ``PROJECT:DATASET.TABLE``, unknown parameters, partition or cluster fields that are
            not suitable fields of the schema, or ``create=if_needed`` without a schema for a
            table that does not exist.
    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(_PARAMS)
        if endpoint.username or endpoint.password:
            raise EndpointError(f"{endpoint}: credentials do not belong in a bigquery:// URI")
        match = TABLE_PATTERN.fullmatch(table_location(endpoint))
        if match is None:
            raise EndpointError(
                f"{endpoint}: name the table as bigquery://PROJECT:DATASET.TABLE (or "
                "PROJECT/DATASET.TABLE): a lower-case project id, then dataset and table names "
                "of letters, digits and underscores"
            )
        self.table = f"{match['project']}.{match['dataset']}.{match['table']}"
        self.emulator = endpoint.params.get("endpoint") or None
        if self.emulator is not None and not self.emulator.startswith(("http://", "https://")):
            raise EndpointError(f"{endpoint}: endpoint must be an http:// or https:// URL")
        self.schema = context.schema
        self.create = endpoint.params.get("create", "if_needed")
        if self.create not in _CREATE_MODES:
            raise EndpointError(f"{endpoint}: create must be one of {list(_CREATE_MODES)}")
        self.metadata = keeps_metadata(endpoint)
        if self.create == "if_needed" and self.schema is None:
            self.schema = self._existing_schema(endpoint)
            self._check_metadata_columns(endpoint)
        elif self.metadata:
            self.schema = with_metadata(self.schema, endpoint)
        self.partition_field = endpoint.params.get("partition_field") or self._default_partition()
        if self.partition_field == "none":
            self.partition_field = None
        self.partition_type = endpoint.params.get("partition_type", "DAY").upper()
        if self.partition_type not in _PARTITION_GRAINS:
            raise EndpointError(
                f"{endpoint}: partition_type must be one of {list(_PARTITION_GRAINS)}"
            )
        self.clustering = self._clustering(endpoint)
        self._check_layout(endpoint)
        self.batch_size = endpoint.positive("batch_size", int, 500)
        if self.batch_size > MAX_BATCH_SIZE:
            raise EndpointError(f"{endpoint}: batch_size must be at most {MAX_BATCH_SIZE}")
        self.retry = RetryPolicy.from_endpoint(endpoint)
        self._write_options(endpoint)

    def _write_options(self, endpoint: Endpoint) -> None:
        """Reads ``method``, ``mode``, ``schema_update`` and ``storage_endpoint``."""
        self.method = endpoint.params.get("method", STORAGE_WRITE)
        if self.method not in METHODS:
            raise EndpointError(f"{endpoint}: method must be one of {list(METHODS)}")
        self.mode = endpoint.params.get("mode", AT_LEAST_ONCE)
        if self.mode not in MODES:
            raise EndpointError(f"{endpoint}: mode must be one of {list(MODES)}")
        self.schema_update = endpoint.params.get("schema_update", "none")
        if self.schema_update not in _SCHEMA_UPDATES:
            raise EndpointError(f"{endpoint}: schema_update must be one of {list(_SCHEMA_UPDATES)}")
        if self.method == INSERT_ALL and (
            self.mode == EXACTLY_ONCE or self.schema_update != "none"
        ):
            raise EndpointError(
                f"{endpoint}: mode=exactly_once and schema_update=add_fields need "
                f"method={STORAGE_WRITE} (the default); insert_all writes at least once"
            )
        if self.method == INSERT_ALL:
            self.runner_kind = f"method={INSERT_ALL}"
        elif self.mode == EXACTLY_ONCE:
            self.runner_kind = f"mode={EXACTLY_ONCE}"
        self.storage_endpoint = endpoint.params.get("storage_endpoint") or os.environ.get(
            STORAGE_EMULATOR_ENV
        )
        if self.method == STORAGE_WRITE and self._on_emulator and not self.storage_endpoint:
            raise EndpointError(
                f"{endpoint}: an emulator's Storage Write API is reached over gRPC: add "
                f"storage_endpoint=HOST:PORT or set {STORAGE_EMULATOR_ENV} (python -m pipelines "
                f"services env prints it), or use method={INSERT_ALL}"
            )

    def _existing_schema(self, endpoint: Endpoint) -> Schema:
        """Returns the schema of the existing table, for records that come without one.

        Raises:
            EndpointError: the table does not exist (or cannot be read): the message says to
                pass ``--schema``.
        """
        advice = (
            "pass --schema (a BigQuery or JSON Schema file) so that the sink can create it, "
            "or create the table first"
        )
        try:
            client = make_client(self.table.split(".", 1)[0], self.emulator)
            schema = table_schema(client, self.table, timeout=SCHEMA_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure to read it gets the same advice
            raise EndpointError(
                f"{endpoint}: the records have no schema and the table's cannot be read "
                f"({type(exc).__name__}: {exc}); {advice}"
            ) from None
        if schema is None:
            raise EndpointError(
                f"{endpoint}: table {self.table} does not exist and the records have no "
                f"schema to create it from: {advice}"
            )
        return schema

    def _check_metadata_columns(self, endpoint: Endpoint) -> None:
        """With ``metadata=true``, checks that the existing table has the metadata columns."""
        assert self.schema is not None
        missing = [name for name in METADATA_SCHEMA.names if name not in self.schema]
        if self.metadata and missing:
            raise EndpointError(
                f"{endpoint}: table {self.table} lacks the metadata columns {missing}: add them "
                "(terraform/schemas/source_metadata.json lists them), or pass --schema so "
                "that the sink creates the table with them"
            )

    def _default_partition(self) -> str | None:
        """Returns the event-time field when the sink creates the table and may partition by it."""
        name = self.context.event_time_field
        if self.create == "never" or self.schema is None or name is None:
            return None
        spec = self.schema.get(name)
        if spec is None or spec.type not in _PARTITION_TYPES or spec.mode == "REPEATED":
            return None
        return name

    @staticmethod
    def _clustering(endpoint: Endpoint) -> tuple[str, ...]:
        if "cluster" not in endpoint.params:
            return ()
        names = tuple(name.strip() for name in endpoint.params["cluster"].split(","))
        if not all(names):
            raise EndpointError(f"{endpoint}: cluster must be comma-separated field names")
        if len(names) > MAX_CLUSTER_FIELDS:
            raise EndpointError(f"{endpoint}: at most {MAX_CLUSTER_FIELDS} cluster fields")
        return names

    def _check_layout(self, endpoint: Endpoint) -> None:
        """Checks that partition and cluster fields are fields the table can be laid out by."""
        if not self.partition_field and not self.clustering:
            return
        if self.create == "never" or self.schema is None:
            raise EndpointError(
                f"{endpoint}: partition_field and cluster apply only to a table the sink "
                "creates (create=if_needed, with a schema)"
            )
        if self.partition_field and self.partition_field != INGESTION_TIME:
            spec = self.schema.get(self.partition_field)
            if spec is None or spec.type not in _PARTITION_TYPES or spec.mode == "REPEATED":
                raise EndpointError(
                    f"{endpoint}: partition_field {self.partition_field!r} must be a TIMESTAMP "
                    f"or DATE field of the schema, {INGESTION_TIME} (by arrival) or none; its "
                    f"fields: {list(self.schema.names)}"
                )
        for name in self.clustering:
            spec = self.schema.get(name)
            if spec is None or spec.type in _UNCLUSTERABLE_TYPES or spec.mode == "REPEATED":
                raise EndpointError(
                    f"{endpoint}: cluster field {name!r} must be a non-repeated field of the "
                    f"schema that is not FLOAT, RECORD or JSON; its fields: "
                    f"{list(self.schema.names)}"
                )

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        project = self.table.split(".", 1)[0]
        target = InsertTarget(
            table=self.table,
            project=project,
            endpoint=self.emulator,
            schema=self.schema,
            create=self.create,
            partition_field=self.partition_field,
            clustering=self.clustering,
            batch_size=self.batch_size,
            retry=self.retry,
            pipeline=self.context.pipeline,
            counter=self.context.counter,
            shrink=self.context.shrink,
            partition_type=self.partition_type,
            storage_endpoint=self.storage_endpoint,
            exactly_once=self.mode == EXACTLY_ONCE,
            add_fields=self.schema_update == "add_fields",
        )
        if self.metadata:
            blocks = blocks | "Metadata" >> AddMetadata(attributes_as_text=True)
        if self.method == INSERT_ALL or self._emulator_cannot_append():
            return blocks | "Insert" >> beam.ParDo(InsertRowsFn(target))
        return blocks | "StorageWrite" >> beam.ParDo(StorageWriteFn(target))

    @property
    def _on_emulator(self) -> bool:
        return bool(self.emulator or os.environ.get(EMULATOR_ENV))

    def _emulator_cannot_append(self) -> bool:
        """Whether the emulator's Storage Write would fail on this table: it has a RECORD.

        bqemulator 1.4 fails every append to a table with a RECORD (STRUCT) column ("Attempted
        to convert a STRUCT with no fields"); such tables get insertAll there, and a warning.
        """
        if not self._on_emulator:
            return False
        schema = self.schema
        if schema is None:  # create=never: the table's own schema
            client = make_client(self.table.split(".", 1)[0], self.emulator)
            schema = table_schema(client, self.table, timeout=SCHEMA_TIMEOUT)
        if schema is None or not any(field.type == "RECORD" for field in schema.fields):
            return False
        _LOG.warning(
            "%s: the BigQuery emulator cannot append rows with RECORD columns through the "
            "Storage Write API; this sink uses insertAll on it",
            self.table,
        )
        return True
