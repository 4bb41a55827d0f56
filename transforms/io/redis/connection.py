"""Reaching a Redis server from a ``redis://`` URI: its port, its database, transient errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthorizationError
from redis.retry import Retry

from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.retry import RetryPolicy
from transforms.secrets import password_reference, resolve_secret

__all__ = ["RedisConnection", "check_port", "database", "is_transient"]

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


@dataclass(frozen=True)
class RedisConnection:
    """Where a Redis server is, how to log in, how long to wait and how often to retry.

    Picklable; the password is never shown. The sink and the lookups read ``timeout`` and
    ``attempts`` with their own defaults, so they hand them to `from_endpoint`.
    """

    where: str  # the URI, redacted
    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    password_ref: str | None
    timeout: float
    retry: RetryPolicy

    @classmethod
    def from_endpoint(
        cls, endpoint: Endpoint, timeout: float, retry: RetryPolicy
    ) -> RedisConnection:
        """Reads the server and the login of a URI; raises `EndpointError` for a bad one.

        TLS for ``rediss://``, the database from the path, the password from the URI or from
        its ``password_env`` or ``password_secret`` parameter.
        """
        if not endpoint.host:
            raise EndpointError(f"{endpoint}: name the server: redis://HOST[:PORT][/DB]")
        check_port(endpoint)
        return cls(
            where=str(endpoint),
            host=endpoint.host,
            port=endpoint.port or DEFAULT_PORT,
            db=database(endpoint),
            tls=endpoint.scheme == "rediss",
            username=endpoint.username,
            password=endpoint.password,
            password_ref=password_reference(endpoint),
            timeout=timeout,
            retry=retry,
        )

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client of the server, the password resolved.

        ``{"host": ..., "port": ..., "db": ..., "username": ..., "password": ..., "ssl": ...,
        "socket_timeout": ..., "socket_connect_timeout": ...}`` (on the worker: the password
        reference is resolved here).
        """
        password = self.password
        if self.password_ref is not None:
            password = resolve_secret(self.password_ref, timeout=self.timeout)
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": password,
            "ssl": self.tls,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }

    def connect(self, decode: bool = False) -> redis.Redis:
        """Returns a client of its own connection pool that never retries by itself.

        Args:
            decode: replies as text instead of bytes; bytes that are not UTF-8 are kept as lone
                surrogates, for the caller to refuse.
        """
        settings: dict[str, Any] = self.settings()
        if decode:
            settings.update(decode_responses=True, encoding_errors="surrogateescape")
        pool = redis.ConnectionPool(
            connection_class=redis.SSLConnection if settings.pop("ssl") else redis.Connection,
            retry=Retry(NoBackoff(), 0),  # the retries are `call`'s
            **settings,
        )
        return redis.Redis(connection_pool=pool)

    def call(self, request: Callable[[], Any]) -> Any:
        """Returns ``request()``, sent again on transient failures as ``retry`` says."""
        return self.retry.call(request, is_transient, self.where)
