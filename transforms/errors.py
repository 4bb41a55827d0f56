"""Exceptions that say why a record failed, each with a short machine-readable reason."""

from __future__ import annotations

__all__ = [
    "BadTimestamp",
    "InvalidJson",
    "InvalidUtf8",
    "NotAnObject",
    "RecordError",
    "SchemaViolation",
    "SinkRejected",
    "TooLarge",
]


class RecordError(ValueError):
    """A record that cannot go on; ``reason`` is the dead-letter reason code.

    ``repr`` is the plain message because Beam's ``with_exception_handling`` reports
    ``repr(exception)`` and that text becomes the dead-letter ``error_message``.
    """

    reason = "error"

    def __repr__(self) -> str:
        return str(self)


class TooLarge(RecordError):
    """The payload is larger than the configured maximum."""

    reason = "too_large"


class InvalidUtf8(RecordError):
    """The payload is not valid UTF-8."""

    reason = "invalid_utf8"


class InvalidJson(RecordError):
    """The payload is not valid JSON."""

    reason = "invalid_json"


class NotAnObject(RecordError):
    """The payload is valid JSON but not a JSON object."""

    reason = "not_an_object"


class SchemaViolation(RecordError):
    """The record does not match the declared schema."""

    reason = "schema"


class BadTimestamp(RecordError):
    """The event time is missing or cannot be read."""

    reason = "bad_timestamp"


class SinkRejected(RecordError):
    """The sink refused the record (for example BigQuery reported an invalid row)."""

    reason = "sink_rejected"
