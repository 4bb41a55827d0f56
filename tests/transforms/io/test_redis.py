"""The redis:// sink against real Redis servers, through Beam pipelines; and secret references."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import run_sink
from transforms.dead_letter_writer import dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.endpoint import EndpointError
from transforms.io.redis.sink import RedisSink
from transforms.io.redis.text import KeyTemplate, to_text
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.secrets import SecretError, check_reference, resolve_secret

PASSWORD = "s3cret"
EVENT_TIME = 1_795_600_800.0  # 2026-11-25T10:00:00Z


def _record(line: int, data: dict[str, Any]) -> Record:
    """A record parsed from line ``line`` of a file, keeping the original bytes."""
    payload = json.dumps(data).encode("utf-8")
    return Record(data, Message(payload, {"k": "v"}, Origin("file", path="/in.jsonl", line=line)))


def _sink(uri: str, **context: Any) -> RedisSink:
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline", **context))
    assert isinstance(sink, RedisSink)
    return sink


@pytest.fixture
def db(redis_clean: ServiceSpec) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_clean.endpoint, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(unique_name: str) -> str:
    return unique_name


# --------------------------------------------------------------------------------------------
# Modes


@pytest.mark.integration
def test_hash_mode_writes_fields_under_the_templated_key_with_a_ttl(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    rows = [
        {"endpoint": "/a", "window_start": "2026-11-25T10:00:00Z", "n": 3, "avg": 2.5},
        {"endpoint": "/b", "window_start": "2026-11-25T10:00:00Z", "n": 1, "avg": None},
        {"endpoint": "/a", "window_start": "2026-11-25T10:01:00Z", "ok": True, "tags": ["x"]},
    ]
    key = f"{prefix}:{{endpoint}}:{{window_start}}"
    sink = _sink(f"{redis_clean.endpoint}?mode=hash&key={key}&ttl=120&batch_size=2")

    counters = run_sink([_record(i, row) for i, row in enumerate(rows, 1)], sink)

    assert counters["written"] == 3
    assert db.hgetall(f"{prefix}:/a:2026-11-25T10:00:00Z") == {
        "endpoint": "/a",
        "window_start": "2026-11-25T10:00:00Z",
        "n": "3",
        "avg": "2.5",
    }
    # None is not stored: the field is absent.
    assert db.hgetall(f"{prefix}:/b:2026-11-25T10:00:00Z") == {
        "endpoint": "/b",
        "window_start": "2026-11-25T10:00:00Z",
        "n": "1",
    }
    third = db.hgetall(f"{prefix}:/a:2026-11-25T10:01:00Z")
    assert third["ok"] == "true" and third["tags"] == '["x"]'
    for name in db.keys(f"{prefix}:*"):
        assert 0 < db.ttl(name) <= 120


@pytest.mark.integration
def test_hash_mode_removes_a_field_that_became_null(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    sink = _sink(f"{redis_clean.endpoint}?key={prefix}:{{id}}")
    run_sink([Record({"id": 1, "a": "x", "b": "y"})], sink)
    run_sink([Record({"id": 1, "a": None, "b": "z"})], sink)
    assert db.hgetall(f"{prefix}:1") == {"id": "1", "b": "z"}
    assert db.ttl(f"{prefix}:1") == -1  # no ttl parameter: the key does not expire


@pytest.mark.integration
def test_string_mode_sets_the_record_as_json_with_a_ttl(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    sink = _sink(f"{redis_clean.endpoint}?mode=string&key={prefix}:user:{{user}}&ttl=30")
    records = [Record({"user": "u1", "amount": 1.5, "z": None}), Record({"user": "u2", "n": 2})]

    counters = run_sink(records, sink)

    assert counters["written"] == 2
    assert json.loads(str(db.get(f"{prefix}:user:u1"))) == {"user": "u1", "amount": 1.5, "z": None}
    assert db.get(f"{prefix}:user:u2") == '{"n":2,"user":"u2"}'  # sorted keys, compact
    assert 0 < db.ttl(f"{prefix}:user:u1") <= 30


@pytest.mark.integration
def test_stream_mode_adds_entries_trimmed_and_expiring(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    sink = _sink(f"{redis_clean.endpoint}?mode=stream&key={prefix}:events&maxlen=1000&ttl=60")
    records = [Record({"i": i, "name": f"n{i}", "gone": None}) for i in range(5)]

    counters = run_sink(records, sink)

    assert counters["written"] == 5
    entries = cast(list[tuple[str, dict[str, str]]], db.xrange(f"{prefix}:events"))
    assert sorted(fields["i"] for _, fields in entries) == ["0", "1", "2", "3", "4"]
    assert all("gone" not in fields for _, fields in entries)
    assert 0 < db.ttl(f"{prefix}:events") <= 60


@pytest.mark.integration
def test_zset_mode_scores_members_and_a_member_template(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    by_json = _sink(f"{redis_clean.endpoint}?mode=zset&key={prefix}:all&score=amount&ttl=60")
    by_user = _sink(
        f"{redis_clean.endpoint}?mode=zset&key={prefix}:top&score=amount&member={{user}}"
    )
    records = [
        Record({"user": "u1", "amount": 5}),
        Record({"user": "u2", "amount": "2.5"}),  # a numeric string is a valid score
        Record({"user": "u3", "amount": -1.25}),
    ]

    assert run_sink(records, by_json)["written"] == 3
    assert run_sink(records, by_user)["written"] == 3

    assert db.zrange(f"{prefix}:all", 0, -1, withscores=True) == [
        ('{"amount":-1.25,"user":"u3"}', -1.25),
        ('{"amount":"2.5","user":"u2"}', 2.5),
        ('{"amount":5,"user":"u1"}', 5.0),
    ]
    assert db.zrange(f"{prefix}:top", 0, -1, withscores=True) == [
        ("u3", -1.25),
        ("u2", 2.5),
        ("u1", 5.0),
    ]
    assert 0 < db.ttl(f"{prefix}:all") <= 60
    assert db.ttl(f"{prefix}:top") == -1


@pytest.mark.integration
def test_publish_mode_publishes_json_on_the_templated_channel(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    subscriber = db.pubsub()
    subscriber.psubscribe(f"{prefix}:*")
    assert subscriber.get_message(timeout=5)["type"] == "psubscribe"
    sink = _sink(f"{redis_clean.endpoint}?mode=publish&key={prefix}:{{region}}")

    counters = run_sink([Record({"region": "eu", "n": 1}), Record({"region": "us", "n": 2})], sink)

    assert counters["written"] == 2
    received: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)
        if message is not None and message["type"] == "pmessage":
            received.append((message["channel"], json.loads(message["data"])))
    subscriber.close()
    assert sorted(received) == [
        (f"{prefix}:eu", {"n": 1, "region": "eu"}),
        (f"{prefix}:us", {"n": 2, "region": "us"}),
    ]


# --------------------------------------------------------------------------------------------
# Idempotence and rejections


@pytest.mark.integration
def test_writing_the_same_records_twice_leaves_the_same_state(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    records = [Record({"id": i, "amount": i * 1.5, "tags": {"b": 1, "a": 2}}) for i in range(4)]
    base = redis_clean.endpoint
    sinks = [
        _sink(f"{base}?mode=hash&key={prefix}:h:{{id}}&ttl=300"),
        _sink(f"{base}?mode=string&key={prefix}:s:{{id}}"),
        _sink(f"{base}?mode=zset&key={prefix}:z&score=amount"),
    ]

    def state() -> dict[str, Any]:
        return {
            "hashes": {i: db.hgetall(f"{prefix}:h:{i}") for i in range(4)},
            "strings": {i: db.get(f"{prefix}:s:{i}") for i in range(4)},
            "zset": db.zrange(f"{prefix}:z", 0, -1, withscores=True),
            "keys": sorted(db.keys(f"{prefix}:*")),
        }

    for sink in sinks:
        run_sink(records, sink)
    first = state()
    for sink in sinks:
        run_sink(list(reversed(records)), sink)  # a retried or re-fired pane, in another order

    assert state() == first
    assert db.zcard(f"{prefix}:z") == 4
    assert len(first["keys"]) == 4 + 4 + 1


@pytest.mark.integration
def test_a_wrongtype_record_is_dead_lettered_with_its_payload_and_the_others_written(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    db.set(f"{prefix}:2", "a string, not a hash")
    records = [_record(i, {"id": i, "v": f"x{i}"}) for i in (1, 2, 3)]
    bad = records[1].origin
    assert bad is not None
    sink = _sink(f"{redis_clean.endpoint}?key={prefix}:{{id}}&ttl=100")

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert len(dead_letters) == 1, dead_letters
        (letter,) = dead_letters
        assert letter["reason"] == "sink_rejected"
        assert letter["step"] == "sink"
        assert letter["error_type"] == "SinkRejected"
        assert "WRONGTYPE" in letter["error_message"]
        assert f"{prefix}:2" in letter["error_message"]
        assert letter["payload_bytes"] == bad.payload
        assert letter["source"] == {"system": "file", "path": "/in.jsonl", "line": 2}
        assert letter["attributes"] == [{"key": "k", "value": "v"}]
        assert letter["event_timestamp"] == "2026-11-25T10:00:00Z"

    counters = run_sink([r._replace(event_time=EVENT_TIME) for r in records], sink, check)

    assert counters["written"] == 2
    assert db.hgetall(f"{prefix}:1") == {"id": "1", "v": "x1"}
    assert db.hgetall(f"{prefix}:3") == {"id": "3", "v": "x3"}
    # The other key is untouched: neither overwritten nor given the sink's TTL.
    assert db.get(f"{prefix}:2") == "a string, not a hash"
    assert db.ttl(f"{prefix}:2") == -1


@pytest.mark.integration
def test_records_lacking_a_template_or_score_field_are_dead_lettered(
    redis_clean: ServiceSpec, db: redis.Redis, prefix: str
) -> None:
    records = [
        _record(1, {"user": "u1", "amount": 1}),
        _record(2, {"amount": 2}),  # no user
        _record(3, {"user": None, "amount": 3}),  # null user
        _record(4, {"user": "u4", "amount": "lots"}),  # not a number
    ]
    sink = _sink(f"{redis_clean.endpoint}?mode=zset&key={prefix}:{{user}}&score=amount")

    def check(dead_letters: list[dict[str, Any]]) -> None:
        by_line = {letter["source"]["line"]: letter for letter in dead_letters}
        assert sorted(by_line) == [2, 3, 4]
        assert all(letter["reason"] == "sink_rejected" for letter in dead_letters)
        assert "field 'user' is missing" in by_line[2]["error_message"]
        assert "field 'user' is null" in by_line[3]["error_message"]
        assert "score field 'amount' is 'lots', not a number" in by_line[4]["error_message"]
        assert by_line[2]["payload_bytes"] == b'{"amount": 2}'

    counters = run_sink(records, sink, check)

    assert counters["written"] == 1
    assert db.keys(f"{prefix}:*") == [f"{prefix}:u1"]


# --------------------------------------------------------------------------------------------
# A private, password-protected Redis that the tests stop and start


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server with a password, started and stopped by the test (by its own Popen)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, decode_responses=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]
            + ["--daemonize", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        with self.client() as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path, redis_server: ServiceSpec) -> Iterator[PrivateRedis]:
    # redis_server: skips (or fails in CI) like the other Redis tests when redis-server is absent.
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _password_free(value: Any) -> None:
    assert PASSWORD not in repr(value), value


@pytest.mark.integration
def test_password_in_the_uri_or_from_the_environment_authenticates(
    private_redis: PrivateRedis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REDIS_PASSWORD", PASSWORD)
    in_uri = f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0?key={prefix}:uri:{{id}}"
    from_env = f"{private_redis.url}?key={prefix}:env:{{id}}&password_env=TEST_REDIS_PASSWORD"
    sinks = [_sink(in_uri), _sink(from_env)]

    for sink in sinks:
        assert run_sink([Record({"id": 1, "v": "a"})], sink)["written"] == 1
        for shown in (str(sink), repr(sink), str(sink.endpoint), repr(sink.endpoint)):
            _password_free(shown)
        _password_free(repr(sink._target))

    with private_redis.client() as client:
        assert client.hgetall(f"{prefix}:uri:1") == {"id": "1", "v": "a"}
        assert client.hgetall(f"{prefix}:env:1") == {"id": "1", "v": "a"}


@pytest.mark.integration
def test_a_wrong_password_fails_the_bundle_without_showing_it(
    private_redis: PrivateRedis, prefix: str
) -> None:
    sink = _sink(f"redis://:wrong-{PASSWORD}@127.0.0.1:{private_redis.port}/0?key={prefix}")
    with pytest.raises(Exception) as failure:
        run_sink([Record({"id": 1})], sink)
    assert "invalid username-password pair" in str(failure.value)
    _password_free(str(failure.value))


@pytest.mark.integration
def test_redis_restarted_mid_run_loses_no_record_and_writes_none_twice(
    private_redis: PrivateRedis, prefix: str
) -> None:
    private_redis.stop()
    restarter = threading.Timer(1.0, private_redis.start)
    sink = _sink(
        f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0?key={prefix}:{{id}}"
        "&attempts=8&batch_size=4&timeout=2"
    )
    records = [Record({"id": i, "v": i * 10}) for i in range(10)]

    restarter.start()
    started = time.monotonic()
    try:
        counters = run_sink(records, sink)
    finally:
        restarter.join()

    assert time.monotonic() - started >= 1.0  # it did wait for the server
    assert counters["written"] == 10
    with private_redis.client() as client:
        assert sorted(client.keys(f"{prefix}:*")) == sorted(f"{prefix}:{i}" for i in range(10))
        for i in range(10):
            assert client.hgetall(f"{prefix}:{i}") == {"id": str(i), "v": str(i * 10)}


@pytest.mark.integration
def test_scripts_flushed_between_batches_are_loaded_again(
    private_redis: PrivateRedis, prefix: str
) -> None:
    sink = _sink(f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0?key={prefix}:{{id}}&ttl=60")
    with private_redis.client() as client:
        for round_ in range(2):
            client.script_flush()  # as after a restart: EVALSHA alone would answer NOSCRIPT
            records = [Record({"id": i, "round": round_}) for i in range(3)]
            assert run_sink(records, sink)["written"] == 3
        assert client.hgetall(f"{prefix}:1") == {"id": "1", "round": "1"}
        assert 0 < client.ttl(f"{prefix}:1") <= 60


@pytest.mark.integration
def test_records_come_back_as_sink_unavailable_when_redis_stays_down(
    private_redis: PrivateRedis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    private_redis.stop()
    monkeypatch.setenv("TEST_REDIS_PASSWORD", PASSWORD)
    uris = [
        f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0?key={prefix}:{{id}}&attempts=2",
        f"{private_redis.url}?key={prefix}:{{id}}&attempts=1&password_env=TEST_REDIS_PASSWORD",
    ]
    records = [_record(i, {"id": i}) for i in range(1, 6)]

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert sorted(letter["source"]["line"] for letter in dead_letters) == [1, 2, 3, 4, 5]
        for letter in dead_letters:
            assert letter["reason"] == "sink_unavailable"
            assert letter["error_type"] == "ConnectionError"
            assert "still failing after" in letter["error_message"]
            assert f"127.0.0.1:{private_redis.port}" in letter["error_message"]
            _password_free(letter)

    for uri in uris:
        counters = run_sink(records, _sink(uri), check)
        assert counters.get("written", 0) == 0


# --------------------------------------------------------------------------------------------
# Validation before any pipeline runs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mode=list&key=k", "mode must be one of"),
        ("mode=hash", "key=<template> is required"),
        ("mode=publish", "key=<template> is required: the channel"),
        ("mode=publish&key=c&ttl=10", "ttl does not apply to mode=publish"),
        ("mode=zset&key=k", "mode=zset needs score=<field>"),
        ("mode=hash&key=k&score=s", "unknown parameters ['score']"),
        ("mode=string&key=k&maxlen=5", "unknown parameters ['maxlen']"),
        ("key=a:{id", "expected '}'"),
        ("key=a:id}", "Single '}'"),
        ("key=a:{}", "empty field name"),
        ("key=a:{id!r}", "plain field name"),
        ("key=k&ttl=0", "ttl must be positive"),
        ("key=k&ttl=soon", "not a valid int"),
        ("key=k&attempts=0", "attempts must be forever"),
        ("key=k&password_env=", "variable name"),
        ("key=k&password_secret=my-secret", "is not a secret reference"),
        ("key=k&password_env=A&password_secret=projects/p/secrets/s", "give the password once"),
    ],
)
def test_bad_uris_are_refused_at_construction(query: str, expected: str) -> None:
    uris = [f"redis://127.0.0.1:6390/0?{query}"]
    if "password" not in query:  # else the URI's password is the error
        uris.append(f"rediss://:{PASSWORD}@h:6390/0?{query}")
    for uri in uris:
        with pytest.raises(EndpointError) as refused:
            _sink(uri)
        assert expected in str(refused.value)
        _password_free(str(refused.value))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("redis:///0?key=k", "name the server"),
        ("redis://h:port/0?key=k", "port must be a number"),
        ("redis://h:6379/zero?key=k", "database number"),
        (f"redis://:{PASSWORD}@h/0?key=k&password_env=P", "give the password once"),
    ],
)
def test_bad_servers_and_password_sources_are_refused(uri: str, expected: str) -> None:
    with pytest.raises(EndpointError) as refused:
        _sink(uri)
    assert expected in str(refused.value)
    _password_free(str(refused.value))


def test_template_fields_are_checked_against_a_declared_schema() -> None:
    from transforms.schema import Field, Schema

    schema = Schema((Field("id", "INTEGER"), Field("amount", "FLOAT")))
    _sink("redis://h/0?mode=zset&key=k:{id}&score=amount", schema=schema)
    with pytest.raises(EndpointError, match=r"fields \['user'\] are not in the records' schema"):
        _sink("redis://h/0?mode=zset&key=k:{id}&score=amount&member={user}", schema=schema)
    # As a dead-letter sink, the records are dead-letter records.
    dead_letter_sink("redis://h/0?key=dlq:{pipeline}:{step}", "test_pipeline")
    with pytest.raises(EndpointError, match=r"fields \['id'\] are not in the records' schema"):
        dead_letter_sink("redis://h/0?key=dlq:{id}", "test_pipeline")


def test_a_valid_uri_builds_the_sink_without_resolving_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    sink = _sink("rediss://cache.example:6380/2?key=k:{id}&password_env=NOT_SET_ANYWHERE")
    assert sink.mode == "hash"
    connection = sink._target.connection
    assert connection.tls and connection.port == 6380 and connection.db == 2
    connection = _sink(
        "redis://h?key=k&password_secret=projects/p/secrets/redis/versions/3"
    )._target.connection
    assert connection.port == 6379 and connection.db == 0
    assert connection.password_ref == "projects/p/secrets/redis/versions/3"


def test_key_templates_and_field_text() -> None:
    template = KeyTemplate.parse("m:{endpoint}:{{literal}}:{n}")
    assert template.fields == ("endpoint", "n")
    assert template.render({"endpoint": "/a", "n": 2, "other": 1}) == "m:/a:{literal}:2"
    assert KeyTemplate.parse("fixed").render({}) == "fixed"
    assert [to_text(v) for v in ("a", 3, 2.5, True, {"b": 1, "a": [None]})] == [
        "a",
        "3",
        "2.5",
        "true",
        '{"a":[null],"b":1}',
    ]
    assert to_text(b"hi") == base64.b64encode(b"hi").decode()


# --------------------------------------------------------------------------------------------
# Secret references


def test_env_secret_references_resolve_on_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SECRET_VALUE", PASSWORD)
    assert resolve_secret("env:TEST_SECRET_VALUE") == PASSWORD
    monkeypatch.delenv("TEST_SECRET_VALUE")
    with pytest.raises(SecretError, match="TEST_SECRET_VALUE is not set"):
        resolve_secret("env:TEST_SECRET_VALUE")


@pytest.mark.parametrize(
    "reference",
    ["env:", "env:1ABC", "projects/p/secrets", "projects/p/secrets/s/versions/", "s3cret"],
)
def test_malformed_secret_references_are_refused_without_echoing_more(reference: str) -> None:
    with pytest.raises(SecretError):
        check_reference(reference)


class _SecretManagerStub(BaseHTTPRequestHandler):
    """Answers Secret Manager's REST ``versions.access`` for one secret, as the real API does."""

    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/v1/projects/p/secrets/redis/versions/"):
            data = base64.b64encode(PASSWORD.encode()).decode()
            status, body = 200, {"name": self.path[4:].split(":")[0], "payload": {"data": data}}
        else:
            status, body = 404, {"error": {"code": 404, "message": "Secret not found"}}
        reply = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def secret_manager() -> Iterator[Any]:
    """A Secret Manager client (REST transport) talking to a local stub of the API."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    server = HTTPServer(("127.0.0.1", 0), _SecretManagerStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SecretManagerStub.requests = []
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{server.server_address[1]}"},
    )
    yield client
    client.transport.close()
    server.shutdown()
    server.server_close()
    thread.join()


def test_secret_manager_references_read_the_named_or_latest_version(secret_manager: Any) -> None:
    assert resolve_secret("projects/p/secrets/redis", client=secret_manager) == PASSWORD
    assert resolve_secret("projects/p/secrets/redis/versions/7", client=secret_manager) == PASSWORD
    paths = [path.split("?")[0] for path in _SecretManagerStub.requests]
    assert paths == [
        "/v1/projects/p/secrets/redis/versions/latest:access",
        "/v1/projects/p/secrets/redis/versions/7:access",
    ]
    with pytest.raises(SecretError, match="projects/p/secrets/other/versions/latest") as failed:
        resolve_secret("projects/p/secrets/other", client=secret_manager, timeout=5)
    assert "Secret not found" in str(failed.value)
