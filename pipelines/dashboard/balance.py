"""A run's balance beside its rows: published on the rows' channel and kept under a key.

``metrics_to_redis --publish=redis://...?mode=publish&key=CHANNEL`` publishes every updated row
on CHANNEL. While the run lasts it also publishes its balance there, each second its counters
change and once when it ends, as one JSON message::

    {"balance": {"pipeline": "metrics_to_redis", "state": "RUNNING",
                 "time": "2026-12-03T14:00:01Z", "delivered": "aggregated", "in_flight": 12,
                 "counters": {"read": 1200, "aggregated": 1150, "dead_lettered": 38,
                              "dead_lettered.late": 30, "dead_lettered.schema": 8, ...}}}

and keeps the latest one under the key ``CHANNEL:balance`` for a day, so that a dashboard that
connects later shows it at once. A row always has ``window_start``; a balance message never
does. A channel template with fields (``key=metrics:{endpoint}``) gets the balance on the
channel with its fields left empty (``metrics:``), which its pattern (``metrics:*``) matches.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import redis

from transforms.event_time import format_timestamp
from transforms.io.base import Sink
from transforms.io.redis.sink import RedisSink
from transforms.io.redis.text import KeyTemplate

__all__ = [
    "BalancePublisher",
    "balance_channel",
    "balance_key",
    "balance_message",
    "is_balance",
    "pattern",
]

log = logging.getLogger(__name__)

KEEP_SECONDS = 86_400  # how long the latest balance is kept
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def pattern(template: KeyTemplate) -> str:
    r"""Returns the Redis glob pattern of every key (or channel) of a template.

    ``metrics:{endpoint}:{window_start}`` gives ``metrics:*:*``; literal ``*?[]\`` are escaped.
    """
    return "".join(
        literal.translate(_GLOB_SPECIAL) + ("*" if name else "") for literal, name in template.parts
    )


def balance_channel(template: KeyTemplate) -> str:
    """Returns the channel of the balance: the rows' channel template with its fields empty."""
    return "".join(literal for literal, _ in template.parts)


def balance_key(channel: str) -> str:
    """Returns the key that keeps the latest balance published on ``channel``."""
    return f"{channel}:balance"


def balance_message(report: Any) -> dict[str, Any]:
    """Returns the message of a `pipelines.framework.run.RunReport` (see this module)."""
    return {
        "balance": {
            "pipeline": report.pipeline,
            "state": report.state,
            "time": format_timestamp(round(time.time(), 3)),
            "delivered": report.delivered,
            "in_flight": report.in_flight,
            "counters": dict(sorted(report.counters.items())),
        }
    }


def is_balance(message: Any) -> bool:
    """Whether a message of the rows' channel is a balance (not a row)."""
    return (
        isinstance(message, dict)
        and "window_start" not in message
        and isinstance(message.get("balance"), dict)
    )


class BalancePublisher:
    """Publishes a run's balance with the client of a ``mode=publish`` Redis sink.

    Called with a `RunReport` (see `pipelines.framework.watch`); never raises: while Redis is
    away (or refuses the writes) the balance is not published, a warning says so once, and the
    next reading after it is back is published.

    Args:
        sink: the Redis sink in ``publish`` mode whose channel carries the rows.
    """

    def __init__(self, sink: RedisSink) -> None:
        if sink.mode != "publish":
            raise ValueError(f"the balance goes on a publish sink's channel, not mode={sink.mode}")
        self.channel = balance_channel(sink.key)
        self._sink = sink
        self._client: redis.Redis | None = None
        self._away = False

    @classmethod
    def first(cls, sinks: Iterable[Sink]) -> BalancePublisher | None:
        """Returns the publisher of the first Redis sink in ``publish`` mode, or None."""
        for sink in sinks:
            if isinstance(sink, RedisSink) and sink.mode == "publish":
                return cls(sink)
        return None

    def __call__(self, report: Any) -> None:
        text = json.dumps(balance_message(report), separators=(",", ":"))
        try:
            if self._client is None:
                self._client = redis.Redis(**self._sink.connection())
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(balance_key(self.channel), text, ex=KEEP_SECONDS)
                pipe.publish(self.channel, text)
                pipe.execute()
        except redis.RedisError as error:
            if not self._away:
                log.warning("the balance is not published on %s until it can be: %s",
                            self.channel, error)  # fmt: skip
            self._away = True
            return
        self._away = False
