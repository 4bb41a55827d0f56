"""Writing records to a Kinesis stream.

URI: ``kinesis://STREAM?region=R&endpoint=URL&partition_key=FIELD&attempts=N&batch_size=500``
(``timeout=30``: seconds to connect and to wait for each answer) writes each record's data as
JSON (bytes as base64) with ``PutRecords``, at most ``batch_size`` (500) records and 5 MB per
call. The partition key is the text of field ``partition_key`` (a record without
it is rejected), else a hash of the record's JSON, so a retried record goes to the same shard.
The records a call did not take (``FailedRecordCount``, per-record ``ErrorCode``) are sent
again with exponential backoff and jitter (`transforms.io.retry`): until they are taken by
default (``attempts=forever``), or up to N calls with ``attempts=N``, after which throttled or
failed ones are dead-lettered as ``sink_unavailable``. Any other error code is dead-lettered as
``sink_rejected`` at once, as is a record over 1 MB. A call that fails as a whole with a
transient error (throttled, 5xx, unreachable) is retried the same way; one that fails for a
lasting reason (missing stream, refused credentials) fails the bundle. Kinesis keeps
duplicates: a replayed bundle writes its records again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.utils.windowed_value import WindowedValue
from botocore.exceptions import BotoCoreError, ClientError

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext, message_payload
from transforms.io.batching import SINK_UNAVAILABLE, BatchingFn, Pending, dead_letter
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kinesis.client import DEFAULT_TIMEOUT, StreamTarget, make_client
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = ["KinesisSink"]

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_KEY_CHARS = 256
_SINK_PARAMS = frozenset(
    {"region", "endpoint", "partition_key", "attempts", "batch_size", "timeout"}
)
# Per-record error codes of PutRecords that a later call may not get.
_TRANSIENT_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"}
)
# Whole-call errors that a later call may not get.
_TRANSIENT_CALL_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "InternalFailure",
     "ServiceUnavailable", "ThrottlingException", "RequestTimeout"}
)  # fmt: skip


def _partition_key_text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=str).decode()


@dataclass(frozen=True)
class _Writer:
    """Everything the put DoFn needs, picklable."""

    target: StreamTarget
    partition_key: str | None
    retry: RetryPolicy
    batch_size: int
    pipeline: str
    counter: str
    raw: bool = False

    def entry(self, record: Record, encoder: msgspec.json.Encoder) -> dict[str, Any]:
        """Returns the ``PutRecords`` entry of a record; raises `SinkRejected` if it cannot be.

        Its data is ``record.data`` as JSON, or the original payload with ``raw``
        (`SinkContext.raw`).
        """
        data = record.data
        body = message_payload(record, self.raw, encoder.encode)
        if self.partition_key is None:
            key = hashlib.sha256(body).hexdigest()[:32]
        else:
            value = data.get(self.partition_key)
            if value is None:
                state = "null" if self.partition_key in data else "missing"
                raise SinkRejected(f"partition key field {self.partition_key!r} is {state}")
            key = _partition_key_text(value)
            if not 1 <= len(key) <= MAX_KEY_CHARS:
                raise SinkRejected(
                    f"partition key {self.partition_key!r} must be 1-{MAX_KEY_CHARS} characters"
                )
        size = len(body) + len(key.encode())
        if size > MAX_RECORD_BYTES:
            raise SinkRejected(f"record of {size} bytes is over Kinesis's 1 MB limit")
        return {"Data": body, "PartitionKey": key}


def _entry_size(pending: Pending[dict[str, Any]]) -> int:
    return len(pending.item["Data"]) + len(pending.item["PartitionKey"].encode())


def _call_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


class _NotTaken(RuntimeError):
    """Records a ``PutRecords`` call did not take for a transient reason (throttled...)."""


def _transient_call(error: BaseException) -> bool:
    """Whether a ``PutRecords`` call may succeed later (throttled, 5xx, unreachable...)."""
    if isinstance(error, _NotTaken):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _call_code(error) in _TRANSIENT_CALL_CODES or status >= 500
    return isinstance(error, BotoCoreError)


class _PutFn(BatchingFn[dict[str, Any]]):
    """Writes blocks of `Record`s with ``PutRecords``; outputs dead letters of failures."""

    max_batch_bytes = MAX_BATCH_BYTES

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def setup(self) -> None:
        # One botocore call per attempt: the retries are the RetryPolicy's.
        self._client = make_client(self._writer.target, retries=1)
        self._encoder = msgspec.json.Encoder(enc_hook=str)
        self._written = metrics.counter(self._writer.counter)

    @property
    def batch_size(self) -> int:
        return self._writer.batch_size

    def item_bytes(self, pending: Pending[dict[str, Any]]) -> int:
        return _entry_size(pending)

    def process(
        self,
        block: list[Record],
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue]:
        for record in block:
            try:
                entry = self._writer.entry(record, self._encoder)
            except (ValueError, TypeError, msgspec.EncodeError) as error:  # SinkRejected too
                rejected = (
                    error
                    if isinstance(error, SinkRejected)
                    else SinkRejected(
                        f"the record cannot be encoded: {type(error).__name__}: {error}"
                    )
                )
                pending: Pending[dict[str, Any]] = Pending(record, {}, timestamp, window)
                yield from self._fail([pending], rejected, rejected=True)
                continue
            yield from self.add(Pending(record, entry, timestamp, window))

    def _put(self, batch: list[Pending[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Sends one ``PutRecords`` call; returns the per-record results, in order."""
        response = self._client.put_records(
            StreamName=self._writer.target.stream, Records=[pending.item for pending in batch]
        )
        results: list[dict[str, Any]] = response["Records"]
        return results

    def send(self, batch: list[Pending[dict[str, Any]]]) -> Iterator[WindowedValue]:
        writer = self._writer
        remaining = batch
        rejected: list[tuple[Pending[dict[str, Any]], SinkRejected]] = []

        def put() -> None:
            """Sends what is left; raises `_NotTaken` when Kinesis took only part of it."""
            nonlocal remaining
            retry, last = [], ""
            for pending, result in zip(remaining, self._put(remaining), strict=True):
                code = result.get("ErrorCode")
                if code is None:
                    self._written.inc()
                elif code in _TRANSIENT_CODES:
                    retry.append(pending)
                    last = f"{code}: {result.get('ErrorMessage', '')}"
                else:
                    failure = SinkRejected(f"{code}: {result.get('ErrorMessage', '')}")
                    rejected.append((pending, failure))
            remaining = retry
            if retry:
                raise _NotTaken(f"{len(retry)} record(s) not taken: {last}")

        try:
            writer.retry.call(put, _transient_call, str(writer.target.stream))
        except (_NotTaken, ClientError, BotoCoreError) as error:
            if not _transient_call(error):
                raise
            message = writer.retry.gave_up(writer.target.stream, error)
            yield from self._fail(remaining, RuntimeError(message), rejected=False)
        for pending, failure in rejected:
            yield from self._fail([pending], failure, rejected=True)

    def _fail(
        self, batch: list[Pending[Any]], error: Exception, rejected: bool
    ) -> Iterator[WindowedValue]:
        writer = self._writer
        message = f"{writer.target.where}: {error}"
        for pending in batch:
            yield dead_letter(
                pending,
                pipeline=writer.pipeline,
                reason=SinkRejected.reason if rejected else SINK_UNAVAILABLE,
                error_type=SinkRejected.__name__ if rejected else "SinkUnavailable",
                message=message,
            )


