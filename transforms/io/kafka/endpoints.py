"""``kafka://`` endpoints: a topic read as `Message`s, and records written to a topic.

URI::

    kafka://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/TOPIC?group=G&start=committed
        &max_records=N&max_seconds=S&live=true&impl=python&timeout=30
        &security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=U&password_env=VAR

Connection (source and sink, see `transforms.io.kafka.client`): the bootstrap servers are the
URI's host list; ``security_protocol`` (``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``,
``SASL_SSL``), ``sasl_mechanism`` (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``), the user
name (``sasl_username`` or the URI's) and the password (the URI's, ``password_env=VAR`` or
``password_secret=projects/P/secrets/S[/versions/V]``, read on the worker). A password is never
shown: messages use the redacted URI.

Source parameters (see `transforms.io.kafka.read` for how reads work):

* ``group``: the consumer group; its committed offsets are where a read starts, and a bounded
  read commits where it ended once the pipeline wrote everything (`KafkaSource.commit_after`).
  Without a group nothing is committed.
* ``start``: ``committed`` (default with a group: the group's offsets, the earliest offset where
  it has none), ``earliest`` (default without a group) or ``latest`` (live reads only).
* ``max_records``: read at most this many records in all; ``max_seconds``: stop reading after
  this long.
* ``live``: ``true`` streams the topic live on the DirectRunner's streaming engine until
  ``max_records`` or ``max_seconds`` (endless without); default ``false``: a bounded read of the
  records there when the run starts.
* ``timeout``: seconds to wait for the brokers (and for a partition that sends nothing) before a
  bounded read fails; default 30.
* ``impl``: ``python`` (default, the suite's reader on confluent-kafka) or ``java`` (Beam's
  cross-language ``ReadFromKafka``, for Dataflow and Flink only; its Java expansion service is
  needed where the graph is built).

Checked before anything runs: a Python read added to a DirectRunner pipeline asks the brokers
once (a few seconds at most, librdkafka's log lines silenced) whether they answer and the topic
exists, and fails with an `EndpointError` saying what to change (`KafkaSource.check`).

Runners: the bounded Python read runs wherever Python runs (on Dataflow and Flink it is an
ordinary DoFn per partition); ``live=true`` runs only on the DirectRunner (use ``impl=java`` on
Dataflow and Flink); ``impl=java`` runs only on Dataflow, Flink and the PortableRunner.

Sink parameters (see `transforms.io.kafka.write`): ``key=<field>`` (the record key),
``attributes=f1,f2`` (fields sent as headers besides the origin's attributes), ``timeout``
(seconds a bundle waits for its delivery reports, default 30) and ``max_message_bytes`` (the
producer's ``message.max.bytes``, default 1000000). The topic must exist: the sink never creates
it.
"""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

from transforms.blocks import Batch
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kafka.bounded import PROGRESS, CommitOffsets, bounded_read, leaves
from transforms.io.kafka.client import CONNECTION_PARAMS, KafkaConnection
from transforms.io.kafka.live import live_reader
from transforms.io.kafka.read import STARTS, ReadSettings, check_topic, java_row_to_message
from transforms.io.kafka.write import KafkaSink
from transforms.io.live import DirectLiveRead
from transforms.io.runners import check_runner

__all__ = [
    "IMPLS",
    "JavaRead",
    "KafkaSink",
    "KafkaSource",
    "java_consumer_config",
    "read_from_kafka",
]

IMPLS = ("python", "java")
DEFAULT_TIMEOUT = 30.0
_PARAMS = CONNECTION_PARAMS | {
    "group",
    "start",
    "max_records",
    "max_seconds",
    "live",
    "timeout",
    "impl",
}
_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}

JavaRead = Callable[..., beam.PTransform]
"""Makes the Java read: called with ``consumer_config``, ``topic``, ``max_records``,
``max_seconds`` and ``commit``; its output is rows of ``ReadFromKafka(with_metadata=True)``."""


