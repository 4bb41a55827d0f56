"""Enrich from Redis hashes, looked up a block at a time in pipelined round trips, cached.

URI (see `transforms.enrich.base` for the family's contract)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?key=customer:{customer_id}
        &cache_ttl=60s&cache_size=100000&batch_size=500&timeout=1s&attempts=3

* ``key`` (required): the hash of a record, a template over its fields.
* ``cache_ttl``: how long a looked-up row (or its absence) is reused on the worker (default
  ``60s``; ``0`` turns the cache off); ``cache_size``: the most rows cached (default 100000,
  least recently used first out).
* ``batch_size``: the most hashes fetched in one pipelined round trip of ``HGETALL`` (default
  1000, a block's worth: a block's distinct keys that the cache lacks go in one round trip).
* ``timeout``: seconds to connect and to wait for a reply (default ``1s``); ``attempts``: how
  many times a round trip is sent when Redis is unreachable or times out, with exponential
  backoff (default 3). After the last attempt the records of that round trip follow the
  ``unavailable`` policy.
* ``password_env``, ``password_secret``: as for the Redis sink (`transforms.io.redis.sink`).

Values are read back as the Redis sink writes them (`from_text`): JSON numbers, booleans,
objects and lists become values again, any other text stays a string. A key that holds no hash
(absent, or of another type) is a missing reference. A record whose key cannot be sent (text
that is not UTF-8) is dead-lettered ``bad_key``, and one whose hash holds a value that is not
UTF-8 ``bad_reference``.

Beam's own ``apache_beam.transforms.enrichment.Enrichment`` is not used: Beam 2.77 has no Redis
handler; its ``RequestResponseIO`` fails the bundle when retries run out (no per-record dead
letter, no missing-reference policy), takes ``beam.Row`` elements, and caches in Redis rather
than on the worker.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from functools import partial
from typing import Any

import apache_beam as beam
import redis
from apache_beam.pvalue import TaggedOutput

from transforms.blocks import BLOCK_SIZE, Block
from transforms.durations import parse_duration
from transforms.enrich.base import (
    ERRORS,
    BadReference,
    BadReferenceKey,
    EnrichSettings,
    SettlingFn,
    enrich_error,
    parse_key,
)
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.connection import RedisConnection, is_transient
from transforms.io.redis.text import KeyTemplate
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = [
    "RedisLookup",
    "TtlCache",
    "endpoint_duration",
    "from_text",
    "hash_row",
    "lookup_connection",
]

_CONNECTION_PARAMS = frozenset({"key", "mode", "timeout", "attempts", "password_env",
                                "password_secret"})  # fmt: skip
_LOOKUP_PARAMS = _CONNECTION_PARAMS | {"cache_ttl", "cache_size", "batch_size"}


def from_text(text: str) -> Any:
    """Returns a Redis hash value as the Redis sink wrote it (the inverse of ``to_text``).

    ``"3"`` gives ``3``, ``"0.5"`` gives ``0.5``, ``"true"`` gives ``True``, ``'{"a":1}'``
    gives ``{"a": 1}``; text that is not JSON (``"gold"``, ``"007"``) stays as it is.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if not isinstance(value, str) else text


def endpoint_duration(endpoint: Endpoint, name: str, default: float) -> float:
    """Returns parameter ``name`` as seconds (``60s``, ``5m``, ``0.5``); raises `EndpointError`."""
    if name not in endpoint.params:
        return default
    try:
        return parse_duration(endpoint.params[name], name)
    except ValueError as error:
        raise EndpointError(f"{endpoint}: {error}") from None


def lookup_connection(endpoint: Endpoint, default_timeout: float) -> RedisConnection:
    """Reads the server of a lookup's URI, its ``timeout`` (a duration) and ``attempts``.

    ``attempts`` defaults to 3: a lookup gives up on an outage and follows its policy, unlike
    the Redis sink, which waits it out. Raises `EndpointError` for a bad URI.
    """
    timeout = endpoint_duration(endpoint, "timeout", default_timeout)
    if timeout <= 0:
        raise EndpointError(f"{endpoint}: timeout must be positive")
    retry = RetryPolicy(attempts=endpoint.positive("attempts", int, 3))
    return RedisConnection.from_endpoint(endpoint, timeout, retry)


class TtlCache:
    """A least-recently-used map whose entries expire ``ttl`` seconds after they were put.

    Args:
        ttl: seconds an entry lives (0: nothing is kept).
        size: the most entries kept.
        clock: returns the current time in seconds (monotonic by default).
    """

    def __init__(self, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """Returns ``(True, value)`` for a live entry, else ``(False, None)``."""
        entry = self._entries.get(key, None)
        if entry is None:
            return False, None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: Hashable, value: Any) -> None:
        """Stores ``value`` (``None`` included) for ``ttl`` seconds."""
        if self._ttl <= 0:
            return
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


# A looked-up row: the hash's fields, None when there is no hash, or why it cannot be read.
Row = dict[str, Any] | BadReference | None


def hash_row(key: str, reply: dict[str, str]) -> dict[str, Any] | BadReference:
    """Returns a hash's fields read back (`from_text`), or `BadReference` if one is not UTF-8.

    The connection reads bytes that are not UTF-8 as lone surrogates, which this finds.
    """
    for name, text in reply.items():
        for part in (key, name, text):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                return BadReference(f"hash {key!r}, field {name[:64]!r}: value is not UTF-8")
    return {name: from_text(text) for name, text in reply.items()}


