"""Reading event times: ISO-8601 strings or epoch numbers in seconds, millis or micros."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from transforms.errors import BadTimestamp

__all__ = ["EpochUnit", "format_millis", "format_timestamp", "parse_timestamp"]

EpochUnit = Literal["auto", "s", "ms", "us"]

_UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6}
# Epoch values below 1e11 are seconds (up to year 5138), below 1e14 millis, else micros.
_AUTO_THRESHOLDS = ((1e11, 1.0), (1e14, 1e3))
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# Beam's timestamps must stay within these bounds (years 0001..9999 roughly).
_MIN_SECONDS = -62135596800.0
_MAX_SECONDS = 253402300799.0


def parse_timestamp(value: Any, unit: EpochUnit = "auto") -> float:
    """Returns an event time as epoch seconds.

    Args:
        value: an ISO-8601 string (``"2026-11-25T10:00:00Z"``, offset or naive UTC), an epoch
            number, or a string holding an epoch number.
        unit: the unit of epoch numbers; ``auto`` picks it by magnitude.

    Raises:
        BadTimestamp: the value is missing, of the wrong type, or out of range.

    """
    if value is None:
        raise BadTimestamp("event time is missing")
    if isinstance(value, bool):
        raise BadTimestamp(f"event time must be a string or number, got {value!r}")
    if isinstance(value, str):
        canonical = _parse_canonical(value)
        if canonical is not None:
            return canonical
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text)
        return _from_epoch(number, unit, value)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise BadTimestamp(f"event time {str(value)[:32]}... is out of range") from None
        return _from_epoch(number, unit, value)
    raise BadTimestamp(f"event time must be a string or number, got {type(value).__name__}")


# ``YYYY-MM-DDTHH:MM:SS`` of the whole epoch seconds formatted lately, for `format_timestamp`.
_SECONDS: dict[int, str] = {}
_MAX_SECONDS_KEPT = 100_000


def format_timestamp(seconds: float) -> str:
    """Formats epoch seconds as ISO-8601 UTC with a ``Z``, e.g. ``2026-11-25T10:00:00.250Z``.

    Milliseconds are written (truncated) when the time has a millisecond or more past the
    second. The text of a whole second is made once and kept (times come in runs of nearby
    seconds).
    """
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    text = _SECONDS.get(whole) or _second_text(whole)
    millis = micros // 1000
    return f"{text}.{millis:03d}Z" if millis else text + "Z"


# The epoch milliseconds that `format_millis` takes (years 0001..9999).
_MILLIS = range(round(_MIN_SECONDS * 1000), round(_MAX_SECONDS * 1000) + 1)


def format_millis(millis: int) -> str:
    """`format_timestamp` of whole epoch milliseconds (``millis / 1000`` seconds), in integers.

    Raises:
        BadTimestamp: the time is out of range (as `parse_timestamp` of it would).
    """
    if millis not in _MILLIS:
        raise BadTimestamp(f"event time {millis!r} is out of range")
    whole, fraction = divmod(millis, 1000)
    text = _SECONDS.get(whole) or _second_text(whole)
    return f"{text}.{fraction:03d}Z" if fraction else text + "Z"


def _second_text(whole: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of whole epoch seconds, kept in `_SECONDS`."""
    moment = _EPOCH + dt.timedelta(seconds=whole)
    if len(_SECONDS) >= _MAX_SECONDS_KEPT:
        _SECONDS.clear()
    text = _SECONDS[whole] = moment.isoformat(timespec="seconds")[:-6]  # no "+00:00"
    return text


# Epoch microseconds of the minutes seen ("2026-11-25T10:00" -> ...), for `_parse_canonical`.
_MINUTES: dict[str, int] = {}
_MAX_MINUTES = 100_000
# Microseconds of the seconds ("00".."59") and of the milliseconds ("000".."999") of a minute:
# one lookup reads the digits and checks them (ASCII digits only, seconds below 60).
_SECOND_MICROS = {f"{second:02d}": second * 1_000_000 for second in range(60)}
_MILLI_MICROS = {f"{milli:03d}": milli * 1_000 for milli in range(1000)}


def _parse_canonical(text: str) -> float | None:
    """Reads ``YYYY-MM-DDTHH:MM:SSZ`` or ``...:SS.fffZ`` fast; None for any other text.

    Most event times have this form. The minute is parsed once and kept; the result is the
    same float as `_parse_iso` gives (whole microseconds divided by a million, as
    ``datetime.timestamp`` computes it). Anything unusual goes to the general path.
    """
    size = len(text)
    if size == 24:
        if text[19] != ".":
            return None
        fraction = _MILLI_MICROS.get(text[20:23])
        if fraction is None:
            return None
    elif size == 20:
        fraction = 0
    else:
        return None
    second = _SECOND_MICROS.get(text[17:19])
    if second is None or text[-1] != "Z" or text[16] != ":":
        return None
    minute = text[:16]
    base = _MINUTES.get(minute)
    if base is None:
        try:
            moment = dt.datetime.fromisoformat(minute + ":00+00:00")
        except ValueError:
            return None
        if len(_MINUTES) >= _MAX_MINUTES:
            _MINUTES.clear()
        base = _MINUTES[minute] = (moment - _EPOCH) // dt.timedelta(microseconds=1)
    return _in_range((base + second + fraction) / 1_000_000, text)


def _parse_iso(text: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise BadTimestamp(f"event time {text[:64]!r} is not ISO-8601 or an epoch number") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return _in_range(moment.timestamp(), text)


def _in_range(seconds: float, original: Any) -> float:
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise BadTimestamp(f"event time {original!r} is out of range")
    return seconds


def _from_epoch(number: float, unit: EpochUnit, original: Any) -> float:
    if not math.isfinite(number):
        raise BadTimestamp(f"event time {original!r} is not a finite number")
    if unit == "auto":
        divisor = 1e6
        for limit, candidate in _AUTO_THRESHOLDS:
            if abs(number) < limit:
                divisor = candidate
                break
    else:
        divisor = _UNIT_DIVISOR[unit]
    return _in_range(number / divisor, original)
