"""Follows a ``metrics_to_redis`` run in Redis: its rows and its balance, as they change.

On each connection to Redis the feed subscribes to the run's channel, then reads every row hash
(the keys of the run's ``--sink`` template) and the latest balance; from then on each published
row or balance updates it. When Redis goes away it says so and connects again (0.5 s, doubling
to 5 s), then reads everything again: nothing published meanwhile is missed for long.

Listeners get events, dicts with a ``type``:

* ``{"type": "snapshot", "up": true, "error": null, "groups": ["endpoint"],
  "rows": [{"id": "metrics:/api/a:2026-12-03T14:00:00Z", "row": {...}}, ...],
  "balance": {...} or null}``: everything, as `Feed.snapshot` gives it;
* ``{"type": "row", "id": ..., "row": {...}}``: a new or updated row (a newer pane);
* ``{"type": "balance", "balance": {...}}``: the run's balance (see `balance`);
* ``{"type": "redis", "up": false, "error": "ConnectionError: ..."}``: Redis went away.

A row is the published record, or the hash with its values typed back (``"3"`` is 3, ``"2.5"``
is 2.5, ``"true"`` is true; the fields of the key template stay text); its id is its key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from pipelines.dashboard.balance import balance_channel, balance_key, is_balance, pattern
from transforms.aggregate.spec import OUTPUT_FIELDS
from transforms.errors import SinkRejected
from transforms.io.redis.sink import RedisSink

__all__ = ["Feed"]

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 5.0
HEALTH_CHECK_SECONDS = 5  # a silent connection is found out by a PING within this
READ_CHUNK = 500  # hashes read per round trip

Event = dict[str, Any]
_EXACT = 2**53  # the largest integer a JavaScript number holds exactly


def _finite(value: Any) -> Any:
    """JSON has no NaN nor infinity: they become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _typed(text: str) -> Any:
    """A hash value as the record had it: numbers and booleans parsed, anything else text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, float)):
        return text
    if isinstance(value, int):  # one no browser number holds exactly stays text
        return value if abs(value) <= _EXACT else text
    return value if math.isfinite(value) else text


def _order(row: dict[str, Any]) -> str:
    return str(row.get("window_start") or "")


class Feed:
    """The latest rows and balance of a run, kept from Redis; see this module.

    Args:
        rows: the run's ``--sink``, a Redis sink in ``hash`` mode: the rows read on connect.
        updates: the run's ``--publish``, a Redis sink in ``publish`` mode: the channel
            followed, which carries the balance too.
        keep: the most rows kept: those of the newest windows.

    Raises:
        ValueError: a sink of another mode.
    """

    def __init__(self, rows: RedisSink, updates: RedisSink, keep: int = 500) -> None:
        if rows.mode != "hash" or updates.mode != "publish":
            raise ValueError(
                "the rows are Redis hashes (mode=hash) and the updates a channel "
                f"(mode=publish), not mode={rows.mode} and mode={updates.mode}"
            )
        self._rows_sink, self._updates_sink = rows, updates
        self._channel = balance_channel(updates.key)
        self.groups = tuple(name for name in rows.key.fields if name not in OUTPUT_FIELDS)
        self._keep = keep
        self._rows: dict[str, dict[str, Any]] = {}
        self._balance: dict[str, Any] | None = None
        self.up = False
        self.error: str | None = "connecting"
        self.listeners: set[Callable[[Event], None]] = set()

    def describe(self) -> str:
        """Says what the feed follows, passwords masked."""
        rows, updates = self._rows_sink, self._updates_sink
        return (
            f"hashes {pattern(rows.key)} of {str(rows.endpoint).split('?')[0]} and channel "
            f"{pattern(updates.key)} of {str(updates.endpoint).split('?')[0]}"
        )

    def snapshot(self) -> Event:
        """Returns everything the feed holds, as a ``snapshot`` event."""
        rows = sorted(self._rows.items(), key=lambda item: _order(item[1]), reverse=True)
        return {
            "type": "snapshot",
            "up": self.up,
            "error": self.error,
            "groups": list(self.groups),
            "rows": [{"id": key, "row": row} for key, row in rows],
            "balance": self._balance,
        }

    async def run(self) -> None:
        """Follows Redis until cancelled, connecting again whenever it goes away."""
        delay = FIRST_DELAY
        while True:
            try:
                await self._follow()
            except Exception as error:  # Redis went away (RedisError, OSError), or worse
                if self.up:
                    delay = FIRST_DELAY
                message = f"{type(error).__name__}: {error}"
                if self.up or self.error != message:
                    known = isinstance(error, (redis.RedisError, OSError))
                    log.warning("Redis: %s; connecting again", message, exc_info=not known)
                    self.up, self.error = False, message
                    self._emit({"type": "redis", "up": False, "error": message})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def _client(self, sink: RedisSink, **extra: Any) -> aioredis.Redis:
        # Bytes that are not UTF-8 (in a key, a value, a message) are shown replaced, never
        # taken for Redis going away.
        return aioredis.Redis(
            **sink.connection(), decode_responses=True, encoding_errors="replace", **extra
        )

    async def _follow(self) -> None:
        """Subscribes, reads every row and the balance, then applies each message.

        Raises:
            redis.RedisError, OSError: Redis went away.
        """
        updates = self._client(self._updates_sink, health_check_interval=HEALTH_CHECK_SECONDS)
        hashes = self._client(self._rows_sink)
        async with updates, hashes, updates.pubsub() as pubsub:
            await pubsub.psubscribe(pattern(self._updates_sink.key))
            for key, row in await self._read_rows(hashes):
                self._merge(key, row)
            stored = await updates.get(balance_key(self._channel))
            if stored is not None:
                self._on_message(stored, announce=False)
            self._prune()
            self.up, self.error = True, None
            self._emit(self.snapshot())
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    self._on_message(message["data"])

    async def _read_rows(self, client: aioredis.Redis) -> list[tuple[str, dict[str, Any]]]:
        """Reads every row hash: ``[(key, row), ...]``."""
        match = pattern(self._rows_sink.key)
        keys = [key async for key in client.scan_iter(match=match, count=1000, _type="hash")]
        rows = []
        for at in range(0, len(keys), READ_CHUNK):
            chunk = keys[at : at + READ_CHUNK]
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            read = zip(chunk, replies, strict=True)
            rows += [(key, self._from_hash(fields)) for key, fields in read if fields]
        return rows

    def _from_hash(self, fields: dict[str, str]) -> dict[str, Any]:
        return {
            name: text if name in self._rows_sink.key.fields else _typed(text)
            for name, text in fields.items()
        }

    def _on_message(self, data: str | bytes, announce: bool = True) -> None:
        """Applies one message of the channel: a row or a balance; anything else is ignored."""
        try:
            message = json.loads(data)
        except ValueError:
            log.debug("not JSON on the channel: %.80s", data)
            return
        if is_balance(message):
            self._balance = {name: _finite(value) for name, value in message["balance"].items()}
            if announce:
                self._emit({"type": "balance", "balance": self._balance})
            return
        if not isinstance(message, dict):
            return
        row = {name: _finite(value) for name, value in message.items()}
        try:
            key = self._rows_sink.key.render(row)
        except SinkRejected:  # not one of the run's rows
            return
        if self._merge(key, row) and announce:
            self._emit({"type": "row", "id": key, "row": row})
            if len(self._rows) > self._keep * 1.25:
                self._prune()

    def _merge(self, key: str, row: dict[str, Any]) -> bool:
        """Keeps ``row`` unless the feed holds a later pane of its window; returns whether kept."""
        held = self._rows.get(key)
        if held is not None:
            old, new = held.get("pane_index"), row.get("pane_index")
            if isinstance(old, int) and isinstance(new, int) and new < old:
                return False
        self._rows[key] = row
        return True

    def _prune(self) -> None:
        """Keeps the rows of the newest windows only."""
        if len(self._rows) > self._keep:
            newest = sorted(self._rows.items(), key=lambda item: _order(item[1]), reverse=True)
            self._rows = dict(newest[: self._keep])

    def _emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)