@beam.typehints.with_output_types(Block)
class _LookupFn(SettlingFn):
    """A `Block` of `Record`s -> a `Block` of them enriched with their hashes, dead letters.

    The block's distinct keys that the cache lacks are fetched in pipelined round trips of at
    most ``batch_size`` keys (one for a block of default size).
    """

    def __init__(self, lookup: RedisLookup) -> None:
        super().__init__(lookup.key, lookup.settings)
        self._lookup = lookup

    def setup(self) -> None:
        super().setup()
        lookup = self._lookup
        self._client = lookup.connection.connect(decode=True)
        self._cache = TtlCache(lookup.cache_ttl, lookup.cache_size)
        self._pipeline = lookup.settings.pipeline

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.connection_pool.disconnect()

    def process(self, block: list[Record], timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        template = self._key
        keyed: list[tuple[Record, str | None]] = []
        for record in block:
            try:
                key = self._key_of(record.data)
                if key is not None:
                    key.encode("utf-8")
            except ValueError as error:  # text that is not UTF-8, an int too long for text
                bad = BadReferenceKey(f"key {template.text!r} cannot be sent: {error}")
                yield TaggedOutput(ERRORS, enrich_error(record, bad, timestamp, self._pipeline))
            else:
                keyed.append((record, key))
        rows, unavailable = self._rows(key for _, key in keyed if key is not None)
        settle = self._settler.settle
        enriched = Block()
        for record, key in keyed:
            if key is None:
                missing = f"the record lacks a field of key {template.text!r}"
                dead = settle(record, None, timestamp, enriched, missing=missing)
            elif key not in rows:
                dead = settle(record, None, timestamp, enriched, unavailable=unavailable)
            elif isinstance(row := rows[key], BadReference):
                dead = TaggedOutput(ERRORS, enrich_error(record, row, timestamp, self._pipeline))
            else:
                dead = settle(record, row, timestamp, enriched, missing=f"no hash at {key!r}")
            if dead is not None:
                yield dead
        if enriched:
            yield enriched

    def _rows(self, keys: Iterable[str]) -> tuple[dict[str, Row], str | None]:
        """Returns the rows of ``keys`` (cached or fetched) and why some could not be fetched.

        A key missing from the rows could not be fetched: its round trip failed, for the
        reason returned.
        """
        rows: dict[str, Row] = {}
        wanted: list[str] = []
        for key in dict.fromkeys(keys):  # each key once, in order
            found, row = self._cache.get(key)
            if found:
                rows[key] = row
            else:
                wanted.append(key)
        unavailable = None
        connection = self._lookup.connection
        size = self._lookup.batch_size
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            try:
                fetched = connection.call(partial(self._fetch, chunk))
            except redis.RedisError as error:
                if not is_transient(error):
                    raise
                attempts = connection.retry.attempts
                unavailable = f"{connection.where}: no reply after {attempts} attempts: {error}"
                continue
            for key, row in fetched.items():
                self._cache.put(key, row)
            rows.update(fetched)
        return rows, unavailable

    def _fetch(self, keys: list[str]) -> dict[str, Row]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        replies = pipe.execute(raise_on_error=False)
        rows: dict[str, Row] = {}
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception) and not isinstance(reply, redis.ResponseError):
                raise reply
            ok = isinstance(reply, dict) and reply
            rows[key] = hash_row(key, reply) if ok else None
        return rows


class RedisLookup(beam.PTransform):
    """Enriches `Block`s of `Record`s with the Redis hashes their key template names.

    Returns ``(blocks, errors)`` as every enrich transform does (`transforms.enrich.base`); see
    this module.

    Args:
        connection: the server.
        key: the hash of a record, a template over its fields.
        settings: the merge and the policies.
        cache_ttl: seconds a row (or its absence) is reused on the worker; 0: no cache.
        cache_size: the most rows cached.
        batch_size: the most hashes fetched in one round trip.
    """

    def __init__(
        self,
        connection: RedisConnection,
        key: KeyTemplate,
        settings: EnrichSettings,
        cache_ttl: float = 60.0,
        cache_size: int = 100_000,
        batch_size: int = BLOCK_SIZE,
    ) -> None:
        super().__init__()
        if cache_ttl < 0 or cache_size <= 0 or batch_size <= 0:
            raise ValueError("cache_ttl must not be negative; cache_size, batch_size positive")
        self.connection = connection
        self.key = key
        self.settings = settings
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.batch_size = batch_size

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, settings: EnrichSettings) -> RedisLookup:
        """Builds the lookup from its URI; raises `EndpointError` for a bad one."""
        endpoint.check_params(_LOOKUP_PARAMS)
        return cls(
            lookup_connection(endpoint, default_timeout=1.0),
            parse_key(endpoint.params["key"], endpoint),
            settings,
            cache_ttl=endpoint_duration(endpoint, "cache_ttl", 60.0),
            cache_size=endpoint.positive("cache_size", int, 100_000),
            batch_size=endpoint.positive("batch_size", int, BLOCK_SIZE),
        )

    def default_label(self) -> str:
        return "Enrich from Redis"

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        outputs = blocks | "Lookup" >> beam.ParDo(_LookupFn(self)).with_outputs(
            ERRORS, main="blocks"
        )
        return outputs.blocks, outputs[ERRORS]
