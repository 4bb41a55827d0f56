"""One dead-letter record for every step of every pipeline.

A failed element becomes a dict of this shape (the BigQuery schema is `DEAD_LETTER_SCHEMA`)::

    {
      "error_timestamp": "2026-11-25T10:00:01.250Z",   # when it failed
      "event_timestamp": "2026-11-25T09:59:58Z",       # the element's event time, or None
      "pipeline": "events_to_bigquery", "step": "parse",
      "reason": "invalid_json",                        # short code, one per failure kind
      "error_type": "InvalidJson", "error_message": "...", "stacktrace": "...",
      "payload_bytes": b"...",                         # the original bytes (a prefix if truncated)
      "payload_string": "...",                         # best-effort UTF-8, or None
      "payload_truncated": False,                      # True: payload_bytes holds a prefix
      "payload_size": None, "payload_sha256": None,    # the whole payload's, when truncated
      "attributes": [{"key": "k", "value": "v"}],
      "source": {"system": "file", "path": "/in.jsonl", "line": 7},
      "retry_count": 0,
    }

A payload too large to carry (reasons in `TRUNCATED_REASONS`, or a message the source did not
keep whole, `Message.oversize`) is cut to its first `MAX_PAYLOAD_PREFIX` bytes, with
``payload_truncated`` set, its full size and SHA-256, and no ``payload_string``, so a dead-letter
record stays small whatever the payload.

Sinks that write JSON encode ``payload_bytes`` as base64. `GOOGLE_COLUMNS` maps the record onto
the error table of Google's ``PubSub_to_BigQuery_Flex`` template, and `google_view_sql` builds a
view with those column names so existing error-table readers keep working.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.blocks import Block
from transforms.errors import RecordError
from transforms.event_time import format_timestamp
from transforms.io.endpoint import redact
from transforms.message import Message, Origin, Oversize, Record
from transforms.metrics import DEAD_LETTERED, ReasonCounters
from transforms.schema import Field, Schema

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "FAILED",
    "GOOGLE_COLUMNS",
    "MAX_PAYLOAD_PREFIX",
    "REPLAY_ATTRIBUTES",
    "REPLAY_COUNT",
    "REPLAY_ID",
    "REPLAY_OF",
    "TRUNCATED_REASONS",
    "CountDeadLetters",
    "ToDeadLetter",
    "error_record",
    "failure",
    "google_view_sql",
    "map_block",
    "refused",
    "truncate_payload",
]

MAX_MESSAGE_CHARS = 4_000
MAX_STACKTRACE_CHARS = 16_000
MAX_PAYLOAD_PREFIX = 64 * 1024
TRUNCATED_REASONS = frozenset({"too_large", "row_too_large"})
"""Reasons whose payload is cut to `MAX_PAYLOAD_PREFIX` bytes when it is longer."""

# The attributes (Kafka headers) a replayed message carries (see `pipelines.catalog.dlq_replay`):
# how many times it was replayed, the id of the dead letter it was first replayed from, and the
# id of this replay (that dead letter's id and the count). A replayed message that fails again
# keeps them in its dead letter's ``attributes``, and its ``retry_count`` is the count: the new
# dead letter points to the first one, with the original bytes, never a dead letter nested in one.
REPLAY_COUNT = "dlq_replay_count"
REPLAY_OF = "dlq_replay_of"
REPLAY_ID = "dlq_replay_id"
REPLAY_ATTRIBUTES = (REPLAY_COUNT, REPLAY_OF, REPLAY_ID)

DEAD_LETTER_SCHEMA = Schema(
    (
        Field("error_timestamp", "TIMESTAMP", "REQUIRED"),
        Field("event_timestamp", "TIMESTAMP"),
        Field("pipeline", "STRING", "REQUIRED"),
        Field("step", "STRING", "REQUIRED"),
        Field("reason", "STRING", "REQUIRED"),
        Field("error_type", "STRING"),
        Field("error_message", "STRING"),
        Field("stacktrace", "STRING"),
        Field("payload_bytes", "BYTES"),
        Field("payload_string", "STRING"),
        Field("payload_truncated", "BOOLEAN"),
        Field("payload_size", "INTEGER"),
        Field("payload_sha256", "STRING"),
        Field(
            "attributes", "RECORD", "REPEATED", (Field("key", "STRING"), Field("value", "STRING"))
        ),
        Field(
            "source",
            "RECORD",
            fields=tuple(
                Field(name, "INTEGER" if name in ("partition", "offset", "line") else "STRING")
                for name in Origin._fields
            ),
        ),
        Field("retry_count", "INTEGER"),
    )
)

# Google's error-table column -> the dead-letter field it is read from.
GOOGLE_COLUMNS = {
    "timestamp": "error_timestamp",
    "payloadString": "payload_string",
    "payloadBytes": "payload_bytes",
    "attributes": "attributes",
    "errorMessage": "error_message",
    "stacktrace": "stacktrace",
}


def google_view_sql(table: str, view: str) -> str:
    """Returns DDL for a view over a dead-letter table with Google's template column names.

    Args:
        table: the dead-letter table, ``project.dataset.table``.
        view: the view to create, ``project.dataset.view``.

    """
    columns = ", ".join(f"{ours} AS {theirs}" for theirs, ours in GOOGLE_COLUMNS.items())
    return f"CREATE OR REPLACE VIEW `{view}` AS SELECT {columns} FROM `{table}`"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "...[truncated]"


def _payload_of(element: Any) -> tuple[bytes, dict[str, str], Origin | None, Oversize | None]:
    """Finds the original bytes, attributes, origin and oversize of a failed element."""
    if isinstance(element, Message):
        return element.payload, element.attributes, element.origin, element.oversize
    if isinstance(element, Record):
        if element.origin is not None:
            return _payload_of(element.origin)
        element = element.data
    text = json.dumps(element, default=str, sort_keys=True, ensure_ascii=False)
    return text.encode("utf-8"), {}, None, None


def error_record(
    element: Any,
    *,
    pipeline: str,
    step: str,
    reason: str,
    error_type: str,
    error_message: str,
    stacktrace: str = "",
    event_timestamp: float | None = None,
    retry_count: int | None = None,
) -> dict[str, Any]:
    """Builds the dead-letter record for a failed element.

    Args:
        element: what failed: a `Message`, a `Record` (its origin message is used) or any
            JSON-like value (encoded as JSON for the payload).
        pipeline: the pipeline's name.
        step: the step that failed, e.g. ``parse`` or ``sink``.
        reason: a short reason code such as ``invalid_json`` or ``sink_rejected``.
        error_type: the exception's class name.
        error_message: what went wrong, for a person (secrets are redacted).
        stacktrace: the formatted traceback, if any (secrets redacted).
        event_timestamp: the element's event time in epoch seconds, if known.
        retry_count: how many times this element was replayed before; by default the
            message's `REPLAY_COUNT` attribute, when it has one, else 0.

    Returns:
        A dict of the shape documented in this module.

    """
    payload, attributes, origin, oversize = _payload_of(element)
    if oversize is None and reason in TRUNCATED_REASONS and len(payload) > MAX_PAYLOAD_PREFIX:
        oversize = Oversize(len(payload), hashlib.sha256(payload).hexdigest())
    payload_string: str | None = None
    if oversize is not None:
        payload = payload[:MAX_PAYLOAD_PREFIX]
    else:
        try:
            payload_string = payload.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {
        "error_timestamp": format_timestamp(time.time()),
        "event_timestamp": None if event_timestamp is None else format_timestamp(event_timestamp),
        "pipeline": pipeline,
        "step": step,
        "reason": reason,
        "error_type": error_type,
        "error_message": _truncate(redact(error_message), MAX_MESSAGE_CHARS),
        "stacktrace": _truncate(redact(stacktrace), MAX_STACKTRACE_CHARS),
        "payload_bytes": payload,
        "payload_string": payload_string,
        "payload_truncated": oversize is not None,
        "payload_size": None if oversize is None else oversize.size,
        "payload_sha256": None if oversize is None else oversize.sha256,
        "attributes": [{"key": k, "value": v} for k, v in sorted(attributes.items())],
        "source": origin.to_dict() if origin is not None else None,
        "retry_count": _replay_count(attributes) if retry_count is None else retry_count,
    }


def _replay_count(attributes: dict[str, str]) -> int:
    """The `REPLAY_COUNT` attribute of a replayed message (0 when absent or not a count)."""
    text = attributes.get(REPLAY_COUNT, "")
    return int(text) if text.isdigit() and len(text) < 10 else 0


def refused(
    record: Any, *, pipeline: str, step: str, error: RecordError, event_time: float | None
) -> dict[str, Any]:
    """The dead-letter record of a record a step refused with a `RecordError` (its reason)."""
    return error_record(
        record,
        pipeline=pipeline,
        step=step,
        reason=error.reason,
        error_type=type(error).__name__,
        error_message=str(error),
        event_timestamp=event_time,
    )


def truncate_payload(record: dict[str, Any]) -> dict[str, Any]:
    """Returns a dead-letter dict whose payload is cut to `MAX_PAYLOAD_PREFIX` bytes.

    The cut payload is marked as `error_record` marks it (``payload_truncated``, the whole
    payload's ``payload_size`` and ``payload_sha256``, no ``payload_string``); a record whose
    payload is not longer comes back unchanged. For a sink that cannot write a record that large.
    """
    payload = record.get("payload_bytes") or b""
    if len(payload) <= MAX_PAYLOAD_PREFIX:
        return record
    return {
        **record,
        "payload_bytes": payload[:MAX_PAYLOAD_PREFIX],
        "payload_string": None,
        "payload_truncated": True,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }


def failure(element: Any, exc: BaseException) -> tuple[Any, tuple[type, str, list[str]]]:
    """Returns the failure of ``element`` in the shape of Beam's dead-letter output.

    That shape, ``(element, (exception_type, repr(exception), traceback_lines))``, is what
    ``with_exception_handling`` emits and `ToDeadLetter` reads; steps that catch failures
    themselves use this to emit the same.
    """
    return element, (type(exc), repr(exc), _trace(exc))


def _trace(exc: BaseException) -> list[str]:
    """The traceback lines of ``exc``; a `RecordError`'s without source lines.

    A `RecordError` is a record's expected refusal (a reason of its own), raised by the suite's
    code at a known place: its frames (file, line, function) say enough, and reading the source
    lines (a file check per frame) would cost more than the whole step's work on a record.
    """
    if not isinstance(exc, RecordError):
        return traceback.format_exception(exc)
    frames = [
        f'  File "{frame.f_code.co_filename}", line {line}, in {frame.f_code.co_name}\n'
        for frame, line in traceback.walk_tb(exc.__traceback__)
    ]
    return ["Traceback (most recent call last):\n", *frames, *traceback.format_exception_only(exc)]


# The tagged output of the failures a block step catches itself (see `map_block`).
FAILED = "failed"


def map_block(
    block: Iterable[Any],
    function: Callable[[Any], Any],
    catch: type[BaseException] | tuple[type[BaseException], ...] = Exception,
) -> tuple[Block, list[TaggedOutput]]:
    """Applies ``function`` to every element of a block, catching its failures.

    Returns:
        ``(results, failures)``: the Block of ``function``'s results (``None`` results left
        out, for elements the step drops), and a `FAILED` output (see `failure`) per element
        on which ``function`` raised ``catch``.
    """
    results = Block()
    failures = []
    for element in block:
        try:
            result = function(element)
        except catch as exc:
            failures.append(TaggedOutput(FAILED, failure(element, exc)))
            continue
        if result is not None:
            results.append(result)
    return results, failures


class _ToDeadLetterFn(beam.DoFn):
    def __init__(self, pipeline: str, step: str) -> None:
        self._pipeline = pipeline
        self._step = step

    def process(
        self, failure: tuple[Any, tuple[type, str, list[str]]], ts=beam.DoFn.TimestampParam
    ) -> Iterable[dict[str, Any]]:
        element, (exc_type, message, trace) = failure
        reason = exc_type.reason if issubclass(exc_type, RecordError) else "unexpected_error"
        event_time = element.event_time if isinstance(element, Record) else None
        if event_time is None and ts > MIN_TIMESTAMP:
            event_time = float(Timestamp.of(ts))
        yield error_record(
            element,
            pipeline=self._pipeline,
            step=self._step,
            reason=reason,
            error_type=exc_type.__name__,
            error_message=message,
            stacktrace="".join(trace),
            event_timestamp=event_time,
        )


class ToDeadLetter(beam.PTransform):
    """Turns the failures of ``with_exception_handling`` into dead-letter records.

    Input elements are ``(element, (exception_type, message, traceback_lines))``, the shape of
    Beam's dead-letter output; output elements are dicts of this module's shape. The reason is
    the exception's ``reason`` (see `transforms.errors`), or ``unexpected_error``; the event
    timestamp is a `Record`'s ``event_time``, else the failure's element timestamp.

    Args:
        pipeline: the pipeline's name, written into every record.
        step: the step whose failures these are.

    """

    def __init__(self, pipeline: str, step: str) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._step = step

    def expand(self, failures: beam.PCollection) -> beam.PCollection:
        return failures | beam.ParDo(_ToDeadLetterFn(self._pipeline, self._step))


class _CountDeadLettersFn(beam.DoFn):
    def setup(self) -> None:
        self._counters = ReasonCounters(DEAD_LETTERED)

    def process(self, record: dict[str, Any]) -> Iterable[Record]:
        self._counters.inc(record["reason"])
        yield Record(record)


class CountDeadLetters(beam.PTransform):
    """Counts dead-letter records by reason and wraps them as `Record`s for a sink.

    Input: dead-letter dicts. Output: ``Record(data=dead_letter_dict, origin=None)``.
    """

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | beam.ParDo(_CountDeadLettersFn())
