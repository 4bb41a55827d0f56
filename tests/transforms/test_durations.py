"""Tests of transforms.durations.parse_duration."""

from __future__ import annotations

import pytest

from transforms.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1ms", 0.001),
        ("0s", 0.0),
        ("60s", 60.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("5min", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("0.5d", 43200.0),
        ("45", 45.0),  # no unit: seconds
        ("2.5", 2.5),
        (" 10 s ", 10.0),
        ("10 m", 600.0),
        ("0", 0.0),
    ],
)
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (30, 30.0), (1.25, 1.25), (3600, 3600.0)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize("value", ["-5s", " -1m", "-0.5h", "-3", -1, -0.001])
def test_negative_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="allowed_lateness must not be negative"):
        parse_duration(value, "allowed_lateness")


@pytest.mark.parametrize(
    "value",
    ["", "   ", "abc", "5x", "5 hours", "1h30m", "s", "ms5", "1e3", "5M", "5.s", "1,5h", "5 5s"],
)
def test_garbage_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="window size: expected a duration such as 60s") as info:
        parse_duration(value, "window size")
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused(value: bool) -> None:
    with pytest.raises(ValueError, match="session gap: expected a duration"):
        parse_duration(value, "session gap")


def test_default_what() -> None:
    with pytest.raises(ValueError, match="^duration: "):
        parse_duration("soon")
