"""Tests of transforms.dead_letter: the error record, its schema, the Google view."""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import hashlib
import json
import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.dead_letter import (
    DEAD_LETTER_SCHEMA,
    GOOGLE_COLUMNS,
    MAX_MESSAGE_CHARS,
    MAX_PAYLOAD_PREFIX,
    MAX_STACKTRACE_CHARS,
    CountDeadLetters,
    ToDeadLetter,
    error_record,
    failure,
    google_view_sql,
    truncate_payload,
)
from transforms.errors import InvalidJson
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals

ORIGIN = Origin("kafka", topic="events", partition=3, offset=42, key="k1")
MESSAGE = Message(b'{"a": 1', {"z": "2", "a": "1"}, ORIGIN)
KW = dict(pipeline="pipe", step="parse", reason="invalid_json", error_type="InvalidJson")


def _as_json_sink_writes(record: dict) -> dict:
    """What the JSON sinks do: payload bytes as base64, then plain JSON."""
    out = dict(record)
    out["payload_bytes"] = base64.b64encode(record["payload_bytes"]).decode("ascii")
    return json.loads(json.dumps(out))


def test_error_record_for_message() -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    record = error_record(
        MESSAGE,
        **KW,
        error_message="payload is not valid JSON",
        stacktrace="Traceback...",
        event_timestamp=calendar.timegm((2025, 11, 25, 10, 0, 0)) + 0.25,
        retry_count=2,
    )
    after = dt.datetime.now(dt.timezone.utc)
    assert set(record) == set(DEAD_LETTER_SCHEMA.names)
    assert record["pipeline"] == "pipe" and record["step"] == "parse"
    assert record["reason"] == "invalid_json" and record["error_type"] == "InvalidJson"
    assert record["error_message"] == "payload is not valid JSON"
    assert record["stacktrace"] == "Traceback..."
    assert record["payload_bytes"] == b'{"a": 1'
    assert record["payload_string"] == '{"a": 1'
    assert record["attributes"] == [{"key": "a", "value": "1"}, {"key": "z", "value": "2"}]
    assert record["source"] == {
        "system": "kafka",
        "topic": "events",
        "partition": 3,
        "offset": 42,
        "key": "k1",
    }
    assert record["retry_count"] == 2
    assert record["event_timestamp"] == "2025-11-25T10:00:00.250Z"
    stamp = dt.datetime.fromisoformat(record["error_timestamp"].replace("Z", "+00:00"))
    assert before <= stamp <= after


def test_error_record_for_record_uses_its_origin() -> None:
    record = error_record(Record({"parsed": True}, MESSAGE), **KW, error_message="x")
    assert record["payload_bytes"] == MESSAGE.payload
    assert record["source"]["topic"] == "events"
    assert len(record["attributes"]) == 2


@pytest.mark.parametrize(
    "element",
    [
        Record({"b": 1, "a": "é", "when": dt.date(2026, 1, 2)}),
        {"b": 1, "a": "é", "when": dt.date(2026, 1, 2)},
    ],
    ids=["record-without-origin", "dict"],
)
def test_error_record_for_plain_data(element) -> None:
    record = error_record(element, **KW, error_message="x")
    assert json.loads(record["payload_bytes"].decode("utf-8")) == {
        "a": "é",
        "b": 1,
        "when": "2026-01-02",
    }
    assert record["payload_string"] == record["payload_bytes"].decode("utf-8")
    assert record["attributes"] == []
    assert record["source"] is None
    assert record["event_timestamp"] is None
    assert record["retry_count"] == 0


def test_non_utf8_payload_has_no_string() -> None:
    message = MESSAGE._replace(payload=b"\xff\xfe\x00bad")
    record = error_record(message, **KW, error_message="x")
    assert record["payload_bytes"] == b"\xff\xfe\x00bad"
    assert record["payload_string"] is None


