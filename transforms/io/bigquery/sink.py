"""``bigquery://`` sink: streaming inserts into a table created from the pipeline's schema.

URI::

    bigquery://PROJECT:DATASET.TABLE?endpoint=http://127.0.0.1:9050&partition_field=ts
        &cluster=a,b&batch_size=500&create=if_needed&attempts=forever

``bigquery://PROJECT/DATASET.TABLE`` names the same table. Parameters:

* ``endpoint``: the REST URL of a BigQuery emulator; without it ``BIGQUERY_EMULATOR_HOST`` or,
  when that is unset, the real BigQuery API with Application Default Credentials.
* ``create``: ``if_needed`` (default) creates the dataset and table from the schema unless they
  exist; ``never`` requires the table to exist. Without a schema (a pipeline run without
  ``--schema``), ``if_needed`` reads the schema of the existing table when the sink is built,
  and refuses to build when the table does not exist.
* ``partition_field``: a ``TIMESTAMP`` or ``DATE`` field of the schema; the created table is
  partitioned by day on it.
* ``cluster``: up to four comma-separated fields of the schema to cluster the created table by.
* ``batch_size``: the most rows per insert request (default 500). A request is also cut before
  it would pass 9 MB of JSON (BigQuery refuses requests over 10 MB); a single row that alone
  would pass it is dead-lettered with reason ``row_too_large``, its payload truncated (a sink
  of dead letters cuts such a row's payload instead, `transforms.io.base.SinkContext.shrink`).
* ``attempts``: ``forever`` (default) sends a request that failed as a whole with a transient
  error (5xx, 429, connection lost) again, with exponential backoff and jitter, until BigQuery
  is back, holding the stream; a number N gives up after N sends (see `transforms.io.retry`).

Rows BigQuery rejects (a wrong type, say) come out as dead-letter records with reason
``sink_rejected`` and BigQuery's error text; with ``attempts=N``, a batch whose request kept
failing transiently comes out with reason ``sink_unavailable``. Each row is sent with an insert
id derived from where its record came from, so a retried bundle does not insert a row twice on
BigQuery (the emulator does not de-duplicate).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext
from transforms.io.batching import (
    SINK_UNAVAILABLE,
    BatchingFn,
    Pending,
    dead_letter,
)
from transforms.io.bigquery.client import (
    bounded_retry,
    ensure_table,
    is_transient,
    make_client,
    table_schema,
)
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.retry import RetryPolicy
from transforms.message import Record
from transforms.schema import Schema

__all__ = [
    "MAX_REQUEST_BYTES",
    "ROW_TOO_LARGE",
    "SINK_UNAVAILABLE",
    "TABLE_PATTERN",
    "BigQuerySink",
    "InsertRowsFn",
    "InsertTarget",
    "insert_id",
    "table_location",
    "to_insert_row",
    "to_json_row",
]

REQUEST_TIMEOUT = 60.0
MAX_BATCH_SIZE = 50_000  # BigQuery's limit of rows per insertAll request
# BigQuery refuses insertAll requests over 10 MB: requests are cut below, with room for HTTP.
MAX_REQUEST_BYTES = 9_000_000
ROW_TOO_LARGE = "row_too_large"
_ROW_OVERHEAD = 40  # '{"json": , "insertId": ""}, ' around each row and its id
MAX_CLUSTER_FIELDS = 4
SCHEMA_TIMEOUT = 10.0  # the most seconds reading an existing table's schema may take
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1

_PARAMS = frozenset({"endpoint", "create", "partition_field", "cluster", "batch_size", "attempts"})
_CREATE_MODES = ("if_needed", "never")
_PARTITION_TYPES = frozenset({"TIMESTAMP", "DATE"})
_UNCLUSTERABLE_TYPES = frozenset({"FLOAT", "RECORD", "JSON"})
TABLE_PATTERN = re.compile(
    r"(?P<project>[a-z][a-z0-9-]*[a-z0-9])[:/](?P<dataset>\w+)\.(?P<table>\w[\w-]*)"
)


def to_json_row(value: Any) -> Any:
    """Returns ``value`` with every ``bytes`` inside it, at any depth, as a base64 string.

    ``{"payload_bytes": b"hi", "tags": [b"x"]}`` becomes ``{"payload_bytes": "aGk=",
    "tags": ["eA=="]}``, the form BigQuery's JSON API expects for ``BYTES``; tuples become lists.
    """
    return _json_value(value, False)


def to_insert_row(value: Any) -> Any:
    """Returns `to_json_row` of a row, or raises `SinkRejected` if insertAll cannot take it.

    Refused: a float that is not finite (NaN, infinity), an integer outside 64 bits, text that
    is not UTF-8, a key that is not text, and any value that is not JSON (a set, an object).
    """
    return _json_value(value, True)


def _json_value(value: Any, strict: bool) -> Any:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        if strict and kind is str and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SinkRejected(f"text {value[:32]!r}... is not UTF-8") from None
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        if strict and not all(type(key) is str for key in value):
            raise SinkRejected("a field name is not text")
        return {key: _json_value(item, strict) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item, strict) for item in value]
    if strict:
        if isinstance(value, int) and not _MIN_INT64 <= value <= _MAX_INT64:
            raise SinkRejected(
                f"an integer of {value.bit_length()} bits is outside INT64 (64-bit signed)"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SinkRejected(f"{value} is not a number a JSON row can carry")
        if not isinstance(value, (int, float)):
            raise SinkRejected(f"a value of type {kind.__name__} is not JSON")
    return value


def insert_id(record: Record, row: dict[str, Any]) -> str:
    """Returns the insert id of a record: the same for the same record in every retry.

    Args:
        record: the record; when it has an origin message, the message's coordinates (Pub/Sub
            message id, Kafka topic/partition/offset, file path/line...) identify it, which
            assumes one record per message.
        row: the record's JSON row, hashed when the record has no origin.

    Returns:
        A 64-character hex digest.
    """
    key = record.origin.origin.to_dict() if record.origin is not None else row
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _row_error_text(errors: Sequence[dict[str, Any]]) -> str:
    """Joins BigQuery's errors of one row: ``invalid at n: Cannot convert value...``."""
    parts = []
    for error in errors:
        where = f" at {error['location']}" if error.get("location") else ""
        parts.append(f"{error.get('reason', 'invalid')}{where}: {error.get('message', '')}")
    return "; ".join(parts)


