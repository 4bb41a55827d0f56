"""``generator://events``: realistic events made inside the pipeline, for demos, tests and benches.

URI parameters:
    count: how many events; the source is bounded when set, endless otherwise.
    rate: events per second of event time (bounded) or of wall time (endless); default 100.
    seed: makes the content repeatable; default 1.
    malformed: the share of payloads that are broken (bad JSON, bad UTF-8, wrong types, missing
        or bad timestamps, non-objects); default 0.
    late: the share of events whose event time is 1 to 10 minutes older than their position
        (out of order, and late for windows); default 0.
    users: how many distinct users (keys); default 1000.
    start: the event time of the first event, ISO-8601 (bounded only); default: so that the
        last event is about now.
    live: with ``count``, emit the events paced in real time (``rate`` per second of event
        time) instead of all at once, so windows close while the pipeline runs; endless
        generators are always live. Default false.
    speed: how many seconds of event time pass per second of wall time in a live run
        (``speed=10`` shows ten minutes of windows in one minute); default 1.

Live runs on the DirectRunner use its streaming engine (see `transforms.io.live`), where
windows close as the watermark (the event time of the next event) passes them.

An event looks like::

    {"event_id": "e1-42", "ts": "2026-11-25T10:00:00.420Z", "user_id": "u17",
     "event_type": "purchase", "endpoint": "/api/cart", "status_code": 200,
     "latency_ms": 41.7, "amount": 25.5, "country": "DE"}
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import TimestampedValue

from transforms.blocks import Batch, Block
from transforms.event_time import format_timestamp, parse_timestamp
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.live import BUNDLE_RUNNER, DirectLiveRead
from transforms.message import Message, Origin

__all__ = ["EventGenerator", "GeneratorSource"]

EVENT_TYPES = ("page_view", "page_view", "page_view", "click", "click", "add_to_cart",
               "purchase", "login", "login_failed")  # fmt: skip
ENDPOINTS = ("/api/orders", "/api/users", "/api/search", "/api/cart", "/api/login")
STATUS_CODES = (200,) * 14 + (201, 400, 404, 500, 503)
COUNTRIES = ("DE", "US", "FR", "GB", "JP", "BR", "IN")
# Events are made in blocks, each from its own seeded random stream, so that an event depends
# only on the seed and its index (not on count, sharding or pacing).
BLOCK = 1_000
_PARAMS = frozenset(
    {"count", "rate", "seed", "malformed", "late", "users", "start", "live", "speed"}
)
PACE_SECONDS = 0.2
"""A paced read waits this long after the previous one unless a whole batch is due: fewer,
larger bundles (each bundle costs the runner the same whatever it holds)."""
IDLE_WAIT_SECONDS = 1.0
"""The longest a paced read waits for its next event (so a cancelled run stops soon)."""


class EventGenerator:
    """Makes event payloads; the same seed and index give the same event, bounded or live.

    (The endless generator on runners other than the DirectRunner draws per second instead.)

    Args:
        seed: the content seed.
        malformed: share of broken payloads.
        late: share of events moved 1-10 minutes back in event time.
        users: number of distinct user ids.

    """

    def __init__(self, seed: int, malformed: float, late: float, users: int) -> None:
        self.seed = seed
        self.malformed = malformed
        self.late = late
        self.users = users
        self._encode = msgspec.json.encode

    def block_random(self, block: int) -> random.Random:
        """Returns the random stream of a block of events (see `BLOCK`)."""
        return random.Random(self.seed * 1_000_003 + block)

    def event(self, rng: random.Random, index: int, event_time: float) -> dict[str, Any]:
        """Returns event number ``index`` at ``event_time`` (epoch seconds)."""
        if rng.random() < self.late:
            event_time -= rng.uniform(60.0, 600.0)
        event_type = rng.choice(EVENT_TYPES)
        return {
            "event_id": f"e{self.seed}-{index}",
            "ts": format_timestamp(round(event_time, 3)),
            "user_id": f"u{rng.randrange(self.users)}",
            "event_type": event_type,
            "endpoint": rng.choice(ENDPOINTS),
            "status_code": rng.choice(STATUS_CODES),
            "latency_ms": round(rng.lognormvariate(3.5, 0.6), 2),
            "amount": round(rng.uniform(1, 500), 2) if event_type == "purchase" else None,
            "country": rng.choice(COUNTRIES),
        }

    def message(self, rng: random.Random, index: int, event_time: float) -> TimestampedValue:
        """Returns the `Message` of event ``index``, broken with the configured share."""
        event = self.event(rng, index, event_time)
        if rng.random() < self.malformed:
            payload = _break(rng, event, self._encode)
        else:
            payload = self._encode(event)
        origin = Origin("generator", message_id=event["event_id"], offset=index)
        message = Message(payload, {"event_type": event["event_type"]}, origin)
        return TimestampedValue(message, event_time)


def _break(rng: random.Random, event: dict[str, Any], encode: Any) -> bytes:
    """Returns one of the broken forms of ``event`` that Parse must dead-letter."""
    kind = rng.randrange(6)
    if kind == 0:
        return encode(event)[:-7]  # truncated JSON
    if kind == 1:
        return b'{"event_id": "\xff\xfe", "ts": 1}'  # not UTF-8
    if kind == 2:
        return encode({**event, "status_code": "five hundred"})  # wrong type
    if kind == 3:
        return encode({**event, "ts": "yesterday-ish"})  # unreadable event time
    if kind == 4:
        return encode([event])  # JSON, but not an object
    return encode({k: v for k, v in event.items() if k != "ts"})  # missing event time


@beam.typehints.with_output_types(Block)
class _GenerateBlock(beam.DoFn):
    """Generates the events of block ``b`` (indices ``b * BLOCK`` up to the next block).

    Output: one `Block` of their `Message`s, at the event time of its first event (the oldest
    before any is made late).
    """

    def __init__(self, generator: EventGenerator, count: int, start: float, rate: float) -> None:
        self._generator = generator
        self._count = count
        self._start = start
        self._rate = rate

    def process(self, block: int) -> Iterator[TimestampedValue]:
        rng = self._generator.block_random(block)
        first = block * BLOCK
        start, rate, message = self._start, self._rate, self._generator.message
        messages = Block(
            message(rng, index, start + index / rate).value
            for index in range(first, min(self._count, first + BLOCK))
        )
        yield TimestampedValue(messages, start + first / rate)


@beam.typehints.with_output_types(Block)
class _GenerateTick(beam.DoFn):
    """Generates ``rate`` events stamped with the tick's wall time: one `Block` of them."""

    def __init__(self, generator: EventGenerator, rate: int) -> None:
        self._generator = generator
        self._rate = rate

    def process(self, tick: float) -> Iterator[TimestampedValue]:
        first = int(tick) * self._rate
        rng = random.Random(self._generator.seed * 1_000_003 + first)
        messages = Block(
            self._generator.message(rng, first + offset, tick + offset / self._rate).value
            for offset in range(self._rate)
        )
        yield TimestampedValue(messages, tick)


