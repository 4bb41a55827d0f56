"""One retry policy for every sink: a sink outage holds the stream back, it is no record's fault.

A request that fails as a whole with a transient error (connection refused or reset, timeout,
HTTP 5xx, throttling) is sent again after an exponential backoff with jitter (from
`INITIAL_SECONDS`, doubling, capped at `MAX_SECONDS`). By default it is sent again until it
succeeds, however long the outage lasts: the sink's bundle does not finish, so the source's
position is not committed and the stream waits, and no healthy record is dead-lettered. A sink
URI's ``attempts=N`` asks for a bounded retry instead: after N sends the request's records are
dead-lettered with reason `SINK_UNAVAILABLE`. Per-record rejections (a row refused, a value the
system does not take) are never retried here: the sink dead-letters them at once.

An outage is logged once when it starts (a warning naming the sink, credentials redacted) and
once when it ends (an info line with how long it lasted), not at every attempt; every new send
counts one `transforms.metrics.SINK_RETRIES`, and the outage's length, in whole seconds, is
added to `transforms.metrics.SINK_OUTAGE_SECONDS` when it ends (recovered or given up).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from transforms.io.endpoint import Endpoint, EndpointError, redact
from transforms.metrics import SINK_OUTAGE_SECONDS, SINK_RETRIES, counter

__all__ = [
    "FOREVER",
    "INITIAL_SECONDS",
    "MAX_SECONDS",
    "OUTAGE_BEHAVIOUR",
    "SINK_UNAVAILABLE",
    "RetryPolicy",
]

R = TypeVar("R")

SINK_UNAVAILABLE = "sink_unavailable"
"""Dead-letter reason of records whose request kept failing until a bounded retry ran out."""

FOREVER = "forever"
"""The value of ``attempts`` (and its default) that retries an outage until it ends."""

INITIAL_SECONDS = 1.0
MAX_SECONDS = 10.0

_LOG = logging.getLogger(__name__)

OUTAGE_BEHAVIOUR = (
    "A sink outage (connection refused or reset, timeout, HTTP 5xx, throttling) is no record's "
    "fault: every sink (BigQuery, Redis, Pub/Sub, Kafka, Kinesis, files) sends the failed "
    f"request again with exponential backoff and jitter ({INITIAL_SECONDS:g} s doubling to "
    f"{MAX_SECONDS:g} s) until the sink is back, holding the stream back (the source position "
    "is committed only after the writes, dead letters included), and logs a warning when an "
    "outage starts and a line when it ends. Add attempts=N to a sink URI to give up after N "
    f"sends instead: the records are then dead-lettered with reason {SINK_UNAVAILABLE}. A "
    "record the sink refuses (a bad value, a row error) is dead-lettered at once."
)
"""What every sink does during an outage, for ``describe`` and the README."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a sink sends a request again after transient failures.

    Attributes:
        attempts: the most sends of one request, or ``None`` to send it until it succeeds.
        initial: the backoff ceiling after the first failure, in seconds.
        maximum: the largest backoff ceiling, in seconds.
    """

    attempts: int | None = None
    initial: float = INITIAL_SECONDS
    maximum: float = MAX_SECONDS

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not 0 < self.initial <= self.maximum:
            raise ValueError("the backoff needs 0 < initial <= maximum")

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> RetryPolicy:
        """Reads the URI's ``attempts`` parameter: ``forever`` (default) or a count >= 1.

        Raises:
            EndpointError: for anything else, saying what to write.
        """
        text = endpoint.params.get("attempts", FOREVER)
        if text == FOREVER:
            return cls()
        try:
            attempts = int(text)
        except ValueError:
            attempts = 0
        if attempts < 1:
            raise EndpointError(
                f"{endpoint}: attempts must be {FOREVER} (retry a sink outage until it ends, the "
                f"default) or a whole number >= 1 (then dead-letter as {SINK_UNAVAILABLE}), "
                f"got {text!r}"
            )
        return cls(attempts=attempts)

    @property
    def bounded(self) -> bool:
        """Whether the retry gives up (``attempts=N``) instead of waiting out an outage."""
        return self.attempts is not None

    def describe(self) -> str:
        """Says, for a person, what the policy does with an outage."""
        if self.attempts is None:
            return "retried until the sink is back"
        return f"sent up to {self.attempts} times, then dead-lettered as {SINK_UNAVAILABLE}"

    def gave_up(self, where: str, error: BaseException) -> str:
        """The dead-letter message of records whose bounded retry ran out (redacted)."""
        return redact(f"{where}: still failing after {self.attempts} attempts: {error}")

    def backoff(self, failures: int) -> float:
        """Returns the seconds to wait after ``failures`` (>= 1) failed sends in a row.

        Exponential from ``initial``, capped at ``maximum``, with jitter: a random value between
        half the ceiling and the ceiling, so that workers that failed together do not retry
        together.
        """
        ceiling = min(self.maximum, self.initial * 2 ** min(failures - 1, 62))
        return ceiling * random.uniform(0.5, 1.0)

    def call(
        self,
        request: Callable[[], R],
        is_transient: Callable[[BaseException], bool],
        where: str,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> R:
        """Returns ``request()``, sending it again after transient failures.

        Args:
            request: sends the request; called again after each transient failure.
            is_transient: tells whether an exception of ``request`` may go away on a new send.
            where: the sink, for the outage log lines (redacted here).
            sleep: waits between sends.
            clock: measures the outage for the recovery line.

        Returns:
            What the first successful send returned.

        Raises:
            Exception: a non-transient error at once; the last transient error when a bounded
                retry ran out of attempts.
        """
        failures = 0
        began = 0.0
        while True:
            try:
                result = request()
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                if failures == 1:
                    began = clock()
                    _LOG.warning(
                        "%s is unavailable (%s: %s); the write is %s",
                        redact(where),
                        type(error).__name__,
                        redact(str(error)),
                        self.describe(),
                    )
                if self.attempts is not None and failures >= self.attempts:
                    counter(SINK_OUTAGE_SECONDS).inc(round(clock() - began))
                    raise
                counter(SINK_RETRIES).inc()
                sleep(self.backoff(failures))
                continue
            if failures:
                counter(SINK_OUTAGE_SECONDS).inc(round(clock() - began))
                # A warning too: the outage's end is shown wherever its start was.
                _LOG.warning(
                    "%s is available again after %.1f s and %d failed attempt(s)",
                    redact(where),
                    clock() - began,
                    failures,
                )
            return result
