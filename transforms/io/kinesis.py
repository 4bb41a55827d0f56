"""``kinesis://`` endpoints: Amazon Kinesis Data Streams in and out, on boto3.

Source: ``kinesis://STREAM?region=R&endpoint=URL&iterator=TRIM_HORIZON&max_records=N``
reads every shard of the stream with the suite's own Python reader. Each record becomes::

    Message(
        payload=b'{"user_id": "u1"}',                 # the record's Data, unchanged
        attributes={"partition_key": "u1"},
        origin=Origin("kinesis", stream="clicks", shard="shardId-000000000001",
                      sequence="49590338271490256608559692538361571095921575989136588818",
                      publish_time="2026-11-25T10:00:00.250Z",   # ApproximateArrivalTimestamp
                      key="u1"),                       # the partition key
    )

stamped with its arrival time. Parameters:

    region: the AWS region; default: the one boto3 finds (``AWS_REGION``, profile...).
    endpoint: another endpoint URL (a local moto server, a VPC endpoint). With a loopback
        endpoint and no AWS credentials found, dummy ones are used (local servers accept any).
        Otherwise credentials come from boto3's default chain; none are ever printed.
    iterator: where each shard is read from: ``TRIM_HORIZON`` (default, the oldest record
        kept), ``LATEST`` (only records that arrive after the read starts; live reads only) or
        ``AT_TIMESTAMP`` with ``at=ISO-8601``.
    max_records: stop each shard (with its children) after this many records.
    max_seconds: stop reading after this many seconds.
    live: ``true`` reads endlessly (see below); default: a bounded read.
    impl: ``python`` (default) or ``java``: Beam's cross-language ``ReadDataFromKinesis``, for
        Dataflow and Flink only (it downloads a Java expansion service when the graph is built).

A bounded read lists the shards when the pipeline runs (never when the graph is built), and
reads each of them, as one element per shard so that the runner can spread them over workers,
up to the records that had arrived when the read started (``ApproximateArrivalTimestamp`` at
or before the start, by the clock of the worker that listed the shards), or until the shard is
caught up (empty, ``MillisBehindLatest`` 0), ``max_records`` or ``max_seconds``. Kinesis has no
call that returns a shard's latest sequence number, so this is how "the records present at the
start" is bounded. Resharding: a shard that closes (``NextShardIterator`` is ``None``) or is
caught up continues, in the same element, with the child shards it owns (found with
``ListShards`` at that moment), so shards created while the read runs are read too, each after
its parent. A child of a merge is owned by its first parent that the listing still shows; its
other parent may be read in parallel by another element (a bounded read promises every record
once, not an order across elements, which a PCollection does not have anyway).

A live read (``live=true``) on the DirectRunner runs on its streaming engine through
`transforms.io.live.DirectLiveRead`: one `KinesisLiveReader` polls every open shard, starts a
child only when all of its parents are finished, and holds the watermark at the minimum over
shards of the last arrival time read, an idle (caught up) shard following the wall clock. Live
Python reads run only on the DirectRunner; use ``impl=java`` on Dataflow and Flink.

With ``impl=java`` the records carry only ``stream`` in their origin (Beam's Java read yields
the data alone), ``max_records`` is a total (Beam's ``max_num_records``), and the keys of
boto3's default chain are put into the pipeline graph, as Beam's API requires: temporary
(session) credentials are refused because they would expire while the job runs.

Sink: ``kinesis://STREAM?region=R&endpoint=URL&partition_key=FIELD&attempts=N&batch_size=500``
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

import functools
import hashlib
import ipaddress
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import apache_beam as beam
import boto3
import botocore.config
import msgspec
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
from botocore.exceptions import BotoCoreError, ClientError

from transforms.blocks import Batch
from transforms.errors import SinkRejected
from transforms.event_time import format_timestamp, parse_timestamp
from transforms.io.base import Sink, SinkContext, Source, message_payload
from transforms.io.batching import (
    SINK_UNAVAILABLE,
    BatchingFn,
    Pending,
    dead_letter,
)
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.live import BUNDLE_RUNNER, DirectLiveRead
from transforms.io.retry import RetryPolicy
from transforms.io.runners import check_runner
from transforms.message import Message, Origin, Record
from transforms.metrics import NAMESPACE

__all__ = [
    "JavaReadFactory",
    "KinesisLiveReader",
    "KinesisSink",
    "KinesisSource",
    "ReadSettings",
    "Shard",
    "StreamTarget",
    "beam_java_read",
    "list_shards",
    "make_client",
    "read_lineage",
    "to_message",
]

ITERATORS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
IMPLS = ("python", "java")
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_KEY_CHARS = 256
GET_RECORDS_LIMIT = 10_000
IDLE_WAIT_SECONDS = 0.2
DEFAULT_TIMEOUT = 30.0
_STREAM = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SOURCE_PARAMS = frozenset(
    {"region", "endpoint", "iterator", "at", "max_records", "max_seconds", "live", "impl"}
)
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


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StreamTarget:
    """Which stream, where: everything a worker needs to reach it (it holds no credentials).

    Attributes:
        stream: the stream name, case kept.
        region: the AWS region.
        endpoint_url: another endpoint, or ``None`` for AWS's own.
        where: the endpoint URI, for messages.
        timeout: connect and read timeout of each call, in seconds.
    """

    stream: str
    region: str
    endpoint_url: str | None
    where: str
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> StreamTarget:
        """Reads the stream, region and endpoint of a ``kinesis://`` URI; raises `EndpointError`."""
        stream = endpoint.authority
        if endpoint.username is not None or endpoint.path not in ("", "/"):
            raise EndpointError(f"{endpoint}: expected kinesis://STREAM?region=R")
        if not _STREAM.fullmatch(stream):
            raise EndpointError(
                f"{endpoint}: {stream!r} is not a stream name: 1-128 letters, digits, _ . -"
            )
        region = endpoint.params.get("region") or boto3.session.Session().region_name
        if not region:
            raise EndpointError(f"{endpoint}: give region=R (no AWS region is configured)")
        endpoint_url = endpoint.params.get("endpoint") or None
        if endpoint_url is not None and urlsplit(endpoint_url).scheme not in ("http", "https"):
            raise EndpointError(f"{endpoint}: endpoint must be an http:// or https:// URL")
        return cls(stream, region, endpoint_url, str(endpoint), timeout)


