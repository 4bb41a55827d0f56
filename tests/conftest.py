"""Shared pytest fixtures: the real local servers, state resets and unique names.

Each server fixture is session-scoped: it starts its server (``pipelines.devtools.services.up``)
unless it is already running, yields its :class:`pipelines.devtools.services.specs.ServiceSpec`
(``.endpoint``, ``.host``, ``.port``, ``.env_var``), and at the end of the session stops the server
only if the fixture started it, so servers started by hand
(``python -m pipelines.devtools services up``) stay up.

A server whose program is not installed skips the tests that need it, unless ``CI`` is set or
``PIPELINES_REQUIRE_SERVICES=1``, in which case those tests fail with what to install. A server
that is installed but does not start always fails the tests.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from pipelines.devtools import services
from pipelines.devtools.services import probes, programs, specs
from pipelines.devtools.services.specs import ServiceSpec


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used by the suite."""
    config.addinivalue_line(
        "markers",
        "integration: talks to the real local servers (python -m pipelines.devtools services up)",
    )


@contextlib.contextmanager
def _serving(name: str) -> Iterator[ServiceSpec]:
    available, message = programs.is_available(name)
    if not available:
        reason = f"{name} server not installed: {message}"
        if specs.services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    started_here = not services.is_running(name)
    try:
        services.up([name])
    except specs.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield specs.SPECS[name]
    finally:
        if started_here:
            services.down([name])


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[ServiceSpec]:
    """The Pub/Sub emulator; ``PUBSUB_EMULATOR_HOST`` is set for the session."""
    with _serving("pubsub") as spec:
        previous = os.environ.get(spec.env_var)
        os.environ[spec.env_var] = spec.endpoint
        try:
            yield spec
        finally:
            if previous is None:
                os.environ.pop(spec.env_var, None)
            else:
                os.environ[spec.env_var] = previous


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[ServiceSpec]:
    """The Kafka broker (noida-db); ``.endpoint`` is the bootstrap servers string."""
    with _serving("kafka") as spec:
        yield spec


@pytest.fixture(scope="session")
def kinesis_server() -> Iterator[ServiceSpec]:
    """The Kinesis API (moto server); ``.endpoint`` is the boto3 ``endpoint_url``."""
    with _serving("kinesis") as spec:
        yield spec


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[ServiceSpec]:
    """The BigQuery emulator (project ``local-project``); ``.endpoint`` is its REST URL.

    ``BIGQUERY_STORAGE_EMULATOR_HOST`` (its Storage Write API) is set for the session.
    """
    with _serving("bigquery") as spec:
        with mock.patch.dict(os.environ, specs.EXTRA_ENV["bigquery"]):
            yield spec


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServiceSpec]:
    """Redis; ``.endpoint`` is a ``redis://`` URL."""
    with _serving("redis") as spec:
        yield spec


@pytest.fixture
def redis_clean(redis_server: ServiceSpec) -> ServiceSpec:
    """Redis with every key deleted before the test."""
    probes.reset_redis()
    return redis_server


@pytest.fixture
def redis_db(redis_server: ServiceSpec, unique_name: str) -> Iterator[Any]:
    """A redis-py client (text replies); the keys under the test's ``unique_name`` prefix are
    deleted afterwards."""
    import redis

    client = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)
    yield client
    for name in client.scan_iter(f"{unique_name}:*"):
        client.delete(name)
    client.close()


@pytest.fixture
def kinesis_clean(kinesis_server: ServiceSpec) -> ServiceSpec:
    """The Kinesis server with every stream deleted before the test."""
    probes.reset_kinesis()
    return kinesis_server


@pytest.fixture
def unique_name() -> str:
    """A short unique lowercase name, valid for topics, subscriptions, datasets and streams."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pubsub_topic(pubsub_emulator: ServiceSpec, unique_name: str) -> Iterator[tuple[str, str]]:
    """A new topic with one subscription on the emulator: ``(topic path, subscription path)``."""
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    project = specs.BIGQUERY_PROJECT
    topic = f"projects/{project}/topics/{unique_name}"
    subscription = f"projects/{project}/subscriptions/{unique_name}"
    publisher, subscriber = PublisherClient(), SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    yield topic, subscription
    subscriber.delete_subscription(subscription=subscription)
    publisher.delete_topic(topic=topic)
    subscriber.close()


@pytest.fixture(scope="module")
def live_direct_runner() -> Iterator[None]:
    """The streaming DirectRunner with the suite's live driver and per-bundle counters.

    For the tests of a module that run streaming pipelines themselves (`TestStream`, a live
    read) rather than through `pipelines.framework.run.run_pipeline`; Beam is as it was after them.
    """
    from transforms.io.live import live_direct_runner as enabled

    with enabled():
        yield
