"""Reaching a Redis server from a ``redis://`` URI: its port, its database, transient errors."""

from __future__ import annotations

import re

import redis
from redis.exceptions import AuthorizationError

from transforms.io.endpoint import Endpoint, EndpointError

__all__ = ["check_port", "database", "is_transient"]

DEFAULT_PORT = 6379
PORT_GIVEN = re.compile(r":[^\]]*$")  # a ":" after the host (IPv6 hosts are bracketed)


def check_port(endpoint: Endpoint) -> None:
    """Raises `EndpointError` when the URI gives a port that is not a number."""
    if endpoint.port is None and PORT_GIVEN.search(endpoint.authority):
        raise EndpointError(f"{endpoint}: the port must be a number")


def database(endpoint: Endpoint) -> int:
    """Returns the database number of a ``redis://HOST:PORT/DB`` URI (0 when absent)."""
    text = endpoint.path.strip("/") or "0"
    if not text.isdigit():
        raise EndpointError(f"{endpoint}: the path must be a database number, like /0")
    return int(text)


def is_transient(error: BaseException) -> bool:
    """Unreachable, timed out or loading (`redis.BusyLoadingError`); not refused credentials."""
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(
        error, (redis.AuthenticationError, AuthorizationError)
    )
