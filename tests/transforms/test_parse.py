"""Tests of transforms.parse: ParseJson on blocks in real pipelines, parse_message as a property."""

from __future__ import annotations

import calendar
import json
import math
import random
from collections import Counter
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from transforms.blocks import Block
from transforms.errors import (
    BadTimestamp,
    InvalidJson,
    InvalidUtf8,
    NotAnObject,
    RecordError,
    SchemaViolation,
    TooLarge,
)
from transforms.event_time import parse_timestamp
from transforms.message import Message, Origin, Record
from transforms.parse import DEFAULT_MAX_BYTES, EventTime, ParseJson, parse_message
from transforms.schema import Field, Schema

BASE = calendar.timegm((2026, 11, 25, 10, 0, 0))  # 2026-11-25T10:00:00Z

SCHEMA = Schema(
    (
        Field("event_id", "STRING", "REQUIRED"),
        Field("ts", "TIMESTAMP", "REQUIRED"),
        Field("user_id", "STRING"),
        Field("status_code", "INTEGER"),
        Field("amount", "FLOAT"),
        Field("tags", "STRING", "REPEATED"),
        Field("meta", "RECORD", fields=(Field("source", "STRING"), Field("n", "INTEGER"))),
    )
)
MAX_BYTES = 400


def _msg(payload: bytes, line: int, attributes: dict[str, str] | None = None) -> Message:
    return Message(payload, attributes or {}, Origin("file", path="/in/events.jsonl", line=line))


def _event(**changes: Any) -> dict[str, Any]:
    event = {
        "event_id": "e1",
        "ts": "2026-11-25T10:00:00Z",
        "user_id": "u1",
        "status_code": 200,
        "amount": 1.5,
        "tags": ["a"],
        "meta": {"source": "web", "n": 1},
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


def _blocks(messages: list[Message], size: int = 4) -> list[Block]:
    """The messages in blocks of ``size``, as a source reads them."""
    return [Block(messages[i : i + size]) for i in range(0, len(messages), size)]


def _records(blocks: beam.PCollection) -> beam.PCollection:
    """Blocks of Records -> ``(record, event_time)`` pairs (after checking they are Blocks)."""
    return blocks | "Records" >> beam.FlatMap(
        lambda block: (
            [(record, record.event_time) for record in block]
            if isinstance(block, Block)
            else [("not a Block", block)]
        )
    )


# --- EventTime -----------------------------------------------------------------------------


def test_event_time_spec() -> None:
    assert EventTime.parse("ts") == EventTime(field="ts")
    assert EventTime.parse("meta.ts", "ms") == EventTime(field="meta.ts", unit="ms")
    assert EventTime.parse("attribute:published") == EventTime(attribute="published")
    with pytest.raises(ValueError, match="exactly one"):
        EventTime()
    with pytest.raises(ValueError, match="exactly one"):
        EventTime(field="a", attribute="b")
    with pytest.raises(ValueError, match="unit"):
        EventTime(field="a", unit="minutes")


def test_event_time_read() -> None:
    data = {"ts": BASE, "meta": {"ts": "2026-11-25T10:00:00Z", "ms": BASE * 1000}}
    assert EventTime(field="ts").read(data, {}) == BASE
    assert EventTime(field="meta.ts").read(data, {}) == BASE
    assert EventTime(field="meta.ms", unit="ms").read(data, {}) == BASE
    assert EventTime(attribute="t").read({}, {"t": str(BASE)}) == BASE
    for spec, attrs in [("missing", {}), ("ts.deeper", {}), ("meta.nope", {})]:
        with pytest.raises(BadTimestamp):
            EventTime(field=spec).read(data, attrs)
    with pytest.raises(BadTimestamp, match="missing"):
        EventTime(attribute="t").read(data, {})


def test_parse_json_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        ParseJson("p", max_bytes=0)
    with pytest.raises(ValueError, match="unknown_fields"):
        ParseJson("p", unknown_fields="ignore")


# --- parse_message -------------------------------------------------------------------------


def test_parse_message_good_record() -> None:
    message = _msg(_json(_event()), 1)
    assert parse_message(message, SCHEMA, EventTime(field="ts")) == Record(_event(), message, BASE)


def test_parse_message_without_event_time_returns_record() -> None:
    message = _msg(b'{"anything": [1, {"goes": null}]}', 1)
    assert parse_message(message) == Record({"anything": [1, {"goes": None}]}, message)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"x" * (DEFAULT_MAX_BYTES + 1), TooLarge),
        (b'{"event_id": "\xff"}', InvalidUtf8),
        (b"\xff\xfe{}", InvalidUtf8),
        (b'{"event_id": "e1"', InvalidJson),
        (b"", InvalidJson),
        (b"[1, 2]", NotAnObject),
        (b"null", NotAnObject),
        (b'"text"', NotAnObject),
        (_json(_event(status_code="200")), SchemaViolation),
        (_json(_event(ts="yesterday")), BadTimestamp),
        (_json(_event(ts=...)), BadTimestamp),
    ],
)
def test_parse_message_errors(payload: bytes, error: type[RecordError]) -> None:
    with pytest.raises(error):
        parse_message(_msg(payload, 1), SCHEMA, EventTime(field="ts"))


