"""The Storage Write API write of the ``bigquery://`` sink (its default ``method``).

Rows are protocol buffers built from the table's current schema (`transforms.io.bigquery.rows`),
sent in batches of at most ``batch_size`` rows and 9 MB (an ``AppendRows`` request may hold
10 MB). Two modes (the URI's ``mode``):

* ``at_least_once`` (default): the table's default stream. A request retried after a transient
  failure whose first send had landed writes its rows twice.
* ``exactly_once``: a committed stream per worker, each request at its offset, so a request sent
  again after an ambiguous failure is refused as already written (a no-op); a record delivered
  again after a worker died is settled by the write log (`transforms.io.bigquery.ledger`).

Transient failures go through the sink's `transforms.io.retry.RetryPolicy`. A row the encoder
or the API refuses is dead-lettered with reason ``sink_rejected`` and the reason given (with
``schema_update=add_fields``: new top-level fields first become NULLABLE columns,
`transforms.io.bigquery.evolve`, and a value its column cannot take is ``schema_mismatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.batching import Pending
from transforms.io.bigquery import evolve
from transforms.io.bigquery.client import make_client
from transforms.io.bigquery.insert_all import (
    ROW_TOO_LARGE,
    TableWriteFn,
    insert_id,
    open_table,
    to_json_row,
)
from transforms.io.bigquery.ledger import Ledger
from transforms.io.bigquery.rows import RowEncoder, UnknownFields, WrongType
from transforms.io.bigquery.write_api import (
    DEFAULT_STREAM,
    AlreadyWritten,
    NotAppended,
    append,
    create_committed_stream,
    is_transient,
    make_write_client,
    stream_parent,
)
from transforms.message import Record
from transforms.schema import Schema

__all__ = ["MAX_APPEND_BYTES", "StorageWriteFn"]

MAX_APPEND_BYTES = 9_000_000
_ROW_OVERHEAD = 8  # the length prefix and tag of a row in ProtoRows


class _Row(NamedTuple):
    """What is sent for one record: its serialized row and insert id."""

    data: bytes
    row_id: str


class StorageWriteFn(TableWriteFn[_Row]):
    """Appends blocks of `Record`s through the Storage Write API; outputs windowed dead letters."""

    max_batch_bytes = MAX_APPEND_BYTES
    # The base's teardown closes the client and finalizes no committed stream: the write log's
    # probes append to it after a restart, and a finalized stream refuses every append.

    def item_bytes(self, pending: Pending[_Row]) -> int:
        return len(pending.item.data) + _ROW_OVERHEAD

    def setup(self) -> None:
        target = self._target
        self._client = make_client(target.project, target.endpoint)
        table = open_table(self._client, target)
        self._encoder = RowEncoder(Schema.from_bigquery([f.to_api_repr() for f in table.schema]))
        self._write = make_write_client(target.storage_endpoint)
        self._parent = stream_parent(target.table)
        self._written = metrics.counter(target.counter)
        self._ledger = (
            Ledger(self._client, self._write, target.table) if target.exactly_once else None
        )
        self._stream: str | None = None
        self._offset = 0

    def _encode(self, record: Record) -> _Row:
        data = to_json_row(record.data)
        try:
            encoded = self._encoder.encode(data)
        except UnknownFields as unknown:
            if not self._target.add_fields:
                raise
            self._encoder = RowEncoder(
                evolve.add_fields(
                    self._client, self._target.table, unknown.values, self._target.schema
                )
            )
            encoded = self._encoder.encode(data)
        return _Row(encoded, insert_id(record, data))

    def _add(self, record: Record, timestamp: Any, window: Any) -> Iterator[WindowedValue]:
        """Buffers one record's row, or yields its dead letter when it cannot be sent."""
        try:
            item = self._encode(record)
            if len(item.data) > MAX_APPEND_BYTES and self._target.shrink is not None:
                record = record._replace(data=self._target.shrink(record.data))
                item = self._encode(record)
        except SinkRejected as error:  # this record only
            reason = error.reason
            if self._target.add_fields and isinstance(error, WrongType):
                reason = evolve.SCHEMA_MISMATCH
            pending = Pending(record, _Row(b"", ""), timestamp, window)
            kind = "SchemaMismatch" if reason == evolve.SCHEMA_MISMATCH else "SinkRejected"
            yield self._dead_letter(pending, reason, kind, str(error))
            return
        pending = Pending(record, item, timestamp, window)
        if len(item.data) > MAX_APPEND_BYTES:
            message = (
                f"{self._target.table}: the row takes {len(item.data)} bytes, more than the "
                f"{MAX_APPEND_BYTES} an append request may hold"
            )
            yield self._dead_letter(pending, ROW_TOO_LARGE, "RowTooLarge", message)
            return
        yield from self.add(pending)

    def send(self, batch: list[Pending[_Row]]) -> Iterator[WindowedValue]:
        try:
            if self._ledger is None:
                refused = self._call(lambda: self._append_default(batch))
            else:
                refused = self._call(lambda: self._append_exactly_once(batch))
        except Exception as error:
            if not is_transient(error):
                raise
            yield from self._gave_up(batch, error)
            return
        self._written.inc(len(batch) - len(refused))
        for index, reason in sorted(refused.items()):
            yield self._dead_letter(
                batch[index], SinkRejected.reason, SinkRejected.__name__, reason
            )

    def _call(self, request: Any) -> Any:
        return self._target.retry.call(request, is_transient, self._target.table)

    def _append_default(self, batch: list[Pending[_Row]]) -> dict[int, str]:
        """Appends to the default stream; returns the rows refused, ``{index: reason}``."""
        stream = f"{self._parent}/streams/{DEFAULT_STREAM}"
        return _append_dropping_refused(
            batch, lambda rows: append(self._write, stream, self._encoder.descriptor, rows)
        )

    def _append_exactly_once(self, batch: list[Pending[_Row]]) -> dict[int, str]:
        """Settles rows the ledger knows, then records and appends the rest at their offsets."""
        assert self._ledger is not None
        known = self._ledger.lookup([pending.item.row_id for pending in batch])
        todo = [
            index
            for index, pending in enumerate(batch)
            if not any(
                self._resolve(pending.item.data, at) for at in known.get(pending.item.row_id, ())
            )
        ]
        refused: dict[int, str] = {}
        while todo:
            if self._stream is None:
                self._stream, self._offset = (
                    create_committed_stream(self._write, self._target.table),
                    0,
                )
            stream, offset = self._stream, self._offset
            self._ledger.record(
                (batch[i].item.row_id, stream, offset + n) for n, i in enumerate(todo)
            )
            try:
                errors = append(
                    self._write,
                    stream,
                    self._encoder.descriptor,
                    [batch[i].item.data for i in todo],
                    offset,
                )
            except AlreadyWritten:  # an earlier send of this very request landed
                errors = []
            if not errors:
                self._offset += len(todo)
                return refused
            # None of the request was written: the others go again at the same offsets, and
            # their new ledger entries, newer than the stale ones, are the ones probed first.
            bad = {todo[index]: reason for index, reason in errors}
            refused.update(bad)
            todo = [i for i in todo if i not in bad]
        return refused

    def _resolve(self, data: bytes, at: tuple[str, int]) -> bool:
        """Tells whether a row the ledger knows is in the table (appending it at its offset)."""
        stream, offset = at
        try:
            append(self._write, stream, self._encoder.descriptor, [data], offset)
        except AlreadyWritten:
            if stream == self._stream:  # an earlier send of this worker's landed
                self._offset = max(self._offset, offset + 1)
            return True
        except NotAppended:
            return False
        if stream == self._stream:
            self._offset += 1
        return True


def _append_dropping_refused(batch: list[Pending[_Row]], send: Any) -> dict[int, str]:
    """Sends the batch's rows; while the API refuses some, sends the others again."""
    todo = list(range(len(batch)))
    refused: dict[int, str] = {}
    while todo:
        errors = send([batch[i].item.data for i in todo])
        if not errors:
            break
        for index, reason in errors:
            refused[todo[index]] = reason
        todo = [i for i in todo if i not in refused]
    return refused