class KinesisSink(Sink):
    """Writes blocks of `Record`s to a Kinesis stream as JSON.

    ``expand`` returns the dead-letter dicts (see `transforms.dead_letter`) of the records that
    were not written, reasons ``sink_rejected`` and ``sink_unavailable``, each in its record's
    window.

    Args:
        endpoint: a ``kinesis://STREAM`` URI with the sink parameters of this module.
        context: the pipeline writing to the sink.

    Raises:
        EndpointError: from the constructor, for a bad stream name, region, endpoint,
            ``attempts``, ``batch_size`` (1-500) or ``timeout``, an empty ``partition_key``, or
            one that a declared schema does not have.
    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(_SINK_PARAMS)
        partition_key = endpoint.params.get("partition_key")
        if partition_key == "":
            raise EndpointError(f"{endpoint}: partition_key is empty; name a field or leave it out")
        schema = context.schema
        if partition_key is not None and schema is not None:
            if partition_key not in schema:
                raise EndpointError(
                    f"{endpoint}: partition_key {partition_key!r} is not in the records' schema; "
                    f"its fields: {list(schema.names)}"
                )
        batch_size = endpoint.positive("batch_size", int, MAX_BATCH_RECORDS)
        if batch_size > MAX_BATCH_RECORDS:
            raise EndpointError(f"{endpoint}: batch_size is at most {MAX_BATCH_RECORDS}")
        timeout = endpoint.positive("timeout", float, DEFAULT_TIMEOUT)
        self._writer = _Writer(
            target=StreamTarget.from_endpoint(endpoint, timeout),
            partition_key=partition_key,
            retry=RetryPolicy.from_endpoint(endpoint),
            batch_size=batch_size,
            pipeline=context.pipeline,
            counter=context.counter,
            raw=context.raw,
        )

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        """Writes the blocks' records; returns the dead-letter dicts of failures."""
        return blocks | "Put records" >> beam.ParDo(_PutFn(self._writer))