def make_client(target: StreamTarget, retries: int = 10) -> Any:
    """Returns a boto3 Kinesis client for the target.

    Args:
        target: the stream.
        retries: the most calls botocore makes for one request (throttling, 5xx).

    Credentials come from boto3's default chain; with a loopback endpoint and no credentials
    found, dummy ones are used, since local servers accept any.
    """
    session = boto3.session.Session()
    config = botocore.config.Config(
        connect_timeout=target.timeout,
        read_timeout=target.timeout,
        retries={"mode": "standard", "total_max_attempts": retries},
    )
    dummy: dict[str, str] = {}
    local = target.endpoint_url is not None and _is_loopback(target.endpoint_url)
    if local and session.get_credentials() is None:
        dummy = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return session.client(
        "kinesis",
        region_name=target.region,
        endpoint_url=target.endpoint_url,
        config=config,
        **dummy,
    )


class Shard(NamedTuple):
    """A shard as ``ListShards`` shows it.

    Attributes:
        shard_id: e.g. ``shardId-000000000003``.
        parents: its parent and adjacent parent (a merge), those that are set.
        closed: whether it has an ending sequence number (it was split or merged).
    """

    shard_id: str
    parents: tuple[str, ...]
    closed: bool


def list_shards(client: Any, stream: str) -> list[Shard]:
    """Returns every shard of the stream that is still kept, open or closed, in listing order."""
    shards: list[Shard] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        response = client.list_shards(**request)
        for shard in response["Shards"]:
            parents = tuple(
                shard[name] for name in ("ParentShardId", "AdjacentParentShardId") if name in shard
            )
            closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            shards.append(Shard(shard["ShardId"], parents, closed))
        token = response.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


def _owner(shard: Shard, known: set[str]) -> str | None:
    """Returns the parent that reads ``shard`` after itself: its first parent still listed."""
    return next((parent for parent in shard.parents if parent in known), None)