@pytest.mark.parametrize("payload", [b"", b" ", b"\t\r"])
def test_an_empty_payload_is_said_to_be_empty(payload: bytes) -> None:
    with pytest.raises(InvalidJson, match="payload is empty"):
        parse_message(_msg(payload, 1))


@pytest.mark.parametrize(
    "event_time",
    [None, EventTime(attribute="t"), EventTime(field="meta.n")],
    ids=["none", "attribute", "nested-field"],
)
def test_schema_checks_the_timestamp_field_the_event_time_does_not_read(
    event_time: EventTime | None,
) -> None:
    # The schema's TIMESTAMP check is left to the event time's read only when that read is the
    # same (the same top-level field, the unit guessed); otherwise the field is checked.
    data = _event(ts="yesterday", meta={"source": "web", "n": 1764064800000})
    message = _msg(_json(data), 1, {"t": "2026-11-25T10:00:00Z"})
    with pytest.raises(SchemaViolation, match="'ts'"):
        parse_message(message, SCHEMA, event_time)


def test_too_large_is_checked_before_decoding() -> None:
    payload = b"\xff" * 11
    with pytest.raises(TooLarge, match="11 bytes"):
        parse_message(_msg(payload, 1), max_bytes=10)
    with pytest.raises(InvalidUtf8):
        parse_message(_msg(payload, 1), max_bytes=11)


def test_invalid_utf8_message_names_payload_offset() -> None:
    payload = b'{"event_id": "\xff"}'
    offset = payload.index(b"\xff")
    with pytest.raises(InvalidUtf8, match=f"at byte {offset}$"):
        parse_message(_msg(payload, 1))


def test_deeply_nested_json_is_a_record_error() -> None:
    payload = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    try:
        parse_message(_msg(payload, 1))
    except RecordError:
        pass


def test_huge_integer_event_time_is_bad_timestamp() -> None:
    payload = b'{"event_id": "e1", "ts": 1' + b"0" * 400 + b"}"
    with pytest.raises(BadTimestamp):
        parse_message(_msg(payload, 1), SCHEMA, EventTime(field="ts"))


# --- ParseJson in a pipeline ---------------------------------------------------------------


def _error_view(error: dict) -> tuple:
    return (
        error["reason"],
        error["payload_bytes"],
        error["source"]["line"],
        error["source"]["path"],
        error["source"]["system"],
        error["pipeline"],
        error["step"],
        error["event_timestamp"],
    )


