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

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import apache_beam as beam
import redis
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue
from redis.backoff import NoBackoff
from redis.exceptions import AuthorizationError
from redis.retry import Retry

from transforms.cdc.change import Change, sequence_key
from transforms.durations import parse_duration
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext
from transforms.io.batching import (
    SINK_UNAVAILABLE,
    BatchingFn,
    Pending,
    dead_letter,
)
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.scripts import SCRIPTS, SHAS
from transforms.io.redis.text import KeyTemplate, to_json, to_text
from transforms.io.retry import RetryPolicy
from transforms.message import Record
from transforms.metrics import NAMESPACE
from transforms.secrets import password_reference, resolve_secret

__all__ = [
    "MODES",
    "RedisSink",
    "TruncateUnsupported",
    "check_port",
    "database",
    "is_transient",
]

MODES = ("hash", "string", "stream", "zset", "publish", "state")
DEFAULT_PORT = 6379
DEFAULT_TIMEOUT = 10.0
DEFAULT_DELETE_TTL = "7d"
STATE_KEY_FIELDS = ("table", "key")  # the change fields a state key template may use
STATE_FIELDS = ("_sequence", "_deleted")  # the fields state mode adds to a row

_PARAMS = frozenset(
    {"mode", "key", "ttl", "batch_size", "attempts", "timeout", "password_env", "password_secret"}
)
_MODE_PARAMS = {
    "zset": frozenset({"score", "member"}),
    "stream": frozenset({"maxlen"}),
    "state": frozenset({"delete_ttl"}),
}
PORT_GIVEN = re.compile(r":[^\]]*$")  # a ":" after the host (IPv6 hosts are bracketed)

Args: TypeAlias = tuple[str | bytes | int, ...]  # one command: its name, then its arguments


class TruncateUnsupported(SinkRejected):
    """A CDC truncate, which ``state`` mode cannot apply: Redis keys have no table scope."""

    reason = "cdc_truncate_unsupported"


def _score(data: Mapping[str, Any], name: str) -> str:
    """Returns the score field of a record as text; raises `SinkRejected` unless a number."""
    value = data.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return to_text(value)
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            return value
    state = "missing" if name not in data else f"{value!r}, not a number"
    raise SinkRejected(f"score field {name!r} is {state}")


def _state_change(data: Mapping[str, Any]) -> Change:
    """Returns the change of a record for ``state`` mode, its key in canonical form.

    Raises:
        SinkRejected: ``data`` is not a valid change.
        TruncateUnsupported: the change is a truncate.

    """
    try:
        change = Change.from_dict(dict(data))
    except (KeyError, TypeError, ValueError) as error:
        raise SinkRejected(f"not a CDC change: {error!r}") from None
    if change.op == "truncate":
        raise TruncateUnsupported(
            f"a truncate of {change.table} cannot be applied to Redis state (no table scope)"
        )
    return change


