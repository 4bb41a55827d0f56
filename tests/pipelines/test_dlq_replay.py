"""dlq_replay end to end: Pub/Sub -> events_to_bigquery -> dead letters in BigQuery -> fix ->
dlq_replay -> Pub/Sub -> events_to_bigquery again: the rows land once, the rest is accounted for.

One scenario (a module fixture) runs every step once; the tests read what each step left.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import BIGQUERY_PROJECT
from pipelines.framework.options import OptionError
from pipelines.framework.run import RunReport, run_pipeline
from tests.pipelines.live_bigquery import rows, run_live
from transforms.dead_letter import REPLAY_COUNT, REPLAY_ID, REPLAY_OF
from transforms.io.bigquery.client import make_client
from transforms.replay import dead_letter_id, decode

pytestmark = pytest.mark.integration

PROJECT = BIGQUERY_PROJECT
GOOD = 3


def _event(event_id: str, **extra: Any) -> bytes:
    data = {"event_id": event_id, "ts": time.time(), "user_id": "u1", "event_type": "click"}
    return json.dumps({**data, **extra}).encode()


# Fixable: an undeclared field, refused until the fix (--unknown_fields=drop). Hopeless: not JSON.
FIXABLE = [_event("f0", debug=True), _event("f1", debug="x")]
HOPELESS = b"{not json"


def _wake() -> bytes:
    """A valid event that wakes a cancel's pending pull: a row, never a dead letter."""
    return _event(f"wake-{uuid.uuid4().hex[:6]}")


class Scenario:
    """What each step of the scenario left behind."""

    dead_before: list[dict[str, Any]]
    dry_run: RunReport
    report_lines: list[dict[str, Any]]
    picked: RunReport
    replay: RunReport
    fixed_run: dict[str, int]
    events: list[dict[str, Any]]
    dead_after: list[dict[str, Any]]
    limited: RunReport
    parked: list[dict[str, Any]]


