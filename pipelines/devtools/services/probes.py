"""Readiness probes: whether a server answers a real protocol call, and resets of its state."""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Callable

from pipelines.devtools.services.specs import BIGQUERY_PROJECT, HOST, SPECS, ServiceError, spec_of


def tcp_open(port: int, timeout: float = 1.0) -> bool:
    """Tell whether something accepts TCP connections on ``port`` of the local host."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(port: int, path: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    """Return the HTTP status of one request to the local host, or ``None`` if none came."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports of the local host that nothing listens on now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def redis_command(*words: str, timeout: float = 2.0) -> bytes:
    """Send one command in the Redis protocol and return the first reply line."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((HOST, SPECS["redis"].port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def _probe_pubsub() -> bool:
    return http_status(SPECS["pubsub"].port, "/") == 200


def _probe_kafka() -> bool:
    if not tcp_open(SPECS["kafka"].port):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    admin = AdminClient({"bootstrap.servers": SPECS["kafka"].endpoint, "log_level": 0})
    try:
        admin.list_topics(timeout=3)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
    return True


def _probe_kinesis() -> bool:
    return http_status(SPECS["kinesis"].port, "/moto-api/") == 200


def bigquery_answers(port: int) -> bool:
    """Tell whether a BigQuery emulator answers a REST call (list datasets) on ``port``."""
    path = f"/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets"
    return http_status(port, path) == 200


def _probe_bigquery() -> bool:
    return bigquery_answers(SPECS["bigquery"].port)


def _probe_redis() -> bool:
    try:
        return redis_command("PING") == b"+PONG"
    except OSError:
        return False


_PROBES: dict[str, Callable[[], bool]] = {
    "pubsub": _probe_pubsub,
    "kafka": _probe_kafka,
    "kinesis": _probe_kinesis,
    "bigquery": _probe_bigquery,
    "redis": _probe_redis,
}


def is_answering(name: str) -> bool:
    """Tell whether the server answers a real protocol call on its port right now."""
    return _PROBES[spec_of(name).name]()


def reset_redis() -> None:
    """Delete every key of the local Redis (``FLUSHALL``).

    Raises:
        ServiceError: Redis did not acknowledge the flush.

    """
    reply = redis_command("FLUSHALL")
    if reply != b"+OK":
        raise ServiceError(f"redis: FLUSHALL answered {reply!r}")


def reset_kinesis() -> None:
    """Delete every stream of the local moto server (``POST /moto-api/reset``).

    Raises:
        ServiceError: The server did not accept the reset.

    """
    code = http_status(SPECS["kinesis"].port, "/moto-api/reset", method="POST", timeout=10.0)
    if code != 200:
        raise ServiceError(f"kinesis: POST /moto-api/reset answered {code}")
