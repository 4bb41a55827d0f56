"""Dead letters read back, selected, and turned into the original messages again.

A dead letter read from a dead-letter sink (a file, a table, a topic) reaches these steps as a
`Record` whose data is the dead letter as JSON (``payload_bytes`` as base64, see
`transforms.dead_letter`). `SelectDeadLetters` decodes it and keeps those a `Selection` picks;
`PlanReplays` turns each into the message to send again (its original bytes and attributes, plus
the replay attributes of `transforms.dead_letter`) or, past the most replays or with a payload
that was cut, into the dead letter to park.

Every dead letter has an id, `dead_letter_id`: a hash of what it holds (pipeline, step, reason,
error time, payload, attributes, source), the same wherever it was written and read back. A
replayed message carries the id of the dead letter it was first replayed from (`REPLAY_OF`),
kept through later replays, and its count (`REPLAY_COUNT`); ``REPLAY_OF:COUNT`` is the replay's
id (`REPLAY_ID`), the key of the ledger (`transforms.replay_ledger`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms import metrics
from transforms.blocks import Block
from transforms.dead_letter import (
    DEAD_LETTER_SCHEMA,
    FAILED,
    REPLAY_ATTRIBUTES,
    REPLAY_COUNT,
    REPLAY_ID,
    REPLAY_OF,
    ToDeadLetter,
    map_block,
)
from transforms.errors import BadTimestamp, RecordError
from transforms.event_time import parse_timestamp
from transforms.expression_kinds import FieldKind, check_kinds
from transforms.expressions import Expression
from transforms.message import Message, Origin, Record
from transforms.metrics import DROPPED, ReasonCounters
from transforms.schema import Field

__all__ = [
    "FILTERED",
    "PARK",
    "PARKED",
    "PARK_MAX_REPLAYS",
    "PARK_TRUNCATED",
    "NotADeadLetter",
    "PlanReplays",
    "SelectDeadLetters",
    "Selection",
    "WHERE_KINDS",
    "dead_letter_id",
    "decode",
    "park_reason",
    "replay_id",
]

SELECT_STEP = "select"
FILTERED = "filtered"
PARK = "park"
PARKED = metrics.PARKED
PARK_MAX_REPLAYS = "max_replays"
PARK_TRUNCATED = "truncated"
# The kinds of the JSON values of a dead letter's fields (timestamps are RFC 3339 text).
_JSON_KINDS = {"INTEGER": "number", "BOOLEAN": "bool", "STRING": "text", "TIMESTAMP": "text"}


def _kinds(fields: tuple[Field, ...], prefix: str = "") -> dict[str, FieldKind]:
    kinds = {}
    for item in fields:
        path = prefix + item.name
        if item.mode == "REPEATED":
            kinds[path] = FieldKind("list", f"REPEATED {item.type}")
        elif item.type == "RECORD":
            kinds[path] = FieldKind("object", "RECORD")
            kinds.update(_kinds(item.fields, path + "."))
        elif item.type in _JSON_KINDS:
            kinds[path] = FieldKind(_JSON_KINDS[item.type], item.type)
    return kinds


WHERE_KINDS = _kinds(DEAD_LETTER_SCHEMA.fields)
"""The kinds of the fields a `Selection`'s ``where`` reads: ``{"retry_count": number...}``."""


class NotADeadLetter(RecordError):
    """What was read back is not a dead letter (no payload, a payload that is not base64...)."""

    reason = "not_a_dead_letter"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def decode(data: Mapping[str, Any]) -> dict[str, Any]:
    """Returns a dead letter read back as JSON, with its payload as bytes again.

    Args:
        data: a dead letter as a sink wrote it and a source read it back: ``payload_bytes``
            as base64 text (or bytes), ``attributes`` as a list of ``{"key", "value"}``.

    Raises:
        NotADeadLetter: ``data`` lacks what every dead letter has, or its payload is not base64.
    """
    for name in ("pipeline", "step", "reason", "error_timestamp"):
        if not isinstance(data.get(name), str):
            raise NotADeadLetter(f"field {name!r} is missing or not text")
    payload = data.get("payload_bytes")
    if isinstance(payload, str):
        try:
            payload = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise NotADeadLetter("payload_bytes is not base64") from None
    if not isinstance(payload, bytes):
        raise NotADeadLetter("payload_bytes is missing")
    attributes = data.get("attributes") or []
    if not isinstance(attributes, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("key"), str)
        and isinstance(item.get("value"), (str, type(None)))
        for item in attributes
    ):
        raise NotADeadLetter("attributes is not a list of {key, value} with text values")
    source = data.get("source")
    if source is not None and not (
        isinstance(source, dict) and isinstance(source.get("system"), str)
    ):
        raise NotADeadLetter("source is not an object with a system")
    retry_count = data.get("retry_count") or 0
    if not isinstance(retry_count, int) or isinstance(retry_count, bool) or retry_count < 0:
        raise NotADeadLetter(f"retry_count {str(retry_count)[:20]!r} is not a count")
    return {
        **data,
        "payload_bytes": payload,
        "attributes": [{"key": a["key"], "value": _text(a.get("value"))} for a in attributes],
        "source": {k: v for k, v in (source or {}).items() if v is not None} or None,
        "retry_count": retry_count,
    }