def _fields(data: Mapping[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """Returns a record's non-null fields as names and values, and the names of its null fields.

    ``{"a": 1, "b": None}`` gives ``[b"a", b"1"]`` and ``[b"b"]`` (values as `to_text` writes
    them). Text that is not UTF-8 raises `UnicodeEncodeError` here, for this record alone.
    """
    pairs: list[bytes] = []
    removed: list[bytes] = []
    for name, value in data.items():  # the hot loop of a sink: one conversion per field
        if value is None:
            removed.append(name.encode())
        else:
            pairs += (name.encode(), (value if type(value) is str else to_text(value)).encode())
    return pairs, removed


def _state_args(change: Change) -> tuple[str, ...]:
    """Returns the state script's op, sequence key and field/value pairs of a change.

    Raises:
        SinkRejected: its row has a field of `STATE_FIELDS`.

    """
    row = change.row or {}
    clashes = sorted(set(row) & set(STATE_FIELDS))
    if clashes:
        raise SinkRejected(f"the row has fields {clashes}, which state mode keeps for itself")
    pairs = [(name, to_text(value)) for name, value in row.items() if value is not None]
    return (change.op, sequence_key(change.sequence), *(text for pair in pairs for text in pair))


class _Command(NamedTuple):
    """One record's write: its key (or channel) and its command."""

    key: str
    args: Args


@dataclass(frozen=True)
class _Target:
    """Everything the write DoFn needs, picklable; the password is never shown."""

    where: str  # the endpoint URI, redacted
    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    password_ref: str | None
    mode: str
    key: KeyTemplate
    ttl: int | None
    score: str | None
    member: KeyTemplate | None
    maxlen: int | None
    delete_ttl: int | None
    batch_size: int
    retry: RetryPolicy
    timeout: float
    pipeline: str
    counter: str

    @property
    def script(self) -> str | None:
        """The Lua script of the writes, or None when they are plain commands.

        A hash without ``ttl`` writes a record with both set and null fields with it.
        """
        if self.mode in ("state", "hash") or (self.ttl and self.mode in SCRIPTS):
            return SCRIPTS[self.mode]
        return None

    def connection(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client of the server, the password resolved."""
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

    def command(self, data: Mapping[str, Any]) -> _Command:
        """Builds the write of one record; raises `SinkRejected` when it cannot be built."""
        change = _state_change(data) if self.mode == "state" else None
        if change is not None:  # a state key reads only the table and the canonical key
            data = {"table": change.table, "key": change.key}
        key = self.key.render(data)
        mode, ttl, name = self.mode, self.ttl, key.encode()
        if mode in ("string", "publish"):
            text = to_json(data).encode()
            if mode == "publish":
                return _Command(key, ("PUBLISH", name, text))
            expiry = ("EX", ttl) if ttl else ()
            return _Command(key, ("SET", name, text, *expiry))
        if change is not None:
            args = [str(self.delete_ttl).encode(), *(a.encode() for a in _state_args(change))]
            return self._scripted(name, key, args)
        if mode == "zset":
            assert self.score is not None  # checked by RedisSink
            member = to_json(data) if self.member is None else self.member.render(data)
            args = [_score(data, self.score).encode(), member.encode()]
            if ttl:
                return self._scripted(name, key, args)
            return _Command(key, ("ZADD", name, *args))
        pairs, removed = _fields(data)
        if mode == "stream":
            if not pairs:
                raise SinkRejected("the record has no non-null field to add to the stream")
            if ttl:
                return self._scripted(name, key, [str(self.maxlen or 0).encode()], pairs)
            trim = ("MAXLEN", "~", self.maxlen) if self.maxlen else ()
            return _Command(key, ("XADD", name, *trim, "*", *pairs))
        if not data:
            raise SinkRejected("the record has no field to write to the hash")
        if ttl or (pairs and removed):
            return self._scripted(name, key, [str(len(pairs) // 2).encode()], pairs, removed)
        if not removed:
            return _Command(key, ("HSET", name, *pairs))
        return _Command(key, ("HDEL", name, *removed))

    def _scripted(
        self,
        name: bytes,
        key: str,
        args: list[bytes],
        pairs: Sequence[bytes] = (),
        tail: Sequence[bytes] = (),
    ) -> _Command:
        """The script call of one write: ``EVALSHA sha 1 key ttl args... pairs... tail...``."""
        return _Command(
            key, ("EVALSHA", SHAS[self.mode], 1, name, self.ttl or 0, *args, *pairs, *tail)
        )


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


class _WriteFn(BatchingFn[_Command]):
    """Writes blocks of `Record`s in pipelined batches; outputs dead letters of failures."""

    def __init__(self, target: _Target) -> None:
        self._target = target

    def setup(self) -> None:
        target = self._target
        settings = target.connection()
        self._pool = redis.ConnectionPool(
            connection_class=redis.SSLConnection if settings.pop("ssl") else redis.Connection,
            retry=Retry(NoBackoff(), 0),  # the retries are the RetryPolicy's
            **settings,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        script = target.script
        self._load: Args | None = None if script is None else ("SCRIPT", "LOAD", script)
        self._written = Metrics.counter(NAMESPACE, self._target.counter)

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
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.disconnect()

    def _send(self, batch: list[Pending[_Command]]) -> list[Any]:
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
            self._pool.disconnect()  # replies may be left unread
            raise
        for loaded in replies[: len(head)]:
            if isinstance(loaded, redis.ResponseError):
                raise loaded
        return replies[len(head) :]

    def send(self, batch: list[Pending[_Command]]) -> Iterator[WindowedValue]:
        target = self._target
        try:
            results = target.retry.call(lambda: self._send(batch), is_transient, target.where)
        except redis.RedisError as error:
            if not is_transient(error):
                raise
            message = target.retry.gave_up(target.where, error)
            for pending in batch:
                yield dead_letter(
                    pending,
                    pipeline=target.pipeline,
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
            message=f"{self._target.where} ({self._target.mode}): {message}",
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
        if not endpoint.host:
            raise EndpointError(f"{endpoint}: name the server: redis://HOST[:PORT][/DB]")
        check_port(endpoint)
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
        self._target = _Target(
            where=str(endpoint),
            host=endpoint.host,
            port=endpoint.port or DEFAULT_PORT,
            db=database(endpoint),
            tls=endpoint.scheme == "rediss",
            username=endpoint.username,
            password=endpoint.password,
            password_ref=password_reference(endpoint),
            mode=mode,
            key=key,
            ttl=ttl,
            score=score,
            member=member_template,
            maxlen=endpoint.positive("maxlen", int, None),
            delete_ttl=delete_ttl,
            batch_size=endpoint.positive("batch_size", int, 500),
            retry=RetryPolicy.from_endpoint(endpoint),
            timeout=endpoint.positive("timeout", float, DEFAULT_TIMEOUT),
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
        return self._target.connection()

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
