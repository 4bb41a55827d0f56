"""Reading the shards of a stream: bounded reads, the live reader, and Beam's Java read.

See `transforms.io.kinesis.endpoints` for the URI and how reads work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import boto3
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from botocore.exceptions import ClientError

from transforms.event_time import format_timestamp
from transforms.io.endpoint import EndpointError
from transforms.io.kinesis.client import (
    Shard,
    StreamTarget,
    list_shards,
    make_client,
    owned_children,
    root_shards,
)
from transforms.message import Message, Origin

__all__ = [
    "JavaReadFactory",
    "KinesisLiveReader",
    "ReadSettings",
    "beam_java_read",
    "read_lineage",
    "to_message",
]

GET_RECORDS_LIMIT = 10_000
IDLE_WAIT_SECONDS = 0.2


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
        children = owned_children(list_shards(client, settings.target.stream), current)
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
            first = root_shards(shards)
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
        self._waiting += [(child, lineage) for child in owned_children(shards, shard_id)]
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


class ListShards(beam.DoFn):
    """Impulse -> ``(shard_id, started)`` for each shard a bounded read starts from.

    Runs when the pipeline runs: ``started`` (epoch seconds) bounds what the read returns.
    """

    def __init__(self, target: StreamTarget) -> None:
        self._target = target

    def process(self, unused: Any) -> Iterator[tuple[str, float]]:
        started = time.time()
        client = make_client(self._target)
        for shard_id in root_shards(list_shards(client, self._target.stream)):
            yield shard_id, started


class ReadShard(beam.DoFn):
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


def java_message(data: bytes, stream: str) -> Message:
    return Message(bytes(data), {}, Origin("kinesis", stream=stream))
