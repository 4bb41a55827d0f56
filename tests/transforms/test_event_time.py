"""Tests of transforms.event_time: ISO-8601 and epoch parsing, formatting."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.errors import BadTimestamp, RecordError
from transforms.event_time import _parse_canonical, _parse_iso, format_timestamp, parse_timestamp

# 2026-11-25T10:00:00Z, computed independently of the code under test.
BASE = calendar.timegm((2026, 11, 25, 10, 0, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", BASE),
        ("2026-11-25T10:00:00.250Z", BASE + 0.25),
        ("2026-11-25T10:00:00+00:00", BASE),
        ("2026-11-25T12:30:00+02:30", BASE),
        ("2026-11-25T05:00:00-05:00", BASE),
        ("2026-11-25T10:00:00", BASE),  # naive is UTC
        ("2026-11-25 10:00:00", BASE),
        ("2026-11-25", BASE - 10 * 3600),
        ("  2026-11-25T10:00:00Z  ", BASE),
    ],
)
def test_iso(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BASE, BASE),
        (float(BASE) + 0.5, BASE + 0.5),
        (BASE * 1000, BASE),
        (BASE * 1000 + 250, BASE + 0.25),
        (BASE * 1_000_000, BASE),
        (BASE * 1_000_000 + 1, BASE + 1e-6),
        (0, 0.0),
        (-86400, -86400.0),
        (-BASE * 1000, -BASE),
        (99_999_999_999, 99_999_999_999.0),  # just under the seconds threshold
        (100_000_000_000, 100_000_000.0),  # millis from here on
        (99_999_999_999_999, 99_999_999_999.999),
        (100_000_000_000_000, 100_000_000.0),  # micros from here on
    ],
)
def test_epoch_auto(value, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected, abs=1e-6)
    assert parse_timestamp(str(value)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (BASE, "s", BASE),
        (BASE, "ms", BASE / 1e3),
        (BASE, "us", BASE / 1e6),
        (1500, "s", 1500.0),  # auto would also say seconds
        (1500, "ms", 1.5),
        (1500, "us", 0.0015),
        (str(BASE * 1000), "ms", BASE),
        (f" {BASE}.5 ", "s", BASE + 0.5),
        ("1.7e12", "ms", 1.7e9),
    ],
)
def test_epoch_explicit(value, unit: str, expected: float) -> None:
    assert parse_timestamp(value, unit) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_explicit_unit_leaves_iso_alone() -> None:
    assert parse_timestamp("2026-11-25T10:00:00Z", "ms") == BASE


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "   ",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-25T25:00:00Z",
        "nan",
        "inf",
        "-Infinity",
        float("nan"),
        float("inf"),
        -float("inf"),
        [],
        {},
        b"1700000000",
        1e20,  # auto: micros, 1e14 s, beyond year 9999
        -1e20,
        "1e20",
        "x" * 1000,
    ],
    ids=repr,
)
def test_bad_values(value) -> None:
    with pytest.raises(BadTimestamp) as info:
        parse_timestamp(value)
    assert info.value.reason == "bad_timestamp"
    assert isinstance(info.value, RecordError)


def test_out_of_range_explicit_unit() -> None:
    with pytest.raises(BadTimestamp, match="out of range"):
        parse_timestamp(10**13, "s")
    assert parse_timestamp(10**13, "ms") == 10**10


def test_missing_message() -> None:
    with pytest.raises(BadTimestamp, match="missing"):
        parse_timestamp(None)


def test_long_text_is_shortened_in_message() -> None:
    with pytest.raises(BadTimestamp) as info:
        parse_timestamp("y" * 5000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (BASE, "2026-11-25T10:00:00Z"),
        (BASE + 0.25, "2026-11-25T10:00:00.250Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-1.5, "1969-12-31T23:59:58.500Z"),
        (BASE + 0.0005, "2026-11-25T10:00:00Z"),  # under a millisecond: as the second
        (BASE + 0.0019, "2026-11-25T10:00:00.001Z"),
    ],
)
def test_format_timestamp(seconds: float, expected: str) -> None:
    assert format_timestamp(seconds) == expected


@settings(max_examples=500, deadline=None)
@given(
    # 1900..2200
    st.integers(min_value=-2_208_988_800_000, max_value=7_258_118_400_000)
)
def test_format_parse_round_trip_millis(millis: int) -> None:
    seconds = millis / 1000
    text = format_timestamp(seconds)
    assert text.endswith("Z")
    # An independent reading of the text.
    moment = dt.datetime.strptime(
        text, "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=dt.timezone.utc)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert delta // dt.timedelta(milliseconds=1) == millis
    assert parse_timestamp(text) == pytest.approx(seconds, abs=5e-7)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_iso_matches_datetime(moment: dt.datetime) -> None:
    expected = moment.replace(tzinfo=dt.timezone.utc).timestamp()
    assert parse_timestamp(moment.isoformat() + "Z") == expected
    assert parse_timestamp(moment.isoformat()) == expected


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**300), max_value=10**300),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        st.lists(st.integers(), max_size=2),
    )
)
def test_parse_timestamp_is_total(value) -> None:
    """Any value gives finite seconds in Beam's range, or BadTimestamp."""
    try:
        seconds = parse_timestamp(value)
    except BadTimestamp:
        return
    assert math.isfinite(seconds)
    format_timestamp(seconds)


def test_huge_integer_is_bad_timestamp() -> None:
    with pytest.raises(BadTimestamp):
        parse_timestamp(10**400)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_iso_out_of_range_is_bad_timestamp(text: str) -> None:
    try:
        seconds = parse_timestamp(text)
    except BadTimestamp:
        return
    format_timestamp(seconds)


def test_format_keeps_exact_milliseconds_far_from_epoch() -> None:
    seconds = 15_533_899_199_998 / 1000
    expected = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        milliseconds=15_533_899_199_998
    )
    assert format_timestamp(seconds) == expected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_the_canonical_fast_path_reads_what_the_general_parser_reads() -> None:
    rng = random.Random(8)
    texts = ["2025-11-25T10:00:60Z", "2025-13-25T10:00:00Z", "2025-11-25 10:00:00Z",
             "2025-11-25T10:00:0xZ", "2025-11-25T10:00:00.0x0Z", "9999-12-31T23:59:59.999Z",
             "2025-W47-2T10:00:00Z", "2025-11-25T1٠:00:00Z",
             "2025-11-25T10:00:00.５00Z", "2025-11-25T10:00:٠5Z", "2025-11-25T10:00: 5Z",
             "2025-11-25T10:00:+5Z", "2025-11-25T10:00:00.+12Z", "2025-11-25T10:00:00.25Z",
             "2025-11-25T10:00:00.2500"]  # fmt: skip
    for _ in range(5000):
        micros = rng.randrange(-62_135_596_800_000_000, 253_402_300_800_000_000)
        text = format_timestamp(micros / 1_000_000)
        texts.append(text)
    taken = 0
    for text in texts:
        try:
            general: object = _parse_iso(text)
        except BadTimestamp as error:
            general = str(error)
        try:
            fast: object = _parse_canonical(text)
        except BadTimestamp as error:
            fast = str(error)
        assert fast is None or fast == general, text
        taken += fast is not None
        if isinstance(general, float):
            assert parse_timestamp(text) == general
    assert taken > 4000  # the fast path read most of them
