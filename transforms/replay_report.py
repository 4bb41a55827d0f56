"""What a dry run of a replay says: one line per dead letter, counts by reason.

`DescribeReplays` takes what `transforms.replay.PlanReplays` would send and park and, instead
of sending anything, makes a report `Record` of each, e.g.::

    {"action": "replay", "replay_id": "9f0c...:1", "pipeline": "events_to_bigquery",
     "step": "parse", "reason": "schema", "attributes": {"dlq_replay_count": "1", ...},
     "payload": "{'event_id': 'e1', ...}"}
    {"action": "park", "why": "max_replays", "replay_id": "9f0c...:4", ...}

``payload`` is the payload as text (invalid UTF-8 replaced), its first `PAYLOAD_CHARS`
characters. The replays are counted ``would_replay.<reason>``; `PlanReplays` counts the parked
ones (``would_park.<why>``, `WOULD_PARK`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms import metrics
from transforms.blocks import Block
from transforms.message import Record
from transforms.metrics import ReasonCounters
from transforms.replay import park_reason, replay_id

__all__ = ["PAYLOAD_CHARS", "WOULD_PARK", "WOULD_REPLAY", "DescribeReplays"]

WOULD_REPLAY = metrics.WOULD_REPLAY
WOULD_PARK = metrics.WOULD_PARK
PAYLOAD_CHARS = 200


def _text(payload: bytes) -> str:
    return payload[: PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")[:PAYLOAD_CHARS]


@beam.typehints.with_output_types(Block)
class _DescribeReplayFn(beam.DoFn):
    def setup(self) -> None:
        self._counters = ReasonCounters(WOULD_REPLAY)

    def process(self, block: list[Record]) -> Iterator[Block]:
        lines = Block()
        for record in block:
            data, message = record.data, record.origin
            assert message is not None  # a replay always carries its message
            self._counters.inc(data["reason"])
            line = {"action": "replay", **{k: data[k] for k in ("replay_id", "pipeline")}}
            line.update(step=data["step"], reason=data["reason"])
            line.update(attributes=message.attributes, payload=_text(message.payload))
            lines.append(Record(line, message, record.event_time))
        yield lines


@beam.typehints.with_output_types(Block)
class _DescribeParkedFn(beam.DoFn):
    def __init__(self, max_replays: int) -> None:
        self._max_replays = max_replays

    def process(self, block: list[Record]) -> Iterator[Block]:
        lines = Block()
        for record in block:
            letter: dict[str, Any] = record.data
            line = {
                "action": "park",
                "why": park_reason(letter, self._max_replays),
                "replay_id": replay_id(letter),
                **{k: letter[k] for k in ("pipeline", "step", "reason")},
                "payload": _text(letter["payload_bytes"]),
            }
            lines.append(Record(line, record.origin, record.event_time))
        yield lines


class DescribeReplays(beam.PTransform):
    """``(replays, parked)`` Blocks -> Blocks of report `Record`s (see the module), counted.

    Args:
        max_replays: the most replays, to say why a dead letter would be parked.
    """

    def __init__(self, max_replays: int) -> None:
        super().__init__()
        self._max_replays = max_replays

    def expand(self, plans: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        replays, parked = plans
        described = (
            replays | "Replays" >> beam.ParDo(_DescribeReplayFn()),
            parked | "Parked" >> beam.ParDo(_DescribeParkedFn(self._max_replays)),
        )
        return described | "Lines" >> beam.Flatten()
