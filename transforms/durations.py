"""Durations written the way people write them: ``500ms``, ``60s``, ``5m``, ``1h``, ``1d``."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*")


def parse_duration(value: str | int | float, what: str = "duration") -> float:
    """Returns a duration in seconds.

    Args:
        value: ``"90s"``, ``"5m"``, ``"1.5h"``, ``"250ms"``, or a number of seconds.
        what: what the duration is, for the error message.

    Raises:
        ValueError: the text is not a duration, or it is negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration such as 60s or 5m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        if value.strip().startswith("-"):
            raise ValueError(f"{what} must not be negative, got {value!r}")
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"{what}: expected a duration such as 60s, 5m or 1h, got {value!r}")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return seconds