def read_from_kafka(
    *,
    consumer_config: dict[str, str],
    topic: str,
    max_records: int | None,
    max_seconds: float | None,
    commit: bool,
) -> beam.PTransform:
    """Returns Beam's cross-language ``ReadFromKafka`` (the default `JavaRead`).

    Building the graph with it starts Beam's Java expansion service (Java and the expansion
    jar needed), so tests pass `KafkaSource` a fake instead.
    """
    from apache_beam.io.kafka import ReadFromKafka

    return ReadFromKafka(
        consumer_config=consumer_config,
        topics=[topic],
        max_num_records=max_records,
        max_read_time=None if max_seconds is None else int(max_seconds),
        commit_offset_in_finalize=commit,
        timestamp_policy="CreateTime",
        with_metadata=True,
    )


def java_consumer_config(settings: ReadSettings) -> dict[str, str]:
    """Returns the Java consumer settings of a read.

    A SASL password is resolved here, where the graph is built, and travels in the job graph:
    Beam's Java read takes its credentials only from its consumer settings.
    """
    connection = settings.connection
    config = {
        "bootstrap.servers": connection.bootstrap,
        "security.protocol": connection.security_protocol,
        "auto.offset.reset": "latest" if settings.start == "latest" else "earliest",
    }
    if settings.group is not None:
        config["group.id"] = settings.group
    if connection.sasl_mechanism is not None:
        password = (connection.resolve_password() or "").replace("\\", "\\\\")
        user = (connection.username or "").replace("\\", "\\\\")
        quote = '\\"'
        config["sasl.mechanism"] = connection.sasl_mechanism
        config["sasl.jaas.config"] = (
            f"{_JAAS_MODULES[connection.sasl_mechanism]} required "
            f'username="{user.replace(chr(34), quote)}" '
            f'password="{password.replace(chr(34), quote)}";'
        )
    return config