@dataclass(frozen=True)
class InsertTarget:
    """Everything the insert DoFn needs to know, picklable."""

    table: str
    project: str
    endpoint: str | None
    schema: Schema | None
    create: str
    partition_field: str | None
    clustering: tuple[str, ...]
    batch_size: int
    retry: RetryPolicy
    pipeline: str
    counter: str
    # How a row too large for a request is made smaller (`SinkContext.shrink`), if it can be.
    shrink: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # When set, each insert request that wrote rows is followed by an output, under this tag,
    # of ``(table, rows written)``: a signal for steps that must run after the rows landed.
    inserted_tag: str | None = None
    # The most bytes of JSON rows (with their insert ids) in one request.
    max_request_bytes: int = MAX_REQUEST_BYTES


class _Row(NamedTuple):
    """What is sent for one record: its JSON row, insert id and their size in the request."""

    row: dict[str, Any]
    row_id: str
    size: int


def _json_row(record: Record) -> _Row:
    row = to_insert_row(record.data)
    row_id = insert_id(record, row)
    # The size as the client sends it (json.dumps, with ASCII escapes).
    return _Row(row, row_id, len(json.dumps(row)) + len(row_id) + _ROW_OVERHEAD)


class InsertRowsFn(BatchingFn[_Row]):
    """Inserts blocks of `Record`s in batches; outputs windowed dead-letter dicts of rejects.

    With ``inserted_tag``, also outputs ``(table, rows written)`` under that tag per request.
    """

    def __init__(self, target: InsertTarget) -> None:
        self._target = target
        self.max_batch_bytes = target.max_request_bytes

    def setup(self) -> None:
        target = self._target
        self._client = make_client(target.project, target.endpoint)
        if target.create == "if_needed":
            assert target.schema is not None  # checked by BigQuerySink
            ensure_table(
                self._client,
                target.table,
                target.schema,
                target.partition_field,
                list(target.clustering),
                timeout=REQUEST_TIMEOUT,
            )
        else:
            self._client.get_table(
                target.table, timeout=REQUEST_TIMEOUT, retry=bounded_retry(REQUEST_TIMEOUT)
            )
        self._written = metrics.counter(target.counter)

    @property
    def batch_size(self) -> int:
        return self._target.batch_size

    def item_bytes(self, pending: Pending[_Row]) -> int:
        return pending.item.size

    def process(
        self,
        block: list[Record],
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue | TaggedOutput]:
        for record in block:
            yield from self._add(record, timestamp, window)

    def _add(self, record: Record, timestamp: Any, window: Any) -> Iterator[Any]:
        """Buffers one record's row, or yields its dead letter when it cannot be sent."""
        try:
            item = _json_row(record)
        except SinkRejected as error:  # a value insertAll cannot take: this record only
            pending = Pending(record, _Row({}, "", 0), timestamp, window)
            yield self._dead_letter(pending, error.reason, type(error).__name__, str(error))
            return
        shrink = self._target.shrink
        if item.size > self._target.max_request_bytes and shrink is not None:
            record = record._replace(data=shrink(record.data))
            item = _json_row(record)
        pending = Pending(record, item, timestamp, window)
        if item.size > self._target.max_request_bytes:
            message = (
                f"{self._target.table}: the row takes {item.size} bytes of JSON, more than "
                f"the {self._target.max_request_bytes} an insert request may hold"
            )
            yield self._dead_letter(pending, ROW_TOO_LARGE, "RowTooLarge", message)
            return
        yield from self.add(pending)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def _insert(self, batch: list[Pending[_Row]]) -> Sequence[dict[str, Any]]:
        """Sends one insertAll request, again after transient failures; returns row errors."""

        def insert() -> Sequence[dict[str, Any]]:
            return self._client.insert_rows_json(
                self._target.table,
                [pending.item.row for pending in batch],
                row_ids=[pending.item.row_id for pending in batch],
                skip_invalid_rows=True,
                timeout=REQUEST_TIMEOUT,
                # The retries are the RetryPolicy's.
                retry=None,  # type: ignore[arg-type]
            )

        return self._target.retry.call(insert, is_transient, self._target.table)

    def send(self, batch: list[Pending[_Row]]) -> Iterator[WindowedValue | TaggedOutput]:
        target = self._target
        try:
            results = self._insert(batch)
        except Exception as error:
            if not is_transient(error):
                raise
            message = target.retry.gave_up(target.table, error)
            for pending in batch:
                yield self._dead_letter(pending, SINK_UNAVAILABLE, type(error).__name__, message)
            return
        rejected: dict[int, list[dict[str, Any]]] = {}
        for result in results:
            rejected.setdefault(result["index"], []).extend(result.get("errors", ()))
        self._written.inc(len(batch) - len(rejected))
        for index, errors in sorted(rejected.items()):
            yield self._dead_letter(
                batch[index], SinkRejected.reason, SinkRejected.__name__, _row_error_text(errors)
            )
        if target.inserted_tag is not None and len(rejected) < len(batch):
            last = batch[-1]
            inserted = (target.table, len(batch) - len(rejected))
            yield TaggedOutput(
                target.inserted_tag, WindowedValue(inserted, last.timestamp, (last.window,))
            )

    def _dead_letter(
        self, pending: Pending[_Row], reason: str, error_type: str, message: str
    ) -> WindowedValue:
        return dead_letter(
            pending,
            pipeline=self._target.pipeline,
            reason=reason,
            error_type=error_type,
            message=message,
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
        if self.create == "if_needed" and self.schema is None:
            self.schema = self._existing_schema(endpoint)
        self.partition_field = endpoint.params.get("partition_field") or self._default_partition()
        self.clustering = self._clustering(endpoint)
        self._check_layout(endpoint)
        self.batch_size = endpoint.positive("batch_size", int, 500)
        if self.batch_size > MAX_BATCH_SIZE:
            raise EndpointError(f"{endpoint}: batch_size must be at most {MAX_BATCH_SIZE}")
        self.retry = RetryPolicy.from_endpoint(endpoint)

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
        if self.partition_field:
            spec = self.schema.get(self.partition_field)
            if spec is None or spec.type not in _PARTITION_TYPES or spec.mode == "REPEATED":
                raise EndpointError(
                    f"{endpoint}: partition_field {self.partition_field!r} must be a TIMESTAMP "
                    f"or DATE field of the schema; its fields: {list(self.schema.names)}"
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
        )
        return blocks | "Insert" >> beam.ParDo(InsertRowsFn(target))
