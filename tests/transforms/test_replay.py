"""Dead letters read back: their ids, the selection, the replay plan and the sinks of messages."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support import run_sink
from transforms.dead_letter import (
    DEAD_LETTER_SCHEMA,
    REPLAY_COUNT,
    REPLAY_ID,
    REPLAY_OF,
    error_record,
)
from transforms.expressions import Expression
from transforms.io.base import SinkContext
from transforms.io.endpoint import Endpoint
from transforms.io.files import FileSink
from transforms.message import Message, Origin, Record
from transforms.replay import (
    NotADeadLetter,
    Selection,
    _replay,
    dead_letter_id,
    decode,
    park_reason,
    replay_id,
)

PAYLOAD = b'{"id": 1, "amount": "x"}'


def _letter(message: Message, reason: str = "schema") -> dict[str, Any]:
    return error_record(
        message, pipeline="events_to_bigquery", step="parse", reason=reason,
        error_type="SchemaViolation", error_message="amount: not a number",
    )  # fmt: skip


def _as_written(letter: dict[str, Any]) -> dict[str, Any]:
    """The dead letter as a file or Pub/Sub sink writes it and a source reads it back."""
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(letter))
    return result


def _as_table_row(letter: dict[str, Any]) -> dict[str, Any]:
    """The dead letter as the bigquery:// source reads it: every column, times as datetimes."""
    row = _as_written(letter)
    at = dt.datetime.fromisoformat(row["error_timestamp"].replace("Z", "+00:00"))
    source = dict.fromkeys(Origin._fields) | (row["source"] or {})
    names = [field.name for field in DEAD_LETTER_SCHEMA.fields]
    row = {name: row.get(name) for name in names} | {"source": source}
    return _as_written(row | {"error_timestamp": at})


ORIGINAL = Message(PAYLOAD, {"origin": "web"}, Origin("pubsub", message_id="17"))
ORIGIN = Origin("file", path="/in.jsonl", line=1)


def test_a_dead_letter_has_the_same_id_in_a_file_and_in_a_table() -> None:
    letter = _letter(ORIGINAL)
    from_file, from_table = decode(_as_written(letter)), decode(_as_table_row(letter))
    assert from_file["payload_bytes"] == from_table["payload_bytes"] == PAYLOAD
    assert dead_letter_id(from_file) == dead_letter_id(from_table)
    other = decode(_as_written(_letter(ORIGINAL, reason="invalid_json")))
    assert dead_letter_id(other) != dead_letter_id(from_file)


def test_a_replay_that_fails_again_points_to_the_first_dead_letter() -> None:
    first = decode(_as_written(_letter(ORIGINAL)))
    original = dead_letter_id(first)
    replayed = _replay(first, None)
    message = replayed.origin
    assert message is not None and message.payload == PAYLOAD
    assert message.attributes == {
        "origin": "web", REPLAY_COUNT: "1", REPLAY_OF: original, REPLAY_ID: f"{original}:1"
    }  # fmt: skip
    assert message.origin == ORIGINAL.origin
    # It fails again: the dead letter holds the original bytes, the count and the ids ...
    again = decode(_as_written(_letter(message)))
    assert again["payload_bytes"] == PAYLOAD and again["retry_count"] == 1
    # ... and its next replay is the second of the first dead letter's chain.
    assert replay_id(again) == f"{original}:2"
    second = _replay(again, None).origin
    assert second is not None and second.attributes[REPLAY_ID] == f"{original}:2"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"reason": "x"}, "'pipeline'"),
        ({**_as_written(_letter(ORIGINAL)), "payload_bytes": "not base64!"}, "base64"),
        ({**_as_written(_letter(ORIGINAL)), "payload_bytes": None}, "payload_bytes"),
        ({**_as_written(_letter(ORIGINAL)), "attributes": {"a": "b"}}, "attributes"),
        ({**_as_written(_letter(ORIGINAL)), "attributes": [{"key": "n", "value": 5}]}, "text"),
        ({**_as_written(_letter(ORIGINAL)), "retry_count": -1}, "retry_count"),
        ({**_as_written(_letter(ORIGINAL)), "source": {"path": "/x"}}, "system"),
    ],
)
def test_what_is_not_a_dead_letter_is_refused(data: dict[str, Any], why: str) -> None:
    with pytest.raises(NotADeadLetter, match=why):
        decode(data)


def test_a_selection_picks_by_reason_step_pipeline_time_and_expression() -> None:
    letter = decode(_as_written(_letter(ORIGINAL)))
    failed = msgspec.json.decode(msgspec.json.encode(dt.datetime.now(dt.timezone.utc)))
    at = dt.datetime.fromisoformat(failed.replace("Z", "+00:00")).timestamp()
    assert Selection()(letter)
    assert Selection(reasons=frozenset({"schema", "other"}))(letter)
    assert not Selection(reasons=frozenset({"invalid_json"}))(letter)
    assert not Selection(steps=frozenset({"sink"}))(letter)
    assert not Selection(pipelines=frozenset({"sessionize"}))(letter)
    assert Selection(since=at - 60, until=at + 60)(letter)
    assert not Selection(since=at + 60)(letter)
    assert not Selection(until=at - 60)(letter)
    assert Selection(where=Expression("source.message_id == '17' and retry_count < 1"))(letter)
    assert not Selection(where=Expression("error_type == 'InvalidJson'"))(letter)
    with pytest.raises(ValueError, match="empty"):
        Selection(since=at, until=at)


def test_cut_payloads_and_dead_letters_replayed_enough_are_parked() -> None:
    letter = decode(_as_written(_letter(ORIGINAL)))
    assert park_reason(letter, 3) is None
    assert park_reason({**letter, "retry_count": 3}, 3) == "max_replays"
    assert park_reason({**letter, "payload_truncated": True}, 3) == "truncated"
    # A size or hash that is not the payload's: what is kept is not the whole message.
    whole = hashlib.sha256(letter["payload_bytes"]).hexdigest()
    assert park_reason({**letter, "payload_size": len(letter["payload_bytes"])}, 3) is None
    assert park_reason({**letter, "payload_sha256": whole}, 3) is None
    assert park_reason({**letter, "payload_size": 999_999}, 3) == "truncated"
    assert park_reason({**letter, "payload_sha256": "0" * 64}, 3) == "truncated"


def test_a_file_sink_of_original_messages_writes_each_payload_as_a_line(tmp_path: Path) -> None:
    context = SinkContext("dlq_replay", raw=True)
    sink = FileSink(Endpoint.parse(f"file://{tmp_path}"), context)
    records = [Record({"replay_id": str(n)}, Message(b"line %d" % n, {}, ORIGIN)) for n in (1, 2)]
    counters = run_sink(records, sink)
    assert counters["written"] == 2
    lines = b"".join(path.read_bytes() for path in tmp_path.glob("*.jsonl")).splitlines()
    assert sorted(lines) == [b"line 1", b"line 2"]