class KafkaSource(Source):
    """Reads a Kafka topic as `Message`s (see `transforms.io.kafka.read.to_message`).

    Args:
        endpoint: ``kafka://HOST:PORT[,...]/TOPIC`` with the parameters of this module.
        java_read: makes the Java read of ``impl=java`` (a seam: tests give a fake).

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: no topic or brokers,
            unknown or bad parameters, ``start=committed`` without ``group``, ``start=latest``
            on a bounded read, ``live`` with ``impl=java``, incomplete SASL settings; and when
            applied to a DirectRunner pipeline, brokers that do not answer or a missing topic
            (`check_readable`).

    """

    def __init__(self, endpoint: Endpoint, java_read: JavaRead = read_from_kafka) -> None:
        super().__init__(endpoint)
        endpoint.check_params(_PARAMS)
        connection = KafkaConnection.from_endpoint(endpoint)
        group = endpoint.params.get("group")
        if group == "":
            raise EndpointError(f"{endpoint}: group is empty; name a group or leave it out")
        start = endpoint.params.get("start", "committed" if group else "earliest")
        if start not in STARTS:
            raise EndpointError(f"{endpoint}: start must be one of {list(STARTS)}")
        if start == "committed" and group is None:
            raise EndpointError(
                f"{endpoint}: start=committed reads a group's offsets: add group=G "
                "(or use start=earliest)"
            )
        self.impl = endpoint.params.get("impl", "python")
        if self.impl not in IMPLS:
            raise EndpointError(f"{endpoint}: impl must be one of {list(IMPLS)}")
        self.live = endpoint.flag("live", False)
        if self.live and self.impl == "java":
            raise EndpointError(
                f"{endpoint}: live applies to impl=python; impl=java is unbounded unless "
                "max_records or max_seconds is given"
            )
        self.settings = ReadSettings(
            connection=connection,
            group=group,
            start=start,
            max_records=endpoint.positive("max_records", int, None),
            max_seconds=endpoint.positive("max_seconds", float, None),
            timeout=endpoint.positive("timeout", float, DEFAULT_TIMEOUT),
        )
        limited = self.settings.max_records is not None or self.settings.max_seconds is not None
        if start == "latest" and not self.live and self.impl == "python":
            raise EndpointError(
                f"{endpoint}: a bounded read from start=latest reads nothing: add live=true, "
                "or use start=committed or start=earliest"
            )
        self.java_read = java_read
        # The instance's kind decides these (base.Source declares them per class).
        self.bounded = limited if self.impl == "java" else not self.live
        self.finite = self.bounded or limited
        self.live_on_direct = self.live
        if self.impl == "java":
            self.runner_kind = "impl=java"
        elif self.live:
            self.runner_kind = "live=true"
        self._progress: beam.PCollection | None = None

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Reads the topic; elements are `Block`s of `Message`s (see `_read`)."""
        return self._read(pbegin) | "Blocks" >> Batch()

    def _read(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Reads the topic; elements are `Message`s stamped with their record's timestamp."""
        runner = pbegin.pipeline.runner
        if self.impl == "java":
            check_runner(self, runner)  # before Beam asks a Java expansion service
            return self._java(pbegin)
        if self.live:
            if not isinstance(runner, BundleBasedDirectRunner):
                raise EndpointError(
                    f"{self.endpoint}: live=true runs on the DirectRunner's streaming engine "
                    "(BundleBasedDirectRunner, which python -m pipelines selects); on Dataflow "
                    "and Flink use impl=java"
                )
            self.check_readable(runner)
            return pbegin | "Live" >> DirectLiveRead(live_reader(self.settings))
        self.check_readable(runner)
        outputs = bounded_read(pbegin, self.settings)
        self._progress = outputs[PROGRESS]
        return outputs.messages

    def check(self) -> None:
        """Checks that the brokers answer and the topic exists (`Source.check_readable`).

        `transforms.io.kafka.read.check_topic` asks the brokers once, for a few seconds at
        most, so that a broker that is down or a missing topic fails before anything runs.

        Raises:
            EndpointError: the brokers did not answer or the topic cannot be read.
        """
        check_topic(self.settings)

    def _java(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        settings = self.settings
        read = self.java_read(
            consumer_config=java_consumer_config(settings),
            topic=settings.connection.topic,
            max_records=settings.max_records,
            max_seconds=settings.max_seconds,
            commit=settings.group is not None,
        )
        return pbegin | "Read" >> read | "Messages" >> beam.Map(java_row_to_message)

    def commit_after(self, *signals: beam.PCollection) -> beam.PCollection:
        """Commits the offsets the bounded read reached once every ``signals`` is complete.

        Args:
            signals: PCollections whose completion means the records read were written,
                e.g. a sink's dead-letter output; see `transforms.io.kafka.bounded.CommitOffsets`.

        Returns:
            The (empty) output of the commit step.

        Raises:
            EndpointError: the source has no ``group`` or is not a bounded Python read.
            ValueError: the source was not applied yet.

        """
        if self.settings.group is None or self.impl != "python" or self.live:
            raise EndpointError(
                f"{self.endpoint}: only a bounded impl=python read with group=G commits after "
                "its writes"
            )
        if self._progress is None:
            raise ValueError(f"{self.endpoint}: apply the source before commit_after")
        label = f"Commit {self.settings.connection.topic} for {self.settings.group}"
        return self._progress | label >> CommitOffsets(self.settings, signals)

    def after_write(self) -> None:
        """Commits the read's offsets after every other step of the pipeline (with a group).

        A bounded Python read with ``group`` commits, in a last step that waits for every
        branch end of the pipeline (`transforms.io.kafka.bounded.leaves`); other reads add nothing.
        """
        progress = self._progress
        if progress is None or self.settings.group is None:
            return
        self.commit_after(*[end for end in leaves(progress.pipeline) if end is not progress])
