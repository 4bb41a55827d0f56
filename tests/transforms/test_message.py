"""The envelope types: immutable, untracked by the cyclic collector, with named-tuple methods."""

from __future__ import annotations

import gc
import pickle

import msgspec
import pytest

from transforms.message import Message, Origin, Oversize, Record

ORIGIN = Origin("pubsub", message_id="7", publish_time="2026-11-25T10:00:00.250Z")
MESSAGE = Message(b'{"a": 1}', {"producer": "x"}, ORIGIN)


def test_blocks_of_them_give_the_collector_nothing_to_track() -> None:
    record = Record({"a": 1, "nested": {"b": [1, 2]}}, MESSAGE, 1.5)
    for value in (ORIGIN, Oversize(10, "ab"), MESSAGE, record):
        assert not gc.is_tracked(value)
    assert gc.is_tracked(record.data)  # a dict holding a dict stays the collector's


def test_they_keep_the_named_tuple_methods_the_suite_uses() -> None:
    record = Record({"a": 1}, MESSAGE)
    assert Record._fields == ("data", "origin", "event_time")
    assert record._fields == Record._fields
    assert record._replace(event_time=2.0) == Record({"a": 1}, MESSAGE, 2.0)
    assert record.event_time is None  # the original is unchanged
    assert MESSAGE._asdict() == {
        "payload": b'{"a": 1}',
        "attributes": {"producer": "x"},
        "origin": ORIGIN,
        "oversize": None,
    }
    assert ORIGIN.to_dict() == {
        "system": "pubsub",
        "message_id": "7",
        "publish_time": "2026-11-25T10:00:00.250Z",
    }


def test_they_are_immutable_and_pickle_whole() -> None:
    record = Record({"a": 1}, MESSAGE, 1.5)
    with pytest.raises(AttributeError):
        record.event_time = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps([record], pickle.HIGHEST_PROTOCOL)) == [record]
    assert hash(ORIGIN) == hash(msgspec.structs.replace(ORIGIN))
