"""Kafka, Kinesis and Pub/Sub sources check that they can read when the graph is built.

On the DirectRunner (the process that builds the graph reads) each source asks its server once,
for a few seconds at most, when it is applied: a broker that does not answer, a missing topic,
stream or subscription is an `EndpointError` naming the URI and the fix, before anything runs,
and the command line prints it as one ``error:`` line with exit code 2. Against the real local
servers; a broker that does not answer is a closed port or a socket that never replies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from google.cloud.pubsub_v1 import SubscriberClient

from pipelines.devtools.services.specs import ServiceSpec
from transforms.io.base import Source
from transforms.io.endpoint import EndpointError
from transforms.io.kafka.read import CHECK_SECONDS
from transforms.io.kinesis.client import StreamTarget, make_client
from transforms.io.registry import make_source

REGION = "us-east-1"
PROJECT = "local-project"
# The check's own bound, and some room for a loaded machine.
QUICK_S = CHECK_SECONDS + 3.0


def _apply(uri: str) -> float:
    """Builds a one-step graph reading ``uri`` on the DirectRunner; returns the seconds taken."""
    began = time.monotonic()
    source = make_source(uri)
    if source.live_on_direct:
        options = PipelineOptions(streaming=True)
        pipeline = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
    else:
        pipeline = beam.Pipeline()
    _ = pipeline | source
    return time.monotonic() - began


def _fails(uri: str, *fragments: str) -> str:
    """Applies ``uri``; checks that it fails quickly with every fragment in the message."""
    began = time.monotonic()
    with pytest.raises(EndpointError) as caught:
        _apply(uri)
    assert time.monotonic() - began < QUICK_S
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


# ----------------------------------------------------------------- Kafka


def _topic_exists(broker: str, topic: str) -> bool:
    consumer = Consumer(
        {"bootstrap.servers": broker, "group.id": "checks", "allow.auto.create.topics": False}
    )
    try:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        return found is not None and found.error is None
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.parametrize("query", ["", "?group=g&live=true"], ids=["bounded", "live"])
def test_kafka_missing_topic_fails_when_the_graph_is_built_and_is_not_created(
    kafka_broker: ServiceSpec, unique_name: str, query: str
) -> None:
    broker = kafka_broker.endpoint
    _fails(
        f"kafka://{broker}/{unique_name}{query}",
        f"kafka://{broker}/{unique_name}",
        f"no topic '{unique_name}'",
        f"create the topic first: kafka-topics.sh --bootstrap-server {broker} --create "
        f"--topic {unique_name}",
    )
    assert not _topic_exists(broker, unique_name)


@pytest.mark.parametrize("query", ["", "?group=g&live=true"], ids=["bounded", "live"])
def test_kafka_broker_that_refuses_fails_within_seconds_without_librdkafka_noise(
    query: str, capfd: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    _fails(
        f"kafka://127.0.0.1:{port}/orders{query}",
        f"kafka://127.0.0.1:{port}/orders",
        f"no Kafka broker answered within {CHECK_SECONDS:g}s",
        "Connection refused",
        "check the HOST:PORT list",
    )
    captured = capfd.readouterr()
    assert "%3|" not in captured.err + captured.out
    assert "Connection refused" not in captured.err


def test_kafka_broker_that_never_answers_fails_after_the_timeout(silent_port: int) -> None:
    began = time.monotonic()
    uri = f"kafka://127.0.0.1:{silent_port}/orders?timeout=2"
    _fails(uri, "no Kafka broker answered within 2s")
    assert time.monotonic() - began >= 2.0


@pytest.mark.parametrize(
    "uri",
    [
        "kafka://user:s3cr3t-pw@127.0.0.1:{port}/orders?security_protocol=SASL_PLAINTEXT&timeout=1",
        "kafka://127.0.0.1:{port}/orders?security_protocol=SASL_PLAINTEXT&sasl_username=user"
        "&password_env=CHECKS_TEST_PW&timeout=1",
    ],
    ids=["in-uri", "from-env"],
)
def test_kafka_check_never_shows_the_password(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKS_TEST_PW", "s3cr3t-pw")
    message = _fails(uri.format(port=_free_port()), "no Kafka broker answered")
    assert "s3cr3t" not in message


def test_kafka_unresolvable_password_reference_is_an_endpoint_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHECKS_TEST_NO_PW", raising=False)
    _fails(
        f"kafka://127.0.0.1:{_free_port()}/orders?security_protocol=SASL_PLAINTEXT"
        "&sasl_username=user&password_env=CHECKS_TEST_NO_PW",
        "CHECKS_TEST_NO_PW",
    )


@pytest.mark.integration
def test_kafka_existing_topic_passes(kafka_broker: ServiceSpec, unique_name: str) -> None:
    broker = kafka_broker.endpoint
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(unique_name, 1, 1)])[unique_name].result(timeout=30)
    try:
        assert _apply(f"kafka://{broker}/{unique_name}") < QUICK_S
        assert _apply(f"kafka://{broker}/{unique_name}?group=g&live=true") < QUICK_S
    finally:
        admin.delete_topics([unique_name])[unique_name].result(timeout=30)


# ----------------------------------------------------------------- Kinesis


def _kinesis(server: ServiceSpec, stream: str, query: str = "") -> str:
    return f"kinesis://{stream}?region={REGION}&endpoint={server.endpoint}{query}"


@pytest.mark.integration
@pytest.mark.parametrize("query", ["", "&live=true"], ids=["bounded", "live"])
def test_kinesis_missing_stream_fails_when_the_graph_is_built(
    kinesis_server: ServiceSpec, unique_name: str, query: str
) -> None:
    _fails(
        _kinesis(kinesis_server, unique_name, query),
        f"kinesis://{unique_name}?",
        f"no Kinesis stream '{unique_name}' in region {REGION}: check the name",
        f"aws kinesis create-stream --stream-name {unique_name} --shard-count 1",
    )


def test_kinesis_unreachable_endpoint_fails_within_seconds() -> None:
    port = _free_port()
    _fails(
        f"kinesis://clicks?region={REGION}&endpoint=http://127.0.0.1:{port}",
        "could not reach Kinesis",
        "check endpoint=",
    )


@pytest.mark.integration
def test_kinesis_existing_stream_passes(kinesis_server: ServiceSpec, unique_name: str) -> None:
    client = make_client(StreamTarget("x", REGION, kinesis_server.endpoint, "kinesis://x"))
    client.create_stream(StreamName=unique_name, ShardCount=1)
    try:
        assert _apply(_kinesis(kinesis_server, unique_name)) < QUICK_S
        assert _apply(_kinesis(kinesis_server, unique_name, "&live=true")) < QUICK_S
    finally:
        client.delete_stream(StreamName=unique_name)


# ----------------------------------------------------------------- Pub/Sub


@pytest.mark.integration
def test_pubsub_missing_subscription_fails_when_the_graph_is_built(
    pubsub_emulator: ServiceSpec, unique_name: str
) -> None:
    subscription = f"projects/{PROJECT}/subscriptions/{unique_name}"
    _fails(
        f"pubsub://{subscription}",
        f"no subscription {subscription}",
        f"gcloud pubsub subscriptions create {unique_name} --topic=TOPIC --project={PROJECT}",
    )


@pytest.mark.integration
def test_pubsub_emulator_that_is_down_fails_within_seconds(
    pubsub_emulator: ServiceSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{_free_port()}")
    _fails(f"pubsub://projects/{PROJECT}/subscriptions/events", "is the emulator up?")


@pytest.mark.integration
def test_pubsub_existing_subscription_passes(pubsub_topic: tuple[str, str]) -> None:
    _, subscription = pubsub_topic
    assert SubscriberClient().get_subscription(subscription=subscription, timeout=10)
    assert _apply(f"pubsub://{subscription}") < QUICK_S


# ----------------------------------------------------------------- where workers read


@pytest.mark.parametrize(
    ("uri", "runner"),
    [
        ("kafka://127.0.0.1:1/nowhere", "PortableRunner"),
        (f"kinesis://nowhere?region={REGION}&endpoint=http://127.0.0.1:1", "PortableRunner"),
        (f"pubsub://projects/{PROJECT}/subscriptions/nowhere", "DataflowRunner"),
    ],
)
def test_nothing_is_asked_when_the_workers_read(uri: str, runner: str) -> None:
    """On Dataflow, Flink or the PortableRunner the graph builds with no server (CI's dry runs)."""
    source: Source = make_source(uri)
    flags = [f"--runner={runner}", "--streaming" if not source.bounded else "--no_auth"]
    if runner == "DataflowRunner":  # a dry run, as CI's translation: no network, no credentials
        flags += ["--project=p-123456", "--region=europe-west1", "--temp_location=gs://bucket-x/tmp",
                  "--dry_run=True", "--no_auth"]  # fmt: skip
    began = time.monotonic()
    assert isinstance(beam.Pipeline(options=PipelineOptions(flags)) | source, beam.PCollection)
    assert time.monotonic() - began < 1.0


# ----------------------------------------------------------------- the command line


def _run(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "events_to_bigquery", f"--source={source}",
         f"--sink=file://{tmp_path}/out", f"--dead_letter=file://{tmp_path}/dlq",
         "--max_seconds=15"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return result, time.monotonic() - began


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("kafka-down", "no Kafka broker answered"),
        ("kafka-topic", "create the topic first"),
        ("kinesis", "check the name"),
        ("pubsub", "gcloud pubsub subscriptions create"),
    ],
)
def test_the_command_line_prints_one_error_line_and_starts_nothing(
    kind: str,
    fragment: str,
    kafka_broker: ServiceSpec,
    kinesis_server: ServiceSpec,
    pubsub_emulator: ServiceSpec,
    unique_name: str,
    tmp_path: Path,
) -> None:
    sources: dict[str, Any] = {
        "kafka-down": f"kafka://127.0.0.1:{_free_port()}/{unique_name}?group=g&live=true",
        "kafka-topic": f"kafka://{kafka_broker.endpoint}/{unique_name}?group=g",
        "kinesis": _kinesis(kinesis_server, unique_name, "&live=true"),
        "pubsub": f"pubsub://projects/{PROJECT}/subscriptions/{unique_name}",
    }
    result, seconds = _run(tmp_path, sources[kind])

    assert result.returncode == 2, result.stderr
    output = result.stderr + result.stdout
    assert "Traceback" not in output and "%3|" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "CANCELLED" not in output and "DONE" not in output
    assert not [path for path in tmp_path.rglob("*") if path.is_file()], "something ran"
    assert seconds < 60.0  # a Python start with Beam, and at most one bounded check
