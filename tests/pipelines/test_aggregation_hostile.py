"""One hostile record never stops an aggregating pipeline: it is dead-lettered, the rest runs.

Through the real pipelines: ``metrics_to_redis`` into Redis (the block path with a hopping
window, the record path with sessions), ``events_to_bigquery --counts_sink`` (a side
aggregation: the record is written whole, its count is skipped and counted) and
``sessionize``. Each hostile line's dead letter carries its original bytes, step ``aggregate``
and its reason; the balance holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from pipelines.catalog import get_pipeline
from pipelines.framework.options import OptionError
from pipelines.framework.run import run_pipeline
from transforms.event_time import format_timestamp
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN

START = 1_764_064_800  # a whole minute
HUGE = "1" * 400
# (JSON line, reason): the 400-digit integer is written out as JSON text.
HOSTILE = [
    (f'{{"endpoint": "/a", "ts": "{format_timestamp(START + 5)}", "bytes": {HUGE}, '
     '"status_code": 200}', "bad_value"),
    (json.dumps({"endpoint": "/a", "ts": format_timestamp(START + 6), "status_code": "5%"}),
     "bad_value"),
    (json.dumps({"endpoint": "/a", "ts": format_timestamp(START + 7),
                 "status_code": "%0999999999d"}), "expression_limit"),
    (json.dumps({"endpoint": "/a", "ts": format_timestamp(START + 8), "tag": "a"}),
     "expression_limit"),
    (json.dumps({"endpoint": "/a", "ts": "9999-12-31T23:59:59Z", "bytes": 1}), "bad_timestamp"),
]  # fmt: skip
YEAR_ONE = (json.dumps({"endpoint": "/a", "ts": "0001-01-01T00:00:30Z"}), "bad_timestamp")
GOOD = [
    {"endpoint": "/a", "ts": format_timestamp(START + 1), "bytes": 10, "status_code": 200},
    {"endpoint": "/a", "ts": format_timestamp(START + 2), "bytes": 5, "status_code": 503},
    {"endpoint": "/a", "ts": format_timestamp(START + 3), "status_code": "500"},
    {"endpoint": "/b", "ts": format_timestamp(START + 4), "bytes": 1, "status_code": 300},
]
AGGREGATES = """\
aggregates:
  requests: count()
  total: sum(bytes)
  round: count_if(status_code % 100 == 0)
  long: count_if(tag * 2000000000 == "x")
  unsized: count_if(bytes is None)
having: requests >= 1
"""


def write_lines(tmp_path: Path, hostile: list[tuple[str, str]]) -> Path:
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(e) for e in GOOD] + [line for line, _ in hostile]
    source.write_text("\n".join(lines) + "\n")
    return source


def dead_letters(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in folder.glob("*.jsonl") for line in p.open()]


def assert_dead_lettered(
    folder: Path, hostile: list[tuple[str, str]], step: str = "aggregate"
) -> None:
    import base64

    got = sorted(
        (base64.b64decode(d["payload_bytes"]).decode(), d["reason"], d["step"])
        for d in dead_letters(folder)
    )
    assert got == sorted((line, reason, step) for line, reason in hostile)


@pytest.mark.integration
@pytest.mark.parametrize(
    "window",
    ["{type: hopping, size: 120s, every: 60s}", "{type: session, gap: 30m}"],
    ids=["hopping-blocks", "sessions-records"],
)
def test_metrics_to_redis_dead_letters_hostile_records(
    redis_server: Any, unique_name: str, tmp_path: Path, window: str
) -> None:
    hostile = HOSTILE + ([YEAR_ONE] if "hopping" in window else [])
    source = write_lines(tmp_path, hostile)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"event_time: ts\nwindow: {window}\ngroup_by: [endpoint]\n{AGGREGATES}")

    report = run_pipeline(
        get_pipeline("metrics_to_redis"),
        [f"--source=file://{source}", f"--spec={spec}", "--schema=none",
         f"--sink={redis_server.endpoint}?mode=hash&key={unique_name}:{{endpoint}}:{{window_start}}",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced, report.render()
    assert report.count(READ) == len(GOOD) + len(hostile)
    assert report.count(DEAD_LETTERED) == len(hostile)
    assert_dead_lettered(tmp_path / "dlq", hostile)
    client = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)
    keys = client.keys(f"{unique_name}:*")
    try:
        rows = {key.split(":")[1]: client.hgetall(key) for key in keys}
        assert {e: int(r["requests"]) for e, r in rows.items()} == {"/a": 3, "/b": 1}
        assert rows["/a"]["total"] == "15" and rows["/a"]["round"] == "1"
        assert rows["/a"]["unsized"] == "1" and rows["/a"]["long"] == "0"
    finally:
        if keys:
            client.delete(*keys)


def test_events_to_bigquery_counts_skip_and_count_what_they_cannot_window(tmp_path: Path) -> None:
    far = {"event_type": "click", "ts": "9999-12-31T23:59:59Z"}
    near = [{"event_type": "click", "ts": format_timestamp(START + i)} for i in range(5)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in [*near, far]) + "\n")

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out", "--schema=none",
         "--event_time_field=ts", f"--dead_letter=file://{tmp_path}/dlq",
         f"--counts_sink=file://{tmp_path}/counts", "--counts_window=60s",
         "--counts_group_by=event_type"],
    )  # fmt: skip

    assert report.balanced, report.render()
    # The record itself is written whole by the main sink; only its count is left out.
    assert report.count(WRITTEN) == len(near) + 1
    assert report.count("not_aggregated.bad_timestamp") == 1
    counts = dead_letters(tmp_path / "counts")
    assert [(r["event_type"], r["events"]) for r in counts] == [("click", len(near))]


def test_sessionize_dead_letters_a_session_past_the_year_9999(tmp_path: Path) -> None:
    far = json.dumps({"user_id": "u1", "ts": "9999-12-31T23:59:59Z"})
    source = tmp_path / "in.jsonl"
    events = [{"user_id": "u1", "ts": format_timestamp(START + i)} for i in range(3)]
    source.write_text("\n".join([*(json.dumps(e) for e in events), far]) + "\n")

    report = run_pipeline(
        get_pipeline("sessionize"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out", "--schema=none",
         "--key_field=user_id", "--gap=30m", "--event_time_field=ts",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced, report.render()
    # The sessions step refuses it before the aggregation: the session could not be written.
    assert_dead_lettered(tmp_path / "dlq", [(far, "bad_timestamp")], step="sessions")
    sessions = dead_letters(tmp_path / "out")
    assert [(s["user_id"], s["event_count"]) for s in sessions] == [("u1", 3)]


def test_a_hostile_spec_fails_before_the_pipeline_starts(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "window: {type: tumbling, size: 60s}\naggregates: {n: count()}\n"
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(
            f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n"
            for a, b in zip("abcdefg", "bcdefgh", strict=True)
        )
        + f"having: [{','.join(['*h'] * 9)}]\n"
    )
    for spec, message in (
        (str(bomb), "aliases"),
        ("{window: {type: tumbling, size: 60s}, aggregates: {n: count_if(a is b)}}", "'is'"),
    ):
        with pytest.raises(OptionError, match=message):
            get_pipeline("metrics_to_redis").configure(
                {"spec": spec, "schema": "none", "source": "file:///x", "sink": "file:///y",
                 "dead_letter": "file:///z"}
            )  # fmt: skip
