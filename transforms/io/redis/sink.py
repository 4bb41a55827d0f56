"""``redis://`` and ``rediss://`` (TLS) sink: records as hashes, strings, streams, sorted sets.

URI::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?mode=hash&key=metrics:{endpoint}:{window_start}
        &ttl=3600&batch_size=500&attempts=forever&timeout=10

Parameters:

* ``mode``: how a record is written (default ``hash``):

  - ``hash``: ``HSET key`` with one hash field per record field. Values are text: strings as
    they are, numbers and booleans as JSON (``3``, ``2.5``, ``true``), lists and objects as
    compact JSON, bytes as base64. A field whose value is ``None`` is removed from the hash
    (``HDEL``), so the hash mirrors the latest record for the fields it names.
  - ``string``: ``SET key JSON(record)``.
  - ``stream``: ``XADD key * field value...`` (values as in ``hash``; ``None`` fields left out).
  - ``zset``: ``ZADD key score member``.
  - ``publish``: ``PUBLISH key JSON(record)``; ``key`` is the channel.
  - ``state``: the latest state of CDC changes (``record.data`` is
    `transforms.cdc.change.Change.to_dict()`), one hash per key, e.g. with
    ``key=cdc:{table}:{key}`` the hash ``cdc:inventory.customers:{"id":1001}``. The template
    may use only ``table`` and ``key`` (the primary key in canonical form, as
    `transforms.cdc.change.canonical_key` gives it, as compact JSON with sorted keys: ``1``,
    ``1.0`` and ``"1"`` are one key), and must use ``key``. An upsert replaces the hash with
    the row's fields (values as in ``hash``, ``None`` fields left out) plus ``_sequence``, the
    change's
    `transforms.cdc.change.sequence_key`; a delete reduces it to a marker, ``_sequence`` and
    ``_deleted=1``, that expires after ``delete_ttl``. Each write is a Lua compare-and-set
    that applies the change only when its ``_sequence`` sorts after the stored one (byte by
    byte), so a retried, replayed or reordered older change never overwrites newer state nor
    brings a deleted key back while its marker lives. Readers treat a hash with ``_deleted``
    as absent. A row with a field named ``_sequence`` or ``_deleted`` is rejected. A
    ``truncate`` is dead-lettered with reason ``cdc_truncate_unsupported``: Redis has no
    table scope short of a ``SCAN`` of the key space.

* ``key`` (required): the key, or channel for ``publish``, as a template over record fields:
  ``metrics:{endpoint}:{window_start}``. A name between braces is a top-level field, taken
  literally; ``{{`` and ``}}`` are literal braces. Field values are written as in ``hash``.
* ``ttl``: seconds until the key expires, set atomically with each write (not for
  ``publish``; for ``state``, the live rows' expiry: an expired row no longer guards against
  an older replayed change).
* ``delete_ttl`` (``state``): how long a delete marker lives, a duration such as ``7d`` or
  ``12h`` (default ``7d``): longer than any replay or reordering of the changes.
* ``score`` (``zset``, required): the field holding the member's score (a number).
* ``member`` (``zset``): a template for the member; by default the record as JSON.
* ``maxlen`` (``stream``): trims the stream to about this many entries (``MAXLEN ~``).
* ``password_env=VAR`` or ``password_secret=projects/P/secrets/S[/versions/V]``: where the
  worker reads the password (see `transforms.secrets`), instead of the URI.
* ``batch_size``: the most commands per pipelined round trip (default 500).
* ``attempts``: ``forever`` (default) sends a batch again, with exponential backoff and jitter,
  while Redis is unreachable, times out or is loading its data set, holding the stream back; a
  number N gives up after N sends (see `transforms.io.retry`).
* ``timeout``: seconds to connect and to wait for a reply (default 10).

JSON is written with sorted keys, so the same record always gives the same text.

Delivery: ``hash``, ``string``, ``zset`` and ``state`` writes are idempotent (the same record
written again, by a retry or a re-fired window pane, leaves the same state; a ``zset`` member
that is the record's JSON changes when the record does, so give ``member`` for latest-state
sets).
``stream`` and ``publish`` are at least once: a retried batch may add an entry or a message
again.

Writes are pipelined: one command per record, ``batch_size`` of them in one round trip of a
redis-py pipeline (with hiredis, which redis-py then uses, commands are packed and replies
parsed in C). Without ``ttl``, ``hash``, ``zset`` and ``stream`` write with their plain command
(``HSET``, or ``HDEL`` for the null fields; ``ZADD``; ``XADD``). A ``hash`` record with both
set and null fields, each write of ``hash``, ``zset`` and ``stream`` with ``ttl``, and every
``state`` write, is one Lua script call that writes (and then sets the TTL): atomic, so the
hash changes at once, and, unlike ``MULTI``/``EXEC`` (which goes on after a failed command), it
sets no TTL on a key it could not write, such as a key of another type (``WRONGTYPE``). The
scripts are loaded (``SCRIPT LOAD``) at the head of each batch, in the same round trip, so a
restarted server never answers ``NOSCRIPT``.

Failures: a record that cannot be turned into a command (a template field it lacks, a score
that is not a number) or that Redis refuses (``WRONGTYPE``...) comes out as a dead-letter record
with reason ``sink_rejected``; with ``attempts=N``, the records of a batch that could not be sent
after N sends come out with reason ``sink_unavailable``. Failed authentication fails the bundle. In
``state`` mode a record that is not a valid change is rejected too, and a change that was
superseded (not applied) counts as ``written``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import redis
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.durations import parse_duration
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext
from transforms.io.batching import SINK_UNAVAILABLE, BatchingFn, Pending, dead_letter
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.commands import Args, Command, WriteTarget
from transforms.io.redis.connection import RedisConnection, is_transient
from transforms.io.redis.text import KeyTemplate
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = ["MODES", "RedisSink"]

MODES = ("hash", "string", "stream", "zset", "publish", "state")
DEFAULT_TIMEOUT = 10.0
DEFAULT_DELETE_TTL = "7d"
STATE_KEY_FIELDS = ("table", "key")  # the change fields a state key template may use
_PARAMS = frozenset(
    {"mode", "key", "ttl", "batch_size", "attempts", "timeout", "password_env", "password_secret"}
)
_MODE_PARAMS = {
    "zset": frozenset({"score", "member"}),
    "stream": frozenset({"maxlen"}),
    "state": frozenset({"delete_ttl"}),
}


class _WriteFn(BatchingFn[Command]):
    """Writes blocks of `Record`s in pipelined batches; outputs dead letters of failures."""

    def __init__(self, target: WriteTarget) -> None:
        self._target = target

    def setup(self) -> None:
        target = self._target
        self._client = target.connection.connect()
        script = target.script
        self._load: Args | None = None if script is None else ("SCRIPT", "LOAD", script)
        self._written = metrics.counter(self._target.counter)

    @property
    def batch_size(self) -> int:
        return self._target.batch_size

    def process(
        self,
        block: list[Record],
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue]:
        command = self._target.command
        for record in block:
            try:
                pending = Pending(record, command(record.data), timestamp, window)
            except (ValueError, TypeError) as error:  # SinkRejected, or text that is not UTF-8
                if not isinstance(error, SinkRejected):
                    error = SinkRejected(
                        f"the record cannot be encoded: {type(error).__name__}: {error}"
                    )
                unsent: Pending[None] = Pending(record, None, timestamp, window)
                yield self._rejected(unsent, str(error), error.reason)
                continue
            yield from self.add(pending)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.connection_pool.disconnect()

    def _send(self, batch: list[Pending[Command]]) -> list[Any]:
        """Sends one batch in one round trip; returns each record's reply or `ResponseError`.

        Raises:
            redis.RedisError: the batch as a whole failed (connection lost, loading, refused
                credentials, the script refused): no reply can be trusted.

        """
        pipe = self._client.pipeline(transaction=False)
        head = [] if self._load is None else [self._load]
        for args in head:
            pipe.execute_command(*args)
        for pending in batch:
            pipe.execute_command(*pending.item.args)
        try:
            replies = pipe.execute(raise_on_error=False)
        except BaseException:
            self._client.connection_pool.disconnect()  # replies may be left unread
            raise
        for loaded in replies[: len(head)]:
            if isinstance(loaded, redis.ResponseError):
                raise loaded
        return replies[len(head) :]

    def send(self, batch: list[Pending[Command]]) -> Iterator[WindowedValue]:
        connection = self._target.connection
        try:
            results = connection.call(lambda: self._send(batch))
        except redis.RedisError as error:
            if not is_transient(error):
                raise
            message = connection.retry.gave_up(connection.where, error)
            for pending in batch:
                yield dead_letter(
                    pending,
                    pipeline=self._target.pipeline,
                    reason=SINK_UNAVAILABLE,
                    error_type=type(error).__name__,
                    message=message,
                )
            return
        rejected = [
            (pending, result)
            for pending, result in zip(batch, results, strict=True)
            if isinstance(result, redis.ResponseError)
        ]
        self._written.inc(len(batch) - len(rejected))
        for pending, reply in rejected:
            yield self._rejected(pending, f"key {pending.item.key!r}: {reply}")

    def _rejected(
        self, pending: Pending[Any], message: str, reason: str = SinkRejected.reason
    ) -> WindowedValue:
        return dead_letter(
            pending,
            pipeline=self._target.pipeline,
            reason=reason,
            error_type=SinkRejected.__name__,
            message=f"{self._target.connection.where} ({self._target.mode}): {message}",
        )


class RedisSink(Sink):
    """Writes blocks of `Record`s to Redis (``record.data`` is the record).

    ``expand`` returns the dead-letter dicts (see `transforms.dead_letter`) of the records that
    were not written, reasons ``sink_rejected`` and ``sink_unavailable``, each in its record's
    window.

    Args:
        endpoint: a ``redis://`` or ``rediss://`` URI; see this module for its parameters.
        context: the pipeline writing to the sink.

    Raises:
        EndpointError: from the constructor, for a URI that cannot work: no host, a bad port or
            database, an unknown mode or parameter, a parameter of another mode, a missing or
            malformed ``key`` template, ``ttl`` with ``publish``, ``zset`` without ``score``,
            a ``state`` key template without ``{key}`` or with fields other than ``{table}``,
            a bad ``delete_ttl``, more than one password source, a malformed secret reference,
            or template and score fields that a declared schema does not have.

    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        mode = endpoint.params.get("mode", "hash")
        if mode not in MODES:
            raise EndpointError(f"{endpoint}: mode must be one of {list(MODES)}, got {mode!r}")
        endpoint.check_params(_PARAMS | _MODE_PARAMS.get(mode, frozenset()))
        connection = RedisConnection.from_endpoint(
            endpoint,
            timeout=endpoint.positive("timeout", float, DEFAULT_TIMEOUT),
            retry=RetryPolicy.from_endpoint(endpoint),
        )
        if "key" not in endpoint.params:
            what = "channel" if mode == "publish" else "key"
            raise EndpointError(f"{endpoint}: key=<template> is required: the {what} to write")
        ttl = endpoint.positive("ttl", int, None)
        if ttl is not None and mode == "publish":
            raise EndpointError(f"{endpoint}: ttl does not apply to mode=publish")
        score = endpoint.params.get("score")
        if mode == "zset" and not score:
            raise EndpointError(f"{endpoint}: mode=zset needs score=<field>")
        try:
            key = KeyTemplate.parse(endpoint.params["key"])
            member = endpoint.params.get("member")
            member_template = None if member is None else KeyTemplate.parse(member)
        except ValueError as error:
            raise EndpointError(f"{endpoint}: {error}") from None
        member_fields = () if member_template is None else member_template.fields
        self._check_fields(endpoint, [*key.fields, *member_fields, score])
        delete_ttl = self._delete_ttl(endpoint, key) if mode == "state" else None
        self._target = WriteTarget(
            connection=connection,
            mode=mode,
            key=key,
            ttl=ttl,
            score=score,
            member=member_template,
            maxlen=endpoint.positive("maxlen", int, None),
            delete_ttl=delete_ttl,
            batch_size=endpoint.positive("batch_size", int, 500),
            pipeline=context.pipeline,
            counter=context.counter,
        )

    @property
    def mode(self) -> str:
        """The write mode: one of `MODES`."""
        return self._target.mode

    @property
    def key(self) -> KeyTemplate:
        """The key template (the channel's, for ``publish``)."""
        return self._target.key

    def connection(self) -> dict[str, Any]:
        """Returns keyword arguments of a client of the sink's server.

        For messages beside the records: ``redis.Redis(**sink.connection())`` or
        ``redis.asyncio.Redis(**sink.connection())``.

        ``{"host": ..., "port": ..., "db": ..., "username": ..., "password": ..., "ssl": ...,
        "socket_timeout": ..., "socket_connect_timeout": ...}``, the password resolved from its
        environment variable or secret.
        """
        return self._target.connection.settings()

    @staticmethod
    def _delete_ttl(endpoint: Endpoint, key: KeyTemplate) -> int:
        """Checks the key template of ``state`` mode; returns ``delete_ttl`` in seconds."""
        others = sorted(set(key.fields) - set(STATE_KEY_FIELDS))
        if others or "key" not in key.fields:
            raise EndpointError(
                f"{endpoint}: mode=state keys one hash per primary key: the key template must "
                f"use {{key}} and no change field but {{table}}, e.g. key=cdc:{{table}}:{{key}}"
                + (f"; it uses {others}" if others else "")
            )
        text = endpoint.params.get("delete_ttl", DEFAULT_DELETE_TTL)
        try:
            seconds = parse_duration(text, "delete_ttl")
        except ValueError as error:
            raise EndpointError(f"{endpoint}: {error}") from None
        if seconds < 1:
            raise EndpointError(f"{endpoint}: delete_ttl must be at least 1s")
        return round(seconds)

    def _check_fields(self, endpoint: Endpoint, names: list[str | None]) -> None:
        """Checks that the fields the sink reads are in the records' schema, when declared."""
        schema = self.context.schema
        if schema is None:
            return
        unknown = sorted({name for name in names if name and schema.get(name) is None})
        if unknown:
            raise EndpointError(
                f"{endpoint}: fields {unknown} are not in the records' schema; its fields: "
                f"{list(schema.names)}"
            )

    def write_fn(self) -> beam.DoFn:
        """Returns the DoFn that writes, as `expand` applies it (to drive it without a runner).

        Its ``process(block, timestamp, window)`` takes a block of `Record`s and yields the
        windowed dead-letter dicts of what it could not write; it writes in batches, the last
        one at ``finish_bundle``.
        """
        return _WriteFn(self._target)

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | "Write" >> beam.ParDo(self.write_fn())