def _attributes(letter: Mapping[str, Any]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in letter["attributes"] if a["value"] is not None}


def dead_letter_id(letter: Mapping[str, Any]) -> str:
    """Returns the id of a decoded dead letter: 32 hex digits, the same wherever it was kept.

    It hashes the pipeline, step, reason, error time (to the millisecond), payload, attributes
    and source of the dead letter.
    """
    try:
        millis = round(parse_timestamp(letter["error_timestamp"]) * 1000)
    except BadTimestamp:
        millis = letter["error_timestamp"]
    basis = [
        letter["pipeline"],
        letter["step"],
        letter["reason"],
        millis,
        base64.b64encode(letter["payload_bytes"]).decode(),
        sorted(_attributes(letter).items()),
        sorted((letter["source"] or {}).items()),
    ]
    text = json.dumps(basis, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def replay_id(letter: Mapping[str, Any]) -> str:
    """Returns the id of the next replay of a decoded dead letter: ``ORIGINAL_ID:COUNT``.

    ``ORIGINAL_ID`` is the id of the first dead letter of its chain (its `REPLAY_OF` attribute
    when it was replayed before, else its own id); ``COUNT`` is its ``retry_count`` plus one.
    """
    original = _attributes(letter).get(REPLAY_OF) or dead_letter_id(letter)
    return f"{original}:{letter['retry_count'] + 1}"


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay; an empty criterion selects every dead letter.

    Attributes:
        reasons: the reasons picked (``schema``, ``invalid_json``...).
        steps: the steps picked (``parse``, ``sink``...).
        pipelines: the pipelines picked.
        since: the earliest error time, epoch seconds (inclusive).
        until: the latest error time, epoch seconds (exclusive).
        where: an expression over the dead letter's fields (`transforms.expressions`), e.g.
            ``retry_count < 2 and source.topic == "orders"``; its payload is not a field. One
            comparing a field with a value of another kind (``retry_count < 'a'``) would keep
            nothing: it is refused (`ExpressionError`, `transforms.expression_kinds`).
    """

    reasons: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    pipelines: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None
    where: Expression | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("the time range is empty: the start must come before the end")
        if self.where is not None:
            check_kinds(self.where.text, WHERE_KINDS)

    def __call__(self, letter: Mapping[str, Any]) -> bool:
        """Whether ``letter`` (decoded) is selected; raises `RecordError` from ``where``."""
        if self.reasons and letter["reason"] not in self.reasons:
            return False
        if self.steps and letter["step"] not in self.steps:
            return False
        if self.pipelines and letter["pipeline"] not in self.pipelines:
            return False
        if self.since is not None or self.until is not None:
            failed = parse_timestamp(letter["error_timestamp"])
            if (self.since is not None and failed < self.since) or (
                self.until is not None and failed >= self.until
            ):
                return False
        if self.where is not None:
            fields = {k: v for k, v in letter.items() if k != "payload_bytes"}
            return self.where(fields) is True
        return True


@beam.typehints.with_output_types(Block)
class _SelectFn(beam.DoFn):
    def __init__(self, selection: Selection) -> None:
        self._selection = selection

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(self, block: list[Record]) -> Iterator[Any]:
        selected, failures = map_block(block, self._selected, RecordError)
        yield from failures
        if selected:
            yield selected

    def _selected(self, record: Record) -> Record | None:
        letter = decode(record.data)
        if not self._selection(letter):
            self._dropped.inc(FILTERED)
            return None
        return record._replace(data=letter)


class SelectDeadLetters(beam.PTransform):
    """Decodes dead letters read back and keeps those a `Selection` picks.

    Input: `Block`s of `Record`s whose data is a dead letter as JSON. Returns ``(blocks,
    errors)``: Blocks of the selected `Record`s, their data decoded (`decode`); and dead-letter
    dicts (step ``select``) of what is not a dead letter or makes ``where`` fail. The others
    are counted ``dropped.filtered``.
    """

    def __init__(self, pipeline: str, selection: Selection) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._selection = selection

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Select" >> beam.ParDo(_SelectFn(self._selection)).with_outputs(
            FAILED, main="selected"
        )
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, SELECT_STEP)
        return results.selected, errors


def _replay(letter: dict[str, Any], event_time: float | None) -> Record:
    """The message of the next replay of ``letter``: its bytes, attributes and replay ids."""
    attributes = {k: v for k, v in _attributes(letter).items() if k not in REPLAY_ATTRIBUTES}
    this = replay_id(letter)
    original, count = this.rsplit(":", 1)
    attributes.update({REPLAY_COUNT: count, REPLAY_OF: original, REPLAY_ID: this})
    source = letter["source"] or {"system": "dead_letter"}
    origin = Origin(**{k: v for k, v in source.items() if k in Origin._fields})
    data = {
        "replay_id": this,
        "replay_of": original,
        "replay_count": int(count),
        "pipeline": letter["pipeline"],
        "step": letter["step"],
        "reason": letter["reason"],
        "key": source.get("key") or attributes.get("partition_key"),
    }
    message = Message(letter["payload_bytes"], attributes, origin)
    return Record(data, message, event_time)


def park_reason(letter: Mapping[str, Any], max_replays: int) -> str | None:
    """Why a decoded dead letter is parked rather than replayed, or ``None`` to replay it.

    ``truncated``: only a prefix of its payload was kept (``payload_truncated``, or a
    ``payload_size`` or ``payload_sha256`` that is not the payload's); ``max_replays``: it was
    replayed ``max_replays`` times already.
    """
    if letter.get("payload_truncated") or not _whole(letter):
        return PARK_TRUNCATED
    if letter["retry_count"] >= max_replays:
        return PARK_MAX_REPLAYS
    return None


def _whole(letter: Mapping[str, Any]) -> bool:
    """Whether the payload is the one its size and SHA-256 (when given) describe."""
    payload = letter["payload_bytes"]
    size, digest = letter.get("payload_size"), letter.get("payload_sha256")
    if size is not None and size != len(payload):
        return False
    return digest is None or digest == hashlib.sha256(payload).hexdigest()


@beam.typehints.with_output_types(Block)
class _PlanFn(beam.DoFn):
    def __init__(self, max_replays: int, counter: str) -> None:
        self._max_replays = max_replays
        self._counter = counter

    def setup(self) -> None:
        self._parked = ReasonCounters(self._counter)

    def process(self, block: list[Record]) -> Iterator[Any]:
        replays, parked = Block(), Block()
        for record in block:
            why = park_reason(record.data, self._max_replays)
            if why is None:
                replays.append(_replay(record.data, record.event_time))
            else:
                self._parked.inc(why)
                parked.append(record)
        if replays:
            yield replays
        if parked:
            yield TaggedOutput(PARK, parked)


class PlanReplays(beam.PTransform):
    """Splits selected dead letters into the messages to replay and the dead letters to park.

    Input: Blocks of `Record`s of decoded dead letters. Output: a tuple of

    - Blocks of the replays: ``Record(data={"replay_id": "ID:2", "replay_of": "ID",
      "replay_count": 2, "pipeline", "step", "reason", "key": <Kafka key or Kinesis partition
      key, if any>}, origin=Message(<original bytes>, <original attributes + replay attributes>,
      <original source>))``, for a sink of original messages (`SinkContext.raw`);
    - Blocks of the dead letters to park (`park_reason`), counted by why in ``counter``,
      their data the decoded dead letter.

    Args:
        max_replays: how many times a message is replayed at most.
        counter: the counter of the parked dead letters (``parked.<why>``...).
    """

    def __init__(self, max_replays: int, counter: str = PARKED) -> None:
        super().__init__()
        if max_replays < 1:
            raise ValueError("max_replays must be at least 1")
        self._max_replays = max_replays
        self._counter = counter

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        plan = _PlanFn(self._max_replays, self._counter)
        results = blocks | "Plan" >> beam.ParDo(plan).with_outputs(PARK, main="replays")
        return results.replays, results[PARK]