def _roots(shards: list[Shard]) -> list[str]:
    known = {shard.shard_id for shard in shards}
    return [shard.shard_id for shard in shards if _owner(shard, known) is None]


def _owned_children(shards: list[Shard], parent: str) -> list[Shard]:
    known = {shard.shard_id for shard in shards}
    return [shard for shard in shards if _owner(shard, known) == parent]


@dataclass(frozen=True)
class ReadSettings:
    """A validated read of a stream.

    Attributes:
        target: the stream.
        iterator: ``TRIM_HORIZON``, ``LATEST`` or ``AT_TIMESTAMP``.
        at: the start of an ``AT_TIMESTAMP`` read, epoch seconds.
        max_records: the most records per shard (with its children), or ``None``.
        max_seconds: the longest the read goes on, or ``None``.
    """

    target: StreamTarget
    iterator: str = "TRIM_HORIZON"
    at: float | None = None
    max_records: int | None = None
    max_seconds: float | None = None

    @property
    def child_iterator(self) -> str:
        """How the children of a shard read to its end are read: from their start or ``at``."""
        return "AT_TIMESTAMP" if self.iterator == "AT_TIMESTAMP" else "TRIM_HORIZON"


class _Cursor:
    """Reads one shard in order, renewing an expired iterator after its last sequence number.

    After each `fetch`: ``closed`` when the shard has ended (no next iterator), ``caught_up``
    when the call returned nothing and the shard has nothing newer.
    """

    def __init__(self, client: Any, settings: ReadSettings, shard_id: str, kind: str) -> None:
        self.client = client
        self.settings = settings
        self.shard_id = shard_id
        self.kind = kind
        self.last_sequence: str | None = None
        self.closed = False
        self.caught_up = False
        self._iterator: str | None = None

    def _new_iterator(self) -> str:
        request: dict[str, Any] = {
            "StreamName": self.settings.target.stream,
            "ShardId": self.shard_id,
            "ShardIteratorType": self.kind,
        }
        if self.last_sequence is not None:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["StartingSequenceNumber"] = self.last_sequence
        elif self.kind == "AT_TIMESTAMP":
            request["Timestamp"] = self.settings.at
        return str(self.client.get_shard_iterator(**request)["ShardIterator"])

    def fetch(self, limit: int) -> list[dict[str, Any]]:
        """Returns the next records of the shard (at most ``limit``), oldest first."""
        if self._iterator is None:
            self._iterator = self._new_iterator()
        try:
            response = self.client.get_records(ShardIterator=self._iterator, Limit=limit)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            self._iterator = self._new_iterator()
            response = self.client.get_records(ShardIterator=self._iterator, Limit=limit)
        records: list[dict[str, Any]] = response["Records"]
        if records:
            self.last_sequence = records[-1]["SequenceNumber"]
        self._iterator = response.get("NextShardIterator")
        self.closed = self._iterator is None
        self.caught_up = not records and response.get("MillisBehindLatest", 0) == 0
        return records


def to_message(stream: str, shard_id: str, record: dict[str, Any]) -> TimestampedValue:
    """Turns one ``GetRecords`` record into a `Message` stamped with its arrival time.

    Returns:
        ``TimestampedValue(Message(payload=Data, attributes={"partition_key": key},
        origin=Origin("kinesis", stream=..., shard=..., sequence=..., publish_time=<arrival
        ISO-8601>, key=key)), arrival)``.
    """
    arrival = record["ApproximateArrivalTimestamp"].timestamp()
    key = record["PartitionKey"]
    origin = Origin(
        "kinesis",
        stream=stream,
        shard=shard_id,
        sequence=record["SequenceNumber"],
        publish_time=format_timestamp(arrival),
        key=key,
    )
    return TimestampedValue(Message(bytes(record["Data"]), {"partition_key": key}, origin), arrival)


