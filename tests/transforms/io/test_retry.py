"""The sink retry policy: forever by default, bounded on request, backoff, outage log lines."""

from __future__ import annotations

import logging

import pytest

from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.retry import SINK_UNAVAILABLE, RetryPolicy


class Outage(ConnectionError):
    pass


class Flaky:
    """A request that fails with `Outage` ``failures`` times, then returns ``"done"``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or Outage("connection refused")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def transient(error: BaseException) -> bool:
    return isinstance(error, Outage)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_by_default_an_outage_is_waited_out_however_long_it_lasts() -> None:
    request, sleeps = Flaky(200), Sleeps()

    result = RetryPolicy().call(request, transient, "redis://h:1/0", sleep=sleeps)

    assert result == "done"
    assert request.calls == 201
    assert len(sleeps) == 200


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(initial=1.0, maximum=8.0)
    sleeps = Sleeps()

    policy.call(Flaky(12), transient, "sink", sleep=sleeps)

    ceilings = [1.0, 2.0, 4.0] + [8.0] * 9
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True)), sleeps
    assert policy.backoff(10_000) <= 8.0  # no overflow far into an outage


def test_a_bounded_retry_gives_up_after_its_attempts_with_the_last_error() -> None:
    request, sleeps = Flaky(10), Sleeps()

    with pytest.raises(Outage):
        RetryPolicy(attempts=3).call(request, transient, "sink", sleep=sleeps)

    assert request.calls == 3
    assert len(sleeps) == 2


def test_a_permanent_error_is_raised_at_once() -> None:
    request, sleeps = Flaky(5, ValueError("bad row")), Sleeps()

    with pytest.raises(ValueError, match="bad row"):
        RetryPolicy().call(request, transient, "sink", sleep=sleeps)

    assert request.calls == 1
    assert sleeps == []


def test_an_outage_logs_one_warning_with_the_sink_redacted_and_one_recovery_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="transforms.io.retry")  # what the command line shows
    where = "redis://:s3cret@cache:6379/0"

    RetryPolicy().call(Flaky(4), transient, where, sleep=Sleeps())
    RetryPolicy().call(Flaky(0), transient, where, sleep=Sleeps())  # no outage: no log

    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == [logging.WARNING, logging.WARNING]
    assert "unavailable" in levels[0][1] and "retried until the sink is back" in levels[0][1]
    assert "available again" in levels[1][1] and "4 failed attempt" in levels[1][1]
    assert all("s3cret" not in message and "cache:6379" in message for _, message in levels)


def test_the_give_up_message_is_redacted_and_names_the_attempts() -> None:
    message = RetryPolicy(attempts=2).gave_up("redis://:pw@h:1/0", Outage("refused"))
    assert message == "redis://:***@h:1/0: still failing after 2 attempts: refused"


@pytest.mark.parametrize(
    ("query", "attempts"),
    [("", None), ("?attempts=forever", None), ("?attempts=1", 1), ("?attempts=7", 7)],
)
def test_attempts_from_the_uri(query: str, attempts: int | None) -> None:
    policy = RetryPolicy.from_endpoint(Endpoint.parse(f"redis://h:1/0{query}"))
    assert policy.attempts == attempts
    assert policy.bounded is (attempts is not None)
    if attempts is not None:
        assert SINK_UNAVAILABLE in policy.describe()


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "always", ""])
def test_bad_attempts_say_what_to_write(value: str) -> None:
    with pytest.raises(EndpointError, match="attempts must be forever .* or a whole number"):
        RetryPolicy.from_endpoint(Endpoint.parse(f"redis://h:1/0?attempts={value}"))


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(initial=5.0, maximum=1.0)
