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

Before a Python read is added to a graph that runs here (the DirectRunner), one ``ListShards``
call (a few seconds at most) checks that the stream exists: a wrong name or region fails with an
`EndpointError` before anything runs (`KinesisSource.check`); on Dataflow and Flink the
graph builds without asking.

A bounded read lists the shards to read when the pipeline runs, and reads each of them, as one
element per shard so that the runner can spread them over workers, up to the records that had
arrived when the read started (``ApproximateArrivalTimestamp`` at or before the start, by the clock
of the worker that listed the shards), or until the shard is caught up (empty,
``MillisBehindLatest`` 0), ``max_records`` or ``max_seconds``. Kinesis has no call that returns a
shard's latest sequence number, so this is how "the records present at the start" is bounded.
Resharding: a shard that closes (``NextShardIterator`` is ``None``) or is caught up continues, in
the same element, with the child shards it owns (found with ``ListShards`` at that moment), so
shards created while the read runs are read too, each after its parent. A child of a merge is owned
by its first parent that the listing still shows; its other parent may be read in parallel by
another element (a bounded read promises every record once, not an order across elements, which a
PCollection does not have anyway).

A live read (``live=true``) on the DirectRunner runs on its streaming engine through
`transforms.io.live.DirectLiveRead`: one `KinesisLiveReader` polls every open shard, starts a
child only when all of its parents are finished, and holds the watermark at the minimum over
shards of the last arrival time read, an idle (caught up) shard following the wall clock. Live
Python reads run only on the DirectRunner; use ``impl=java`` on Dataflow and Flink.

With ``impl=java`` the records carry only ``stream`` in their origin (Beam's Java read yields
the data alone), ``max_records`` is a total (Beam's ``max_num_records``), and the keys of
boto3's default chain are put into the pipeline graph, as Beam's API requires: temporary
(session) credentials are refused because they would expire while the job runs.

Sink: see `transforms.io.kinesis.write`.
"""

from __future__ import annotations

import functools

import apache_beam as beam

from transforms.blocks import Batch
from transforms.event_time import parse_timestamp
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kinesis.client import StreamTarget, check_stream
from transforms.io.kinesis.read import (
    JavaReadFactory,
    KinesisLiveReader,
    ListShards,
    ReadSettings,
    ReadShard,
    beam_java_read,
    java_message,
)
from transforms.io.live import BUNDLE_RUNNER, DirectLiveRead
from transforms.io.runners import check_runner

__all__ = ["KinesisSource"]

ITERATORS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
IMPLS = ("python", "java")
_SOURCE_PARAMS = frozenset(
    {"region", "endpoint", "iterator", "at", "max_records", "max_seconds", "live", "impl"}
)


class KinesisSource(Source):
    """Reads `Message`s from every shard of a Kinesis stream (see this module).

    Args:
        endpoint: a ``kinesis://STREAM`` URI with the parameters of this module.
        java_read: builds the read for ``impl=java``; `beam_java_read` by default (tests pass
            their own, so the graph builds without Java).

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: a bad stream name,
            region, endpoint, iterator, ``at``, limit or ``impl``; ``LATEST`` without ``live``;
            ``impl=java`` that could never end by itself without ``live``; and when applied to
            a DirectRunner pipeline, a stream that does not exist (`check_readable`).
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

    def check(self) -> None:
        """Checks that the stream exists (`Source.check_readable`).

        `transforms.io.kinesis.client.check_stream` makes one call, for a few seconds at most,
        so that a wrong stream name fails before anything runs instead of reading like a quiet
        stream.

        Raises:
            EndpointError: the stream does not exist or cannot be listed.
        """
        check_stream(self.settings.target)

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
                | "Messages" >> beam.Map(java_message, stream)
            )
        if self.live:
            if runner != BUNDLE_RUNNER:
                raise EndpointError(
                    f"{self.endpoint}: a live Python read runs on the DirectRunner's streaming "
                    f"engine ({BUNDLE_RUNNER}, which the command line picks), not {runner}: "
                    "use impl=java on Dataflow or Flink, or drop live=true for a bounded read"
                )
            self.check_readable(pbegin.pipeline.runner)
            return pbegin | "Live" >> DirectLiveRead(
                functools.partial(KinesisLiveReader, self.settings)
            )
        self.check_readable(pbegin.pipeline.runner)
        return (
            pbegin
            | "Start" >> beam.Create([None])
            | "List shards" >> beam.ParDo(ListShards(self.settings.target))
            | "Spread shards" >> beam.Reshuffle()
            | "Read shards" >> beam.ParDo(ReadShard(self.settings))
        )