def read_lineage(
    client: Any,
    settings: ReadSettings,
    shard_id: str,
    started: float,
    limit: int = GET_RECORDS_LIMIT,
) -> Iterator[TimestampedValue]:
    """Reads a shard up to the bound of a bounded read, then the children it owns, in order.

    Args:
        client: a Kinesis client.
        settings: the read.
        shard_id: the shard to start with.
        started: when the read started (epoch seconds): records that arrived later are left.
        limit: the most records per ``GetRecords`` call.

    Yields:
        The records as `to_message` makes them, parents before their children.
    """
    deadline = None if settings.max_seconds is None else started + settings.max_seconds
    remaining = settings.max_records
    queue = deque([(shard_id, settings.iterator)])
    while queue:
        current, kind = queue.popleft()
        cursor = _Cursor(client, settings, current, kind)
        while not (cursor.closed or cursor.caught_up):
            size = limit if remaining is None else min(limit, remaining)
            for record in cursor.fetch(size):
                message = to_message(settings.target.stream, current, record)
                if float(message.timestamp) > started:
                    return  # later records, and the children's, arrived after the start too
                yield message
                if remaining is not None:
                    remaining -= 1
            if remaining == 0 or (deadline is not None and time.time() >= deadline):
                return
        children = _owned_children(list_shards(client, settings.target.stream), current)
        queue.extend((child.shard_id, settings.child_iterator) for child in children)


class KinesisLiveReader:
    """A `transforms.io.live.LiveReader` of every shard of a stream, for the DirectRunner.

    Polls each shard it reads in turn; a shard that closes is replaced by the children it owns,
    each started once all of its parents are finished. The watermark is the minimum over the
    shards being read of the last arrival time read (a caught-up shard counts as the wall
    clock); it never goes back. ``done`` once ``max_seconds`` have passed, or when every shard
    has ended or reached ``max_records``.

    Args:
        settings: the read.
    """

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._began: float | None = None
        self._cursors: dict[str, _Cursor] = {}
        self._lineage: dict[str, str] = {}  # shard -> the shard its lineage started from
        self._counts: dict[str, int] = {}  # lineage -> records read
        self._finished: set[str] = set()
        self._waiting: list[tuple[Shard, str]] = []  # (child, lineage) until parents finish
        self._arrival: dict[str, float] = {}  # shard -> latest arrival time read
        self._watermark = float(MIN_TIMESTAMP)

    def _start(self) -> None:
        self._client = make_client(self._settings.target)
        self._began = time.time()
        shards = list_shards(self._client, self._settings.target.stream)
        if self._settings.iterator == "LATEST":
            first = [shard.shard_id for shard in shards if not shard.closed]
        else:
            first = _roots(shards)
        for shard_id in first:
            self._open(shard_id, shard_id, self._settings.iterator)

    def _open(self, shard_id: str, lineage: str, kind: str) -> None:
        self._cursors[shard_id] = _Cursor(self._client, self._settings, shard_id, kind)
        self._lineage[shard_id] = lineage

    def _close(self, shard_id: str) -> None:
        """The shard ended: queue the children it owns and start those that may start."""
        del self._cursors[shard_id]
        self._finished.add(shard_id)
        lineage = self._lineage[shard_id]
        shards = list_shards(self._client, self._settings.target.stream)
        self._waiting += [(child, lineage) for child in _owned_children(shards, shard_id)]
        self._release()

    def _release(self) -> None:
        pending = set(self._cursors) | {child.shard_id for child, _ in self._waiting}
        waiting, self._waiting = self._waiting, []
        for child, lineage in waiting:
            if any(parent in pending for parent in child.parents):
                self._waiting.append((child, lineage))
            else:
                self._open(child.shard_id, lineage, self._settings.child_iterator)

    def _stop_lineage(self, lineage: str) -> None:
        """The lineage reached ``max_records``: nothing of it is read any more."""
        for shard_id in [s for s in self._cursors if self._lineage[s] == lineage]:
            del self._cursors[shard_id]
            self._finished.add(shard_id)
        self._waiting = [(child, owner) for child, owner in self._waiting if owner != lineage]
        self._release()

    def read(self, limit: int) -> list[TimestampedValue]:
        """Returns up to ``limit`` records from the shards in turn; waits briefly if none."""
        if self._began is None:
            self._start()
        cap = self._settings.max_records
        out: list[TimestampedValue] = []
        for shard_id, cursor in list(self._cursors.items()):
            lineage = self._lineage[shard_id]
            room = min(limit - len(out), GET_RECORDS_LIMIT)
            if cap is not None:
                room = min(room, cap - self._counts.get(lineage, 0))
            if room <= 0:
                break
            batch = [to_message(self._settings.target.stream, shard_id, record)
                     for record in cursor.fetch(room)]  # fmt: skip
            if batch:
                latest = max(float(message.timestamp) for message in batch)
                self._arrival[shard_id] = max(self._arrival.get(shard_id, latest), latest)
                self._counts[lineage] = self._counts.get(lineage, 0) + len(batch)
                out += batch
            if cap is not None and self._counts.get(lineage, 0) >= cap:
                self._stop_lineage(lineage)
            elif cursor.closed:
                self._close(shard_id)
        self._advance_watermark()
        if not out and not self.done:
            time.sleep(IDLE_WAIT_SECONDS)
        return out

    def _advance_watermark(self) -> None:
        if self._waiting:
            return  # a child not yet read may hold anything after its parents' ends
        now = time.time()
        marks = [
            now if cursor.caught_up else self._arrival.get(shard_id, self._watermark)
            for shard_id, cursor in self._cursors.items()
        ]
        self._watermark = max(self._watermark, min(marks, default=now))

    @property
    def watermark(self) -> float:
        """No record read later arrived (approximately) before this, in epoch seconds."""
        return self._watermark

    @property
    def done(self) -> bool:
        """Whether ``max_seconds`` passed, or every shard ended or reached ``max_records``."""
        if self._began is None:
            return False
        limit = self._settings.max_seconds
        if limit is not None and time.time() - self._began >= limit:
            return True
        return not self._cursors and not self._waiting


