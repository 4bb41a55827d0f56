"""What several test modules share: running records through a sink, pulling Pub/Sub messages,
collecting the elements of a pipeline."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import apache_beam as beam
from apache_beam.testing.util import assert_that

from transforms.blocks import Batch
from transforms.dead_letter_writer import DeadLetterWriter
from transforms.io.base import Sink
from transforms.metrics import counter_totals


def no_dead_letters(actual: list[Any]) -> None:
    """The check that a sink dead-lettered nothing."""
    assert actual == [], actual


def run_sink(records: list[Any], sink: Sink, check: Any = no_dead_letters) -> dict[str, int]:
    """Runs ``Create(records) | Batch() | sink`` and returns the suite's counters.

    Args:
        records: the records written (`Record`s, timestamped or not), in blocks per window.
        sink: the sink under test.
        check: asserted on the sink's dead letters (``no_dead_letters`` by default). A sink
            that fails the bundle instead (files) has none: ``check`` must then stay the default.
    """
    pipeline = beam.Pipeline()
    blocks = pipeline | beam.Create(records, reshuffle=False) | Batch()
    dead_letters = blocks | sink
    if dead_letters is None:
        assert check is no_dead_letters, "the sink has no dead letters to check"
    else:
        assert_that(dead_letters, check)
    result = pipeline.run()
    result.wait_until_finish()
    return counter_totals(result.metrics())


def write_dead_letters(letters: list[dict[str, Any]], sink: Sink) -> dict[str, int]:
    """Writes dead-letter dicts through `DeadLetterWriter` (``sink`` built with
    `dead_letter_context`) and returns the suite's counters; raises when one was not written."""
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(letters, reshuffle=False) | DeadLetterWriter(sink)
    result = pipeline.run()
    result.wait_until_finish()
    return counter_totals(result.metrics())


def pull_json(subscription: str, expected: int, patience: int = 10) -> list[dict[str, Any]]:
    """Pulls JSON messages until ``expected`` came, then once more to see that no more come.

    Gives up after ``patience`` empty pulls (the emulator holds a pull on an empty subscription
    until the client deadline, so each empty pull takes a few seconds).
    """
    from google.api_core.exceptions import DeadlineExceeded
    from google.cloud.pubsub_v1 import SubscriberClient

    subscriber = SubscriberClient()
    received: list[dict[str, Any]] = []
    empty = 0
    try:
        while empty < (1 if len(received) >= expected else patience):
            try:
                response = subscriber.pull(subscription=subscription, max_messages=100, timeout=3)
            except DeadlineExceeded:
                empty += 1
                continue
            if not response.received_messages:
                empty += 1
                continue
            subscriber.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
            )
            received += [json.loads(m.message.data) for m in response.received_messages]
    finally:
        subscriber.close()
    return received


# Elements collected by tag: module level, so that the in-process runner's copy of `Collect`
# appends to the same lists the test reads.
COLLECTED: dict[str, list[Any]] = defaultdict(list)


class Collect(beam.DoFn):
    """Appends every element to ``COLLECTED[tag]`` (take it with ``COLLECTED.pop(tag)``)."""

    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, element: Any) -> None:
        COLLECTED[self._tag].append(element)