def test_parse_json_pipeline_routes_every_reason() -> None:
    good = [
        (_event(), BASE),
        (_event(event_id="e2", ts=BASE * 1000 + 250), BASE + 0.25),
        (_event(event_id="e3", ts="2026-11-25T12:00:00+02:00", amount=None), BASE),
    ]
    bad = [
        ("too_large", _json(_event(user_id="u" * MAX_BYTES))),
        ("invalid_utf8", b'{"event_id": "\xff\xfe", "ts": 1}'),
        ("invalid_utf8", b"\xc3("),
        ("invalid_json", _json(_event())[:-7]),
        ("invalid_json", b""),
        ("not_an_object", _json([_event()])),
        ("not_an_object", b"42"),
        ("schema", _json(_event(status_code="five hundred"))),
        ("schema", _json(_event(surprise=1))),
        ("schema", _json(_event(event_id=...))),
        ("bad_timestamp", _json(_event(ts="yesterday-ish"))),
        ("bad_timestamp", _json(_event(ts=...))),
    ]
    messages = [_msg(_json(event), i + 1) for i, (event, _) in enumerate(good)]
    messages += [_msg(payload, 100 + i, {"k": "v"}) for i, (_, payload) in enumerate(bad)]
    expected_records = [(Record(event, messages[i], ts), ts) for i, (event, ts) in enumerate(good)]
    expected_errors = [
        (reason, payload, 100 + i, "/in/events.jsonl", "file", "pipe", "parse", None)
        for i, (reason, payload) in enumerate(bad)
    ]

    with beam.Pipeline() as p:
        records, errors = (
            p
            | beam.Create(_blocks(messages))
            | ParseJson("pipe", SCHEMA, EventTime(field="ts"), max_bytes=MAX_BYTES)
        )
        assert_that(_records(records), equal_to(expected_records), label="records")
        assert_that(errors | beam.Map(_error_view), equal_to(expected_errors), label="errors")
        details = errors | beam.Map(
            lambda e: (
                e["error_type"],
                bool(e["error_message"]),
                e["attributes"],
                e["payload_string"] == _utf8_or_none(e["payload_bytes"]),
            )
        )
        error_types = {
            "too_large": "TooLarge",
            "invalid_utf8": "InvalidUtf8",
            "invalid_json": "InvalidJson",
            "not_an_object": "NotAnObject",
            "schema": "SchemaViolation",
            "bad_timestamp": "BadTimestamp",
        }
        assert_that(
            details,
            equal_to([(error_types[r], True, [{"key": "k", "value": "v"}], True) for r, _ in bad]),
            label="details",
        )


def _utf8_or_none(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_parse_json_pipeline_attribute_time_nested_and_unknown_fields() -> None:
    schema = Schema((Field("id", "STRING"),))
    messages = [
        _msg(b'{"id": "a", "extra": 1}', 1, {"published": str(BASE * 1000)}),
        _msg(b'{"id": "b"}', 2, {}),  # no attribute -> bad_timestamp
    ]
    for mode, expected_data in [("drop", {"id": "a"}), ("keep", {"id": "a", "extra": 1})]:
        with beam.Pipeline() as p:
            records, errors = (
                p
                | beam.Create(_blocks(messages))
                | ParseJson(
                    "pipe",
                    schema,
                    EventTime(attribute="published", unit="ms"),
                    unknown_fields=mode,
                )
            )
            assert_that(
                _records(records),
                equal_to([(Record(expected_data, messages[0], BASE), BASE)]),
                label="records",
            )
            assert_that(
                errors | beam.Map(lambda e: (e["reason"], e["source"]["line"])),
                equal_to([("bad_timestamp", 2)]),
                label="errors",
            )


def _with_ts(element: Any, ts: Any = beam.DoFn.TimestampParam) -> tuple[Any, float]:
    return element, float(ts)


def test_parse_json_without_event_time_keeps_the_block_timestamp() -> None:
    messages = [_msg(b'{"a": 1}', 1), _msg(b"[]", 2)]
    with beam.Pipeline() as p:
        blocks = (
            p
            | beam.Create([(Block(messages), BASE + 1)])
            | beam.Map(lambda pair: TimestampedValue(*pair))
        )
        records, errors = blocks | ParseJson("pipe")
        assert_that(
            records | beam.Map(_with_ts),
            equal_to([(Block([Record({"a": 1}, messages[0])]), BASE + 1)]),
            label="records",
        )
        # Without an event time, a failure's event timestamp is its block's, formatted.
        assert_that(
            errors | beam.Map(lambda e: (e["reason"], e["event_timestamp"])),
            equal_to([("not_an_object", "2026-11-25T10:00:01Z")]),
            label="errors",
        )


def test_parse_json_pipeline_reasons_for_pathological_payloads() -> None:
    messages = [
        _msg(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", 1),
        _msg(b'{"event_id": "e1", "ts": 1' + b"0" * 400 + b"}", 2),
    ]
    with beam.Pipeline() as p:
        _, errors = (
            p | beam.Create(_blocks(messages)) | ParseJson("pipe", None, EventTime(field="ts"))
        )
        assert_that(
            errors | beam.Map(lambda e: e["reason"] != "unexpected_error"),
            equal_to([True, True]),
        )


# --- the property: every payload is a valid record or a RecordError ------------------------

_FIELDS = list(SCHEMA.names)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2026-11-25T10:00:00Z", "1764064800", "", "nan", "2026-02-30T00:00:00Z"]),
)
_GARBAGE = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
_VALID_EVENTS = st.builds(
    lambda i, ts, user, code, amount, tags, meta: {
        "event_id": f"e{i}",
        "ts": ts,
        "user_id": user,
        "status_code": code,
        "amount": amount,
        "tags": tags,
        "meta": meta,
    },
    st.integers(0, 10**6),
    st.one_of(
        st.integers(0, 4_000_000_000),
        st.integers(0, 4_000_000_000_000),
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
        st.floats(0, 4e9),
    ),
    st.one_of(st.none(), st.text(max_size=10)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3)),
    st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {}, optional={"source": st.text(max_size=5), "n": st.integers(-100, 100)}
        ),
    ),
)