class _ListShards(beam.DoFn):
    """Impulse -> ``(shard_id, started)`` for each shard a bounded read starts from.

    Runs when the pipeline runs: ``started`` (epoch seconds) bounds what the read returns.
    """

    def __init__(self, target: StreamTarget) -> None:
        self._target = target

    def process(self, unused: Any) -> Iterator[tuple[str, float]]:
        started = time.time()
        client = make_client(self._target)
        for shard_id in _roots(list_shards(client, self._target.stream)):
            yield shard_id, started


class _ReadShard(beam.DoFn):
    """``(shard_id, started)`` -> the shard's records and its children's, as `read_lineage`."""

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._client = make_client(self._settings.target)

    def process(self, element: tuple[str, float]) -> Iterator[TimestampedValue]:
        shard_id, started = element
        yield from read_lineage(self._client, self._settings, shard_id, started)


JavaReadFactory = Callable[[ReadSettings], beam.PTransform]
"""Builds the Java read of a stream: a PTransform from the pipeline's start to data bytes."""


def beam_java_read(settings: ReadSettings) -> beam.PTransform:
    """Returns Beam's cross-language ``ReadDataFromKinesis`` for the read (the default factory).

    Its output elements are the records' data bytes. Beam's API takes an access key and secret,
    which are read from boto3's default chain here and go into the pipeline graph.

    Raises:
        EndpointError: no credentials are found, or they are temporary (a session token).
    """
    from apache_beam.io.kinesis import InitialPositionInStream, ReadDataFromKinesis

    where = settings.target.where
    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise EndpointError(f"{where}: impl=java needs AWS credentials and none were found")
    frozen = credentials.get_frozen_credentials()
    if frozen.token:
        raise EndpointError(
            f"{where}: impl=java takes only long-lived keys (Beam's Java read has no session "
            "token, and temporary keys would expire while the job runs); use impl=python"
        )
    positions = {
        "TRIM_HORIZON": InitialPositionInStream.TRIM_HORIZON,
        "LATEST": InitialPositionInStream.LATEST,
        "AT_TIMESTAMP": InitialPositionInStream.AT_TIMESTAMP,
    }
    return ReadDataFromKinesis(
        stream_name=settings.target.stream,
        aws_access_key=frozen.access_key,
        aws_secret_key=frozen.secret_key,
        region=settings.target.region,
        service_endpoint=settings.target.endpoint_url,
        max_num_records=settings.max_records,
        max_read_time=None if settings.max_seconds is None else int(settings.max_seconds * 1000),
        initial_position_in_stream=positions[settings.iterator],
        initial_timestamp_in_stream=None if settings.at is None else int(settings.at * 1000),
    )


