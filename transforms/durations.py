"""Durations written the way people write them: ``500ms``, ``60s``, ``5m``, ``1h``, ``1d``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["WRITTEN", "Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(\.\d+)?"
_UNIT = "|".join(_UNITS)
# A duration as a form writes it, without spaces (``60s``, ``1.5h``): the pattern a launch
# form or a Flex Template parameter checks. `parse_duration` reads it and spaces around its parts.
WRITTEN = rf"{_NUMBER}({_UNIT})?"
_DURATION = re.compile(rf"\s*(?P<number>{_NUMBER})\s*(?P<unit>{_UNIT})?\s*")


def parse_duration(
    value: str | int | float, what: str = "duration", positive: bool = False
) -> float:
    """Returns a duration in seconds.

    Args:
        value: ``"90s"``, ``"5m"``, ``"1.5h"``, ``"250ms"``, or a number of seconds.
        what: what the duration is, for the error message.
        positive: refuse zero too.

    Raises:
        ValueError: the text is not a duration, or it is negative (or zero, when ``positive``).
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
            raise ValueError(
                f"{what}: expected a duration such as 60s, 5m or 1h (a number, then one of "
                f"{', '.join(_UNITS)}), got {value!r}"
            )
        seconds = float(match["number"]) * _UNITS[match["unit"] or "s"]
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    if positive and seconds == 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Duration:
    """What a duration option takes: any duration, or one above zero (``positive``)."""

    positive: bool = False

    def seconds(self, value: str | int | float, what: str) -> float:
        """Returns `parse_duration` of ``value``, zero refused when ``positive``."""
        return parse_duration(value, what, positive=self.positive)
