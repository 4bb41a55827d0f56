"""The ``insertAll`` write of the ``bigquery://`` sink (``method=insert_all``), legacy streaming.

Rows go as JSON, each with an insert id derived from where its record came from, so that a
retried request does not insert a row twice on BigQuery (the emulator does not de-duplicate).
Rows BigQuery rejects come out as dead letters with reason ``sink_rejected`` and its error text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.batching import SINK_UNAVAILABLE, BatchingFn, Pending, T, dead_letter
from transforms.io.bigquery.client import bounded_retry, ensure_table, is_transient, make_client
from transforms.io.retry import RetryPolicy
from transforms.message import Record
from transforms.schema import Schema

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_REQUEST_BYTES",
    "REQUEST_TIMEOUT",
    "ROW_TOO_LARGE",
    "InsertRowsFn",
    "InsertTarget",
    "TableWriteFn",
    "insert_id",
    "open_table",
    "to_insert_row",
    "to_json_row",
]

REQUEST_TIMEOUT = 60.0
MAX_BATCH_SIZE = 50_000  # BigQuery's limit of rows per insertAll request
# BigQuery refuses insertAll requests over 10 MB: requests are cut below, with room for HTTP.
MAX_REQUEST_BYTES = 9_000_000
ROW_TOO_LARGE = "row_too_large"
_ROW_OVERHEAD = 40  # '{"json": , "insertId": ""}, ' around each row and its id
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1


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
    """Everything a BigQuery write DoFn (insertAll or Storage Write) needs to know, picklable."""

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
    # The partitioning granularity: DAY, HOUR, MONTH or YEAR.
    partition_type: str = "DAY"
    # Storage Write only: the emulator's gRPC HOST:PORT, exactly-once (committed streams with
    # offsets) rather than the default stream, and new fields added as NULLABLE columns.
    storage_endpoint: str | None = None
    exactly_once: bool = False
    add_fields: bool = False


def open_table(client: Any, target: Any) -> Any:
    """Creates the target's table (``create=if_needed``) or checks that it exists.

    Args:
        client: a BigQuery client, from `transforms.io.bigquery.client.make_client`.
        target: an `InsertTarget` or a Storage Write target (``table``, ``schema``, ``create``,
            ``partition_field``, ``partition_type``, ``clustering``).

    Returns:
        The ``google.cloud.bigquery.Table`` (its schema is the table's current one).
    """
    if target.create == "if_needed":
        assert target.schema is not None  # checked by BigQuerySink
        ensure_table(
            client,
            target.table,
            target.schema,
            target.partition_field,
            list(target.clustering),
            timeout=REQUEST_TIMEOUT,
            partition_type=target.partition_type,
        )
    return client.get_table(
        target.table, timeout=REQUEST_TIMEOUT, retry=bounded_retry(REQUEST_TIMEOUT)
    )


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


class TableWriteFn(BatchingFn[T]):
    """What both BigQuery write methods share: the target, the loop over a block, dead letters.

    A subclass buffers each record through ``_add`` and sends batches in ``send``.
    """

    def __init__(self, target: InsertTarget) -> None:
        self._target = target

    @property
    def batch_size(self) -> int:
        return self._target.batch_size

    def process(
        self,
        block: list[Record],
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
    ) -> Iterator[Any]:
        for record in block:
            yield from self._add(record, timestamp, window)

    def _add(self, record: Record, timestamp: Any, window: Any) -> Iterator[Any]:
        """Buffers one record's row, or yields its dead letter when it cannot be sent."""
        raise NotImplementedError

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def _gave_up(self, batch: list[Pending[T]], error: Exception) -> Iterator[WindowedValue]:
        """Dead-letters a batch whose transient error outlasted the retry policy."""
        message = self._target.retry.gave_up(self._target.table, error)
        for pending in batch:
            yield self._dead_letter(pending, SINK_UNAVAILABLE, type(error).__name__, message)

    def _dead_letter(
        self, pending: Pending[T], reason: str, error_type: str, message: str
    ) -> WindowedValue:
        return dead_letter(
            pending,
            pipeline=self._target.pipeline,
            reason=reason,
            error_type=error_type,
            message=message,
        )


class InsertRowsFn(TableWriteFn[_Row]):
    """Inserts blocks of `Record`s in batches; outputs windowed dead-letter dicts of rejects.

    With ``inserted_tag``, also outputs ``(table, rows written)`` under that tag per request.
    """

    def __init__(self, target: InsertTarget) -> None:
        super().__init__(target)
        self.max_batch_bytes = target.max_request_bytes

    def setup(self) -> None:
        target = self._target
        self._client = make_client(target.project, target.endpoint)
        open_table(self._client, target)
        self._written = metrics.counter(target.counter)

    def item_bytes(self, pending: Pending[_Row]) -> int:
        return pending.item.size

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
            yield from self._gave_up(batch, error)
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