@st.composite
def _mutated_payloads(draw) -> bytes:
    event = draw(_VALID_EVENTS)
    value: Any = event
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "retype", "huge", "garbage", "unknown", "wrap", "pad"]))
        if not isinstance(value, dict):
            break
        if op == "drop" and value:
            value.pop(draw(st.sampled_from(sorted(value))))
        elif op == "retype":
            value[draw(st.sampled_from(_FIELDS))] = draw(_SCALARS)
        elif op == "huge":
            names = [n for n in _FIELDS if n != "ts"]  # see the OverflowError bug above
            exponent = draw(st.integers(15, 400))
            value[draw(st.sampled_from(names))] = draw(st.sampled_from([1, -1])) * 10**exponent
        elif op == "garbage":
            value[draw(st.sampled_from(_FIELDS + ["meta_x"]))] = draw(_GARBAGE)
        elif op == "unknown":
            value[draw(st.text(min_size=1, max_size=8))] = draw(_SCALARS)
        elif op == "wrap":
            value = [value] if draw(st.booleans()) else {"wrapped": value}
        elif op == "pad":
            value["user_id"] = "x" * draw(st.integers(0, 2 * MAX_BYTES))
    payload = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8")
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["truncate", "bad_utf8", "flip", "splice_number"]))
        at = draw(st.integers(0, len(payload)))
        if op == "truncate":
            payload = payload[:at]
        elif op == "bad_utf8":
            junk = draw(
                st.sampled_from(
                    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
                )
            )
            payload = payload[:at] + junk + payload[at:]
        elif op == "flip" and payload:
            at = min(at, len(payload) - 1)
            payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1 :]
        elif op == "splice_number":
            payload = (
                payload[:at]
                + draw(st.sampled_from([b"1e400", b"NaN", b"-0", b"01"]))
                + payload[at:]
            )
    return payload


PAYLOADS = st.one_of(st.binary(max_size=300), _mutated_payloads())