class PacedEvents:
    """A `LiveReader` of generated events, released at ``rate * speed`` per wall second.

    Event ``i`` has the event time ``start + i / rate``; the watermark is the event time of the
    next event (late events are moved back behind it, as late data is).
    """

    def __init__(self, generator: EventGenerator, count: int | None, rate: float, speed: float,
                 start: float | None) -> None:  # fmt: skip
        self._generator = generator
        self._count = count
        self._rate = rate
        self._speed = speed
        self._start = start
        self._began: float | None = None
        self._last_read = 0.0
        self._next = 0
        self._random = generator.block_random(0)

    def _due(self) -> int:
        if self._began is None:
            self._began = time.monotonic()
            if self._start is None:
                self._start = time.time()
        due = int((time.monotonic() - self._began) * self._rate * self._speed) + 1
        return due if self._count is None else min(due, self._count)

    def _pause(self, limit: int) -> float:
        """Seconds to wait before a read (none when ``limit`` events are due).

        Until `PACE_SECONDS` after the previous read and until the next event is due, at most
        `IDLE_WAIT_SECONDS`.
        """
        if self._began is None or self._due() >= self._next + limit:
            return 0.0
        next_due = self._began + self._next / (self._rate * self._speed)
        until = max(self._last_read + PACE_SECONDS, next_due)
        return min(max(0.0, until - time.monotonic()), IDLE_WAIT_SECONDS)

    def read(self, limit: int) -> list[TimestampedValue]:
        """Returns the events due by now (at most ``limit``), after a pause (see `_pause`)."""
        pause = self._pause(limit)
        if pause > 0:
            time.sleep(pause)
        self._last_read = time.monotonic()
        due = min(self._due(), self._next + limit)
        if due <= self._next:
            return []
        assert self._start is not None
        first, self._next = self._next, due
        events = []
        for index in range(first, due):
            if index % BLOCK == 0:
                self._random = self._generator.block_random(index // BLOCK)
            events.append(
                self._generator.message(self._random, index, self._start + index / self._rate)
            )
        return events

    @property
    def watermark(self) -> float:
        """The event time of the next event."""
        start = self._start if self._start is not None else time.time()
        return start + self._next / self._rate

    @property
    def done(self) -> bool:
        """Whether all ``count`` events were read."""
        return self._count is not None and self._next >= self._count


class GeneratorSource(Source):
    """Realistic events with keys and event times, bounded with ``count``, endless without."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        if endpoint.host not in ("events", ""):
            raise EndpointError(f"{endpoint}: the generator makes 'events' (generator://events)")
        endpoint.check_params(_PARAMS)
        self.count: int | None = endpoint.positive("count", int, None)
        self.rate: float = endpoint.positive("rate", float, 100.0)
        self.generator = EventGenerator(
            seed=endpoint.param("seed", int, 1),
            malformed=endpoint.fraction("malformed", 0.0),
            late=endpoint.fraction("late", 0.0),
            users=endpoint.positive("users", int, 1000),
        )
        self.live = self.count is None or endpoint.flag("live", False)
        self.speed: float = endpoint.positive("speed", float, 1.0)
        self.bounded = not self.live
        self.finite = self.count is not None
        self.live_on_direct = self.live
        if "start" in endpoint.params:
            self.start = endpoint.param("start", parse_timestamp, 0.0)
        else:
            span = (self.count or 0) / self.rate
            self.start = math.floor((time.time() - span) / 60.0) * 60.0

    def _paced(self) -> PacedEvents:
        start = self.start if "start" in self.endpoint.params else None
        return PacedEvents(self.generator, self.count, self.rate, self.speed, start)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Generates the events; elements are `Block`s of `Message`s."""
        if self.live and type(pbegin.pipeline.runner).__name__ == BUNDLE_RUNNER:
            return pbegin | "Live" >> DirectLiveRead(self._paced) | "Blocks" >> Batch()
        if self.count is None:
            rate = max(1, round(self.rate))
            return (
                pbegin
                | "Tick" >> PeriodicImpulse(fire_interval=1.0)
                | "Generate" >> beam.ParDo(_GenerateTick(self.generator, rate))
            )
        blocks = -(-self.count // BLOCK)
        return (
            pbegin
            | "Blocks" >> beam.Create(list(range(blocks)))
            | "Generate"
            >> beam.ParDo(_GenerateBlock(self.generator, self.count, self.start, self.rate))
        )