def _java_message(data: bytes, stream: str) -> Message:
    return Message(bytes(data), {}, Origin("kinesis", stream=stream))


class KinesisSource(Source):
    """Reads `Message`s from every shard of a Kinesis stream (see this module).

    Args:
        endpoint: a ``kinesis://STREAM`` URI with the parameters of this module.
        java_read: builds the read for ``impl=java``; `beam_java_read` by default (tests pass
            their own, so the graph builds without Java).

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: a bad stream name,
            region, endpoint, iterator, ``at``, limit or ``impl``; ``LATEST`` without ``live``;
            ``impl=java`` that could never end by itself without ``live``.
    """

    def __init__(self, endpoint: Endpoint, java_read: JavaReadFactory = beam_java_read) -> None:
        super().__init__(endpoint)
        endpoint.check_params(_SOURCE_PARAMS)
        iterator = endpoint.params.get("iterator", "TRIM_HORIZON").upper()
        if iterator not in ITERATORS:
            raise EndpointError(f"{endpoint}: iterator must be one of {list(ITERATORS)}")
        if (iterator == "AT_TIMESTAMP") != ("at" in endpoint.params):
            raise EndpointError(f"{endpoint}: give at=ISO-8601 with iterator=AT_TIMESTAMP only")
        self.impl = endpoint.params.get("impl", "python")
        if self.impl not in IMPLS:
            raise EndpointError(f"{endpoint}: impl must be one of {list(IMPLS)}")
        self.live: bool = endpoint.flag("live", False)
        self.settings = ReadSettings(
            target=StreamTarget.from_endpoint(endpoint),
            iterator=iterator,
            at=endpoint.param("at", parse_timestamp, None),
            max_records=endpoint.positive("max_records", int, None),
            max_seconds=endpoint.positive("max_seconds", float, None),
        )
        capped = self.settings.max_records is not None or self.settings.max_seconds is not None
        if iterator == "LATEST" and not self.live:
            raise EndpointError(
                f"{endpoint}: iterator=LATEST reads only records that arrive after the read "
                "starts, which a bounded read leaves out: add live=true"
            )
        if self.impl == "java" and not (self.live or capped):
            raise EndpointError(
                f"{endpoint}: Beam's Java read cannot stop at the records present at the "
                "start: add live=true, or max_records / max_seconds"
            )
        self._java_read = java_read
        if self.impl == "java":
            self.bounded = self.finite = capped
            self.runner_kind = "impl=java"
        else:
            self.bounded = not self.live
            self.finite = self.bounded or capped
            self.live_on_direct = self.live
            self.runner_kind = "live=true" if self.live else ""

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Reads the stream; elements are `Block`s of `Message`s (see `_read`)."""
        return self._read(pbegin) | "Blocks" >> Batch()

    def _read(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Reads the stream; elements are `Message`s stamped with their arrival time."""
        runner = type(pbegin.pipeline.runner).__name__
        if self.impl == "java":
            check_runner(self, runner)  # before Beam asks a Java expansion service
            stream = self.settings.target.stream
            return (
                pbegin
                | "Read (Java)" >> self._java_read(self.settings)
                | "Messages" >> beam.Map(_java_message, stream)
            )
        if self.live:
            if runner != BUNDLE_RUNNER:
                raise EndpointError(
                    f"{self.endpoint}: a live Python read runs on the DirectRunner's streaming "
                    f"engine ({BUNDLE_RUNNER}, which the command line picks), not {runner}: "
                    "use impl=java on Dataflow or Flink, or drop live=true for a bounded read"
                )
            return pbegin | "Live" >> DirectLiveRead(
                functools.partial(KinesisLiveReader, self.settings)
            )
        return (
            pbegin
            | "Start" >> beam.Create([None])
            | "List shards" >> beam.ParDo(_ListShards(self.settings.target))
            | "Spread shards" >> beam.Reshuffle()
            | "Read shards" >> beam.ParDo(_ReadShard(self.settings))
        )


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
        self._written = Metrics.counter(NAMESPACE, self._writer.counter)

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