def _strict_json(text: str) -> Any:
    """The standard library's reading of strict JSON (no NaN, no infinities, no lone surrogates)."""

    def no_constant(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number

    value = json.loads(text, parse_constant=no_constant, parse_float=finite)

    def check(node: Any) -> None:
        if isinstance(node, str):
            node.encode("utf-8")  # raises on lone surrogates
        elif isinstance(node, list):
            for item in node:
                check(item)
        elif isinstance(node, dict):
            for key, item in node.items():
                check(key)
                check(item)

    check(value)
    return value


def _expected_reason(payload: bytes) -> tuple[str | None, Any]:
    """An independent classification of a payload: (reason or None, decoded data)."""
    if len(payload) > MAX_BYTES:
        return "too_large", None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        data = _strict_json(text)
    except ValueError:  # JSONDecodeError and UnicodeEncodeError are ValueErrors
        return "invalid_json", None
    if not isinstance(data, dict):
        return "not_an_object", None
    try:
        parse_timestamp(data.get("ts"))
    except BadTimestamp:
        return "bad_timestamp", None
    try:
        SCHEMA.validator()(json.loads(text))
    except SchemaViolation:
        return "schema", None
    return None, data


# 300 examples, and the explicit ones for the rarest outcome, reach every outcome (the ``event``
# statistics of ``--hypothesis-show-statistics``) in a few seconds; 3000 took most of a minute
# of the suite and found nothing more.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(payload=PAYLOADS, line=st.integers(1, 10**6))
@example(payload=json.dumps([{"event_id": "e1", "ts": BASE}]).encode(), line=1)
@example(payload=b'"a string"', line=2)
def test_parse_message_property(payload: bytes, line: int) -> None:
    message = _msg(payload, line)
    expected_reason, expected_data = _expected_reason(payload)
    event(f"outcome: {expected_reason or 'record'}")
    try:
        result = parse_message(message, SCHEMA, EventTime(field="ts"), max_bytes=MAX_BYTES)
    except RecordError as exc:
        assert exc.reason == expected_reason, (exc, payload)
        return
    # Anything else than RecordError propagates and fails the test.
    assert expected_reason is None, payload
    assert isinstance(result, Record)
    assert result.origin == message
    assert result.data == expected_data
    SCHEMA.validator()(json.loads(json.dumps(result.data)))
    assert result.event_time == parse_timestamp(result.data["ts"])


def _random_payloads(rng: random.Random, n: int) -> list[bytes]:
    """Valid, mutated and random payloads for the pipeline-level property."""
    payloads = []
    for i in range(n):
        event = _event(event_id=f"e{i}", ts=BASE + rng.randrange(86400))
        kind = rng.randrange(9)
        if kind == 0:
            payload = rng.randbytes(rng.randrange(40))
        elif kind == 1:
            payload = _json(event)[: rng.randrange(len(_json(event)))]
        elif kind == 2:
            raw = _json(event)
            at = rng.randrange(len(raw))
            payload = raw[:at] + b"\xff" + raw[at:]
        elif kind == 3:
            payload = _json([event])
        elif kind == 4:
            payload = _json({**event, "status_code": str(rng.random())})
        elif kind == 5:
            payload = _json({**event, "ts": rng.choice([None, "soon", [1], {"t": 1}, True])})
        elif kind == 6:
            payload = _json({**event, "user_id": "x" * MAX_BYTES})
        elif kind == 7:
            payload = _json(rng.choice([_event(), event]))  # duplicates on purpose
        else:
            payload = _json(event)
        payloads.append(payload)
    return payloads


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_parse_json_pipeline_property(seed: int) -> None:
    payloads = _random_payloads(random.Random(seed), 300)
    messages = [_msg(payload, i + 1) for i, payload in enumerate(payloads)]
    outcome = [_expected_reason(p)[0] for p in payloads]
    expected_good = [p for p, reason in zip(payloads, outcome, strict=True) if reason is None]
    expected_bad = [
        (p, reason) for p, reason in zip(payloads, outcome, strict=True) if reason is not None
    ]
    assert expected_good and expected_bad
    assert len(set(outcome)) >= 6  # the generator reaches most reasons

    with beam.Pipeline() as p:
        records, errors = (
            p
            | beam.Create(_blocks(messages, 64))
            | ParseJson("pipe", SCHEMA, EventTime(field="ts"), max_bytes=MAX_BYTES)
        )
        record_bytes = records | "RecordBytes" >> beam.FlatMap(
            lambda block: [r.origin.payload for r in block]
        )
        error_bytes = errors | "ErrorBytes" >> beam.Map(lambda e: e["payload_bytes"])
        # Every input exactly once across both outputs (multisets of payload bytes).
        everything = (record_bytes, error_bytes) | beam.Flatten()
        assert_that(everything, equal_to(payloads), label="all")
        count = everything | beam.combiners.Count.Globally()
        assert_that(count, equal_to([len(messages)]), label="count")
        assert_that(record_bytes, equal_to(expected_good), label="good")
        assert_that(
            errors | beam.Map(lambda e: (e["payload_bytes"], e["reason"])),
            equal_to(expected_bad),
            label="bad",
        )
    assert sum(Counter(outcome).values()) == len(payloads)


# --- one path: a stream parses as a file does ------------------------------------------------

# What each run parsed, by run name; module level, so that the runners' copies add to it.
_PARSED: dict[str, list[Any]] = {}


def _keep_block(block: list[Record], run: str) -> None:
    """Keeps ``("block", size)`` and each record with its event time."""
    _PARSED[run].append(("block", type(block).__name__, len(block)))
    _PARSED[run].extend(("record", record, record.event_time) for record in block)


def _keep_error(error: dict[str, Any], run: str) -> None:
    """Keeps a dead letter without what differs between runs (when, the stack, the time)."""
    skipped = ("error_timestamp", "stacktrace", "event_timestamp")
    _PARSED[run].append(
        ("error", sorted((k, repr(v)) for k, v in error.items() if k not in skipped))
    )


def _parse_into(run: str, messages: beam.PCollection) -> None:
    records, errors = messages | ParseJson("pipe", SCHEMA, EventTime(field="ts"), MAX_BYTES)
    _ = records | "Keep records" >> beam.Map(_keep_block, run)
    _ = errors | "Keep errors" >> beam.Map(_keep_error, run)


def _stream_lines() -> list[bytes]:
    """Good events and bad lines, interleaved.

    (A line over the size limit is left out: a file read keeps only its prefix and hash, see
    `transforms.io.lines`, where a stream's message comes whole.)
    """
    bad = [b"{broken", b"[1]", b"\xff\xfe", _json(_event(ts="yesterday")),
           _json(_event(status_code="x"))]  # fmt: skip
    lines = []
    for n in range(60):
        lines.append(_json(_event(event_id=f"e{n}", ts=BASE + n)))
        if n % 12 == 0:
            lines.append(bad[n // 12])
    return lines


def test_a_stream_of_one_message_per_element_parses_into_the_blocks_of_a_file_read(
    tmp_path: Any,
) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
    from apache_beam.testing.test_stream import TestStream

    from transforms.blocks import Batch
    from transforms.io.registry import make_source

    lines = _stream_lines()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    messages = [
        Message(line, {}, Origin("file", path=str(path), line=n)) for n, line in enumerate(lines, 1)
    ]
    _PARSED.update(file=[], create=[], stream=[])

    with beam.Pipeline() as p:  # the FnApiRunner
        _parse_into("file", p | make_source(f"file://{path}", max_payload_bytes=MAX_BYTES))
    with beam.Pipeline() as p:  # one element per message, as a stream's read gives them
        _parse_into("create", p | beam.Create(messages, reshuffle=False) | Batch())
    stream = TestStream()
    for start in range(0, len(messages), 20):  # several bundles, the watermark moving on
        stream = stream.add_elements(
            [TimestampedValue(m, BASE + start) for m in messages[start : start + 20]]
        ).advance_watermark_to(BASE + start + 1)
    options = PipelineOptions(streaming=True)
    with beam.Pipeline(runner=BundleBasedDirectRunner(), options=options) as p:
        _parse_into("stream", p | stream.advance_watermark_to_infinity() | Batch())

    def outputs(run: str, kind: str) -> list[Any]:
        return sorted((item[1:] for item in _PARSED[run] if item[0] == kind), key=repr)

    expected_records = outputs("file", "record")
    expected_errors = outputs("file", "error")
    assert len(expected_records) == 60 and len(expected_errors) == 5
    assert {size for _, size in outputs("file", "block")} == {60}
    for run in ("create", "stream"):
        assert outputs(run, "record") == expected_records, run
        assert outputs(run, "error") == expected_errors, run
        blocks = outputs(run, "block")
        assert {kind for kind, _ in blocks} == {"Block"}
        # The messages of a bundle travel together: fewer blocks than records.
        assert sum(size for _, size in blocks) == 60 and len(blocks) < 60, (run, blocks)