@pytest.fixture(scope="module")
def scenario(pubsub_emulator: Any, bigquery_emulator: Any, redis_server: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:  # fmt: skip
    name = f"t{uuid.uuid4().hex[:12]}"
    tmp = tmp_path_factory.mktemp("dlq_replay")
    topic = f"projects/{PROJECT}/topics/{name}"
    subscription = f"projects/{PROJECT}/subscriptions/{name}"
    publisher, subscriber = PublisherClient(), SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    endpoint = f"endpoint={bigquery_emulator.endpoint}"
    events, dead = f"{PROJECT}.{name}.events", f"{PROJECT}.{name}.dead_letter"
    pipeline = [f"--source=pubsub://{subscription}", "--schema=builtin:events",
                f"--sink=bigquery://{PROJECT}:{name}.events?{endpoint}",
                f"--dead_letter=bigquery://{PROJECT}:{name}.dead_letter?{endpoint}"]  # fmt: skip
    ledger = f"{redis_server.endpoint}?prefix={name}:"
    replay = [f"--source=bigquery://{PROJECT}:{name}.dead_letter?{endpoint}",
              f"--sink=pubsub://{topic}", f"--parked=file://{tmp}/parked",
              f"--dead_letter=file://{tmp}/replay_dead_letters"]  # fmt: skip
    found = Scenario()
    try:
        good = [(_event(f"e{i}"), {"n": str(i)}) for i in range(GOOD)]
        bad = [(data, {"n": f"fixable{i}"}) for i, data in enumerate(FIXABLE)]
        bad.append((HOPELESS, {"n": "hopeless"}))
        run_live(
            pipeline,
            topic,
            good + bad,
            lambda counters: (
                counters.get("written", 0) >= GOOD and counters.get("written_dead_letters", 0) >= 3
            ),
            _wake,
        )
        found.dead_before = rows(client, dead)

        spec = get_pipeline("dlq_replay")
        report = tmp / "report"
        found.dry_run = run_pipeline(spec, [*replay, "--preview=true", f"--ledger={ledger}",
                                            f"--report=file://{report}"])  # fmt: skip
        found.report_lines = [json.loads(line) for path in report.glob("*.jsonl")
                              for line in path.read_text().splitlines()]  # fmt: skip
        where = "--where=retry_count < 1 and reason == 'schema'"
        found.picked = run_pipeline(spec, [*replay, "--preview=true", f"--ledger={ledger}", where])
        found.replay = run_pipeline(spec, [*replay, f"--ledger={ledger}"])

        # The fix: undeclared fields are dropped instead of refused.
        _, found.fixed_run = run_live(
            [*pipeline, "--unknown_fields=drop"], topic, [],
            lambda counters: counters.get("written", 0) >= 2
            and counters.get("written_dead_letters", 0) >= 1,
            _wake,
        )  # fmt: skip
        found.events = rows(client, events)
        found.dead_after = rows(client, dead)
        found.limited = run_pipeline(spec, [*replay, f"--ledger={ledger}", "--max_replays=1"])
        found.parked = [json.loads(line) for path in (tmp / "parked").glob("*.jsonl")
                        for line in path.read_text().splitlines()]  # fmt: skip
        yield found
    finally:
        subscriber.delete_subscription(subscription=subscription)
        publisher.delete_topic(topic=topic)
        import redis

        keys = redis.Redis.from_url(redis_server.endpoint)
        for key in keys.scan_iter(f"{name}:*"):
            keys.delete(key)


def _attributes(row: dict[str, Any]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in row["attributes"]}


def test_the_bad_records_became_dead_letters_in_bigquery(scenario: Scenario) -> None:
    reasons = sorted(row["reason"] for row in scenario.dead_before)
    assert reasons == ["invalid_json", "schema", "schema"]
    assert all(row["retry_count"] == 0 for row in scenario.dead_before)


def test_a_dry_run_counts_by_reason_lists_what_it_would_send_and_sends_nothing(
    scenario: Scenario,
) -> None:
    report = scenario.dry_run
    assert report.balanced
    assert report.count("would_replay.schema") == 2
    assert report.count("would_replay.invalid_json") == 1
    lines = scenario.report_lines
    assert sorted(line["action"] for line in lines) == ["replay"] * 3
    payloads = sorted(line["payload"].encode() for line in lines)
    assert payloads == sorted([*FIXABLE, HOPELESS])
    assert all(line["attributes"][REPLAY_COUNT] == "1" for line in lines)
    # It claimed nothing: the real run that follows sends all three.
    assert scenario.replay.count("written") == 3


def test_a_where_picks_dead_letters_by_their_fields(scenario: Scenario) -> None:
    report = scenario.picked
    assert report.balanced
    assert report.count("would_replay.schema") == 2
    assert report.count("would_replay.invalid_json") == 0
    assert report.count("dropped.filtered") == 1


@pytest.mark.parametrize(
    ("where", "refusal"),
    [
        ("retry_count < 'a'", "retry_count is INTEGER and 'a' is text"),
        ("source.partition == '3' or reason == 'schema'", "source.partition is INTEGER"),
        ("reason in (1, 2)", "reason is STRING and 1 is number"),
        ("payload_truncated == 1", "payload_truncated is BOOLEAN"),
    ],
)
def test_a_where_comparing_a_field_with_a_value_of_another_kind_is_refused_before_the_run(
    tmp_path: Path, where: str, refusal: str
) -> None:
    (tmp_path / "dlq.jsonl").write_text("{}\n")
    argv = [f"--source=file://{tmp_path}/dlq.jsonl", "--sink=stdout://", "--dead_letter=stdout://",
            "--parked=stdout://", "--ledger=none", f"--where={where}"]  # fmt: skip
    with pytest.raises(OptionError, match=f"^--where: .*{re.escape(refusal)}.* never holds"):
        run_pipeline(get_pipeline("dlq_replay"), argv)


def test_replayed_records_land_once_after_the_fix(scenario: Scenario) -> None:
    assert scenario.replay.balanced and scenario.replay.count("read") == 3
    ids = [row["event_id"] for row in scenario.events if not row["event_id"].startswith("wake-")]
    assert sorted(ids) == sorted([f"e{i}" for i in range(GOOD)] + ["f0", "f1"])
    # The fixed run read the three replays (and wake-up events): one failed again.
    counters = scenario.fixed_run
    assert counters["dead_lettered"] == 1


def test_a_record_that_fails_again_points_to_its_original_dead_letter(scenario: Scenario) -> None:
    new = [row for row in scenario.dead_after if row["retry_count"] > 0]
    assert len(new) == 1
    row = new[0]
    assert bytes(row["payload_bytes"]) == HOPELESS  # the original bytes, not a dead letter
    assert row["reason"] == "invalid_json" and row["retry_count"] == 1
    original = next(r for r in scenario.dead_before if r["reason"] == "invalid_json")
    attributes = _attributes(row)
    original_id = dead_letter_id(decode(_as_read(original)))
    assert attributes[REPLAY_OF] == original_id
    assert attributes[REPLAY_ID] == f"{original_id}:1"
    assert attributes["n"] == "hopeless"  # the original attributes travel too


def test_past_the_most_replays_a_dead_letter_is_parked_and_none_is_sent_twice(
    scenario: Scenario,
) -> None:
    """The last run reads the three dead letters replayed before and the one that failed again."""
    limited = scenario.limited
    assert limited.balanced
    assert limited.count("written") == 1 and limited.count("parked.max_replays") == 1
    assert limited.count("dropped.already_replayed") == 3
    (parked,) = scenario.parked
    assert base64.b64decode(parked["payload_bytes"]) == HOPELESS
    assert parked["retry_count"] == 1


def _as_read(row: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter row as the bigquery:// source hands it on (bytes as base64, text times)."""
    return {
        **row,
        "payload_bytes": base64.b64encode(bytes(row["payload_bytes"])).decode(),
        "error_timestamp": row["error_timestamp"].isoformat(),
    }
