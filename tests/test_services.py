"""Integration tests: every local server answers real client calls, and the manager works."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pipelines.devtools import services
from pipelines.devtools.services import probes, processes, specs
from pipelines.devtools.services.specs import ServiceSpec

pytestmark = pytest.mark.integration


def test_pubsub_create_publish_pull(pubsub_emulator: ServiceSpec, unique_name: str) -> None:
    from google.api_core.exceptions import DeadlineExceeded
    from google.cloud.pubsub import PublisherClient, SubscriberClient
    from google.cloud.pubsub_v1.types import ReceivedMessage

    project = "local-project"
    publisher = PublisherClient()
    subscriber = SubscriberClient()
    topic = publisher.topic_path(project, unique_name)
    subscription = subscriber.subscription_path(project, unique_name)
    try:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        publisher.publish(topic, b"hello", origin="test").result(timeout=30)
        received: list[ReceivedMessage] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            try:
                response = subscriber.pull(subscription=subscription, max_messages=1, timeout=5)
            except DeadlineExceeded:
                continue
            received.extend(response.received_messages)
        assert len(received) == 1
        message = received[0].message
        assert message.data == b"hello"
        assert dict(message.attributes) == {"origin": "test"}
        subscriber.acknowledge(subscription=subscription, ack_ids=[received[0].ack_id])
    finally:
        subscriber.close()
        publisher.transport.close()


def test_kafka_produce_consume(kafka_broker: ServiceSpec, unique_name: str) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    admin.create_topics([NewTopic(unique_name, num_partitions=1)])[unique_name].result(timeout=30)

    producer = Producer({"bootstrap.servers": kafka_broker.endpoint})
    producer.produce(unique_name, key=b"k1", value=b"v1", headers={"h": b"x"})
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.endpoint,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([unique_name])
        message = None
        deadline = time.monotonic() + 30
        while message is None and time.monotonic() < deadline:
            polled = consumer.poll(1.0)
            if polled is not None:
                assert polled.error() is None, polled.error()
                message = polled
        assert message is not None
        assert (message.key(), message.value()) == (b"k1", b"v1")
        assert message.headers() == [("h", b"x")]
    finally:
        consumer.close()


def test_kinesis_create_put_get(kinesis_clean: ServiceSpec, unique_name: str) -> None:
    import boto3

    client = boto3.client(
        "kinesis",
        endpoint_url=kinesis_clean.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_stream(StreamName=unique_name, ShardCount=1)
    client.get_waiter("stream_exists").wait(
        StreamName=unique_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    put = client.put_record(StreamName=unique_name, Data=b"payload", PartitionKey="pk")
    iterator = client.get_shard_iterator(
        StreamName=unique_name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = client.get_records(ShardIterator=iterator, Limit=10)["Records"]
    assert [(r["Data"], r["PartitionKey"]) for r in records] == [(b"payload", "pk")]
    assert records[0]["SequenceNumber"] == put["SequenceNumber"]


def test_bigquery_dataset_table_insert_query(
    bigquery_emulator: ServiceSpec, unique_name: str
) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=specs.BIGQUERY_PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_emulator.endpoint),
    )
    dataset = client.create_dataset(unique_name, timeout=30)
    try:
        table = client.create_table(
            bigquery.Table(
                f"{specs.BIGQUERY_PROJECT}.{unique_name}.events",
                schema=[
                    bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
                    bigquery.SchemaField("amount", "INT64"),
                ],
            ),
            timeout=30,
        )
        errors = client.insert_rows_json(
            table, [{"id": "a", "amount": 2}, {"id": "b", "amount": 3}], timeout=30
        )
        assert errors == []
        rows = client.query(f"SELECT id, amount FROM `{unique_name}.events` ORDER BY id").result(
            timeout=60
        )
        assert [(row["id"], row["amount"]) for row in rows] == [("a", 2), ("b", 3)]
    finally:
        client.delete_dataset(dataset, delete_contents=True, timeout=30)
        client.close()


def test_redis_set_get(redis_clean: ServiceSpec) -> None:
    import redis

    client = redis.Redis.from_url(redis_clean.endpoint)
    try:
        assert client.dbsize() == 0
        client.set("key", "value")
        assert client.get("key") == b"value"
    finally:
        client.close()


def test_status_reports_every_server_running(
    pubsub_emulator: ServiceSpec,
    kafka_broker: ServiceSpec,
    kinesis_server: ServiceSpec,
    bigquery_emulator: ServiceSpec,
    redis_server: ServiceSpec,
) -> None:
    report = services.status()
    assert set(report) == set(specs.SPECS)
    for name, state in report.items():
        assert state.startswith("running"), f"{name}: {state}"
        assert probes.is_answering(name)


def test_cli_status_prints_one_line_per_service(redis_server: ServiceSpec) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipelines.devtools.services import main; "
            "sys.exit(main(sys.argv[1:]))",
            "status",
            "redis",
            "kinesis",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("redis: running")
    assert lines[1].startswith("kinesis: ")


def test_endpoints() -> None:
    assert services.endpoints() == {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19093",
        "KINESIS_ENDPOINT_URL": "http://127.0.0.1:5055",
        "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050",
        "BIGQUERY_STORAGE_EMULATOR_HOST": "127.0.0.1:9060",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
    }


def test_unknown_service_is_an_error() -> None:
    with pytest.raises(specs.ServiceError, match="unknown service"):
        services.up(["nosuch"])


def test_redis_down_then_up(redis_server: ServiceSpec) -> None:
    if processes.running_pid("redis") is None:
        pytest.skip("redis was started outside pipelines.devtools.services; not stopping it")
    services.down(["redis"])
    assert services.status(["redis"]) == {"redis": "stopped"}
    assert not probes.is_answering("redis")
    assert not specs.pid_file("redis").exists()

    # A PID file left by a server that died is stale: status ignores it and up replaces it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    specs.pid_file("redis").write_text(f"{dead.pid}\n")
    assert services.status(["redis"]) == {"redis": "stopped"}

    services.up(["redis"])
    pid = processes.running_pid("redis")
    assert pid is not None and pid != dead.pid
    assert services.status(["redis"]) == {"redis": f"running (pid {pid})"}
    assert probes.is_answering("redis")
    services.up(["redis"])  # idempotent: the running server is kept
    assert processes.running_pid("redis") == pid