def test_long_message_and_stacktrace_are_truncated() -> None:
    long_message = "m" * (MAX_MESSAGE_CHARS * 3)
    long_trace = "t" * (MAX_STACKTRACE_CHARS + 1)
    record = error_record(MESSAGE, **KW, error_message=long_message, stacktrace=long_trace)
    assert len(record["error_message"]) <= MAX_MESSAGE_CHARS
    assert record["error_message"].endswith("[truncated]")
    assert record["error_message"].startswith("m" * (MAX_MESSAGE_CHARS // 2))
    assert len(record["stacktrace"]) <= MAX_STACKTRACE_CHARS
    assert record["stacktrace"].endswith("[truncated]")
    exact = "e" * MAX_MESSAGE_CHARS
    assert error_record(MESSAGE, **KW, error_message=exact)["error_message"] == exact


def test_google_view_sql_has_every_column() -> None:
    sql = google_view_sql("proj.ds.errors", "proj.ds.errors_google")
    assert "`proj.ds.errors_google`" in sql and "`proj.ds.errors`" in sql
    assert sql.startswith("CREATE OR REPLACE VIEW")
    for theirs in ("timestamp", "payloadString", "payloadBytes", "attributes", "errorMessage",
                   "stacktrace"):  # fmt: skip
        ours = GOOGLE_COLUMNS[theirs]
        assert ours in DEAD_LETTER_SCHEMA
        assert re.search(rf"\b{ours} AS {theirs}\b", sql), theirs


@pytest.mark.parametrize(
    "element",
    [MESSAGE, Record({"x": 1}, MESSAGE), {"x": [1, 2]}, MESSAGE._replace(payload=b"\xff")],
    ids=["message", "record", "dict", "binary"],
)
def test_dead_letter_schema_validates_error_record(element) -> None:
    record = error_record(element, **KW, error_message="boom", stacktrace="tb", event_timestamp=0.5)
    DEAD_LETTER_SCHEMA.validator()(_as_json_sink_writes(record))


def test_dead_letter_schema_validates_every_origin_field() -> None:
    origin = Origin(*(["file"] + [None] * (len(Origin._fields) - 1)))
    full = origin._replace(
        message_id="m", publish_time="2026-01-01T00:00:00Z", topic="t", partition=1, offset=2,
        key="k", stream="s", shard="sh", sequence="9", path="/p", line=3,
    )  # fmt: skip
    record = error_record(Message(b"{}", {}, full), **KW, error_message="x")
    assert set(record["source"]) == set(Origin._fields)
    DEAD_LETTER_SCHEMA.validator()(_as_json_sink_writes(record))


def test_dead_letter_schema_to_bigquery() -> None:
    fields = {f["name"]: f for f in DEAD_LETTER_SCHEMA.to_bigquery()}
    assert fields["error_timestamp"]["mode"] == "REQUIRED"
    assert fields["attributes"]["mode"] == "REPEATED"
    assert {f["name"] for f in fields["source"]["fields"]} == set(Origin._fields)


def _fail_on_odd(message: Message) -> Message:
    if int(message.payload) % 2:
        raise InvalidJson(f"odd {int(message.payload)}")
    if int(message.payload) == 4:
        raise KeyError("four")
    return message


def test_to_dead_letter_and_count_in_pipeline() -> None:
    messages = [Message(str(i).encode(), {}, Origin("test", offset=i)) for i in range(6)]
    with beam.Pipeline() as p:
        _, failures = (
            p
            | beam.Create(messages)
            | beam.Map(_fail_on_odd).with_exception_handling(exc_class=Exception)
        )
        errors = failures | ToDeadLetter("pipe", "enrich")
        assert_that(
            errors
            | beam.Map(
                lambda e: (
                    e["source"]["offset"],
                    e["reason"],
                    e["error_type"],
                    e["step"],
                    e["error_message"],
                    "Traceback" in e["stacktrace"] or bool(e["stacktrace"]),
                )
            ),  # fmt: skip
            equal_to(
                [
                    (1, "invalid_json", "InvalidJson", "enrich", "odd 1", True),
                    (3, "invalid_json", "InvalidJson", "enrich", "odd 3", True),
                    (4, "unexpected_error", "KeyError", "enrich", "KeyError('four')", True),
                    (5, "invalid_json", "InvalidJson", "enrich", "odd 5", True),
                ]
            ),
            label="errors",
        )
        counted = errors | CountDeadLetters()
        assert_that(
            counted | beam.Map(lambda r: (type(r).__name__, r.origin, r.data["reason"])),
            equal_to(
                [("Record", None, "invalid_json")] * 3 + [("Record", None, "unexpected_error")]
            ),
            label="counted",
        )
    totals = counter_totals(p.result.metrics())
    assert totals["dead_lettered"] == 4
    assert totals["dead_lettered.invalid_json"] == 3
    assert totals["dead_lettered.unexpected_error"] == 1


@pytest.mark.parametrize("reason", ["too_large", "row_too_large"])
def test_an_oversize_payload_is_carried_as_a_bounded_prefix_with_size_and_hash(
    reason: str,
) -> None:
    payload = b"p" * (MAX_PAYLOAD_PREFIX * 3)
    message = Message(payload, {}, ORIGIN)
    record = error_record(message, **{**KW, "reason": reason, "error_message": "big"})
    assert record["payload_bytes"] == payload[:MAX_PAYLOAD_PREFIX]
    assert record["payload_string"] is None
    assert record["payload_truncated"] is True
    assert record["payload_size"] == len(payload)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    # A failure for another reason keeps the whole payload (it stays replayable).
    whole = error_record(message, **KW, error_message="bad")
    assert whole["payload_bytes"] == payload and whole["payload_truncated"] is False
    assert whole["payload_size"] is None and whole["payload_sha256"] is None
    # A dead-letter row too large for its sink is cut the same way.
    assert truncate_payload(whole) == {
        **record,
        "error_timestamp": whole["error_timestamp"],
        "reason": whole["reason"],
        "error_message": "bad",
    }
    assert truncate_payload(record) is record


def _raise(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("error", "source_shown"),
    [(InvalidJson("odd"), False), (KeyError("four"), True)],
)
def test_a_failure_carries_its_frames_a_record_error_without_source_lines(
    error: Exception, source_shown: bool
) -> None:
    try:
        _raise(error)
    except Exception as exc:
        _, (kind, text, trace) = failure(MESSAGE, exc)
    lines = "".join(trace)
    assert kind is type(error) and text == repr(error)
    assert lines.startswith("Traceback (most recent call last):\n")
    assert ", in _raise\n" in lines and lines.endswith(f"{type(error).__name__}: {error}\n")
    assert ("raise error" in lines) is source_shown
