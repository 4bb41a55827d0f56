"""A user's own events (not the generator's) through every catalog pipeline, default options.

The events are a web server's access log: ``request_id``, ``timestamp`` (ISO-8601 with an
offset) or ``ts`` (epoch milliseconds), ``user_id``, ``path``, ``status_code``,
``bytes_sent``, ``duration_ms``. Each pipeline gets only the options it needs; the expected
results are computed here from the input.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from pipelines.catalog import get_pipeline
from pipelines.framework.options import OptionError
from pipelines.framework.run import run_pipeline
from transforms.event_time import format_timestamp, parse_timestamp
from transforms.io.bigquery.client import ensure_table, make_client
from transforms.io.endpoint import EndpointError
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN
from transforms.schema import Schema

START = 1_764_064_800  # 2025-11-25T10:00:00Z, a whole minute
PARIS = dt.timezone(dt.timedelta(hours=1))
PATHS = ("/", "/cart", "/checkout")
TIME_FORMATS = {
    # time field -> how a time in epoch seconds is written
    "timestamp": lambda seconds: dt.datetime.fromtimestamp(seconds, PARIS).isoformat(),
    "ts": lambda seconds: round(seconds * 1000),
}


def access_log(n: int, time_field: str = "timestamp") -> list[dict[str, Any]]:
    """``n`` requests over about 20 minutes by 4 users, out of order, with one long pause."""
    write_time = TIME_FORMATS[time_field]
    out = []
    for i in range(n):
        seconds = START + (i * 53) % 600 + (900 if i % 10 == 9 else 0) + (i % 3) / 4
        out.append({
            "request_id": f"r{i}", time_field: write_time(seconds), "user_id": f"user-{i % 4}",
            "path": PATHS[i % 3], "status_code": (200, 200, 404, 503)[i % 4],
            "bytes_sent": 100 + i, "duration_ms": float(i % 40) + 0.25,
        })  # fmt: skip
    return out


def seconds_of(event: dict[str, Any]) -> float:
    """The event time, read here independently of the suite's parser."""
    if "timestamp" in event:
        return dt.datetime.fromisoformat(event["timestamp"]).timestamp()
    return event["ts"] / 1000


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in rows))  # fmt: skip
    return path


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != name}


def dead_by_reason(folder: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for dead in read_jsonl(folder):
        found[dead["reason"]].append(dead)
    return dict(found)


SPEC = """\
event_time: {time_field}
window: {{type: tumbling, size: 60s}}
group_by: [path]
aggregates:
  hits: count()
  server_errors: count_if(status_code >= 500)
  bytes: sum(bytes_sent)
  slowest_ms: max(duration_ms)
"""


def expected_metrics(data: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The spec in plain Python: ``{"PATH:WINDOW_START": row}``."""
    rows: dict[str, dict[str, Any]] = {}
    for event in data:
        start = format_timestamp(math.floor(seconds_of(event) / 60) * 60)
        row = rows.setdefault(
            f"{event['path']}:{start}",
            {"hits": 0, "server_errors": 0, "bytes": 0, "slowest_ms": -math.inf},
        )
        row["hits"] += 1
        row["server_errors"] += event["status_code"] >= 500
        row["bytes"] += event["bytes_sent"]
        row["slowest_ms"] = max(row["slowest_ms"], event["duration_ms"])
    return rows


@pytest.mark.integration
@pytest.mark.parametrize("time_field", ["timestamp", "ts"])
def test_metrics_to_redis_computes_a_user_spec_into_redis(
    redis_clean: Any, tmp_path: Path, time_field: str
) -> None:
    data = access_log(200, time_field)
    bad = [without(data[0], "path"), {**data[1], "bytes_sent": "lots"}]
    source = write_jsonl(tmp_path / "in.jsonl", data + bad)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(time_field=time_field))
    url = redis_clean.endpoint

    report = run_pipeline(
        get_pipeline("metrics_to_redis"),
        [f"--source=file://{source}", f"--spec={spec}",
         f"--sink={url}?mode=hash&key=web:{{path}}:{{window_start}}",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == len(data) + len(bad)
    client = redis.Redis.from_url(url, decode_responses=True)
    expected = expected_metrics(data)
    assert sorted(client.keys("web:*")) == sorted(f"web:{key}" for key in expected)
    for key, want in expected.items():
        stored = client.hgetall(f"web:{key}")
        assert int(stored["hits"]) == want["hits"]
        assert int(stored["server_errors"]) == want["server_errors"]
        assert int(stored["bytes"]) == want["bytes"]
        assert float(stored["slowest_ms"]) == want["slowest_ms"]
    dead = dead_by_reason(tmp_path / "dlq")
    assert sorted(dead) == ["missing_field", "wrong_type"]
    assert "'path'" in dead["missing_field"][0]["error_message"]
    assert "'bytes_sent'" in dead["wrong_type"][0]["error_message"]
    assert {d["step"] for found in dead.values() for d in found} == {"fields"}
    assert json.loads(dead["missing_field"][0]["payload_string"]) == bad[0]


def test_a_spec_run_on_3000_user_events_dead_letters_none(tmp_path: Path) -> None:
    data = access_log(3000)
    source = write_jsonl(tmp_path / "in.jsonl", data)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(time_field="timestamp"))

    report = run_pipeline(
        get_pipeline("metrics_to_redis"),
        [f"--source=file://{source}", f"--spec={spec}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.count(READ) == 3000
    assert report.count(DEAD_LETTERED) == 0
    rows = read_jsonl(tmp_path / "out")
    got = {f"{r['path']}:{r['window_start']}": r["hits"] for r in rows}
    assert got == {key: row["hits"] for key, row in expected_metrics(data).items()}


def expected_sessions(data: list[dict[str, Any]], gap: float) -> set[tuple[str, str, str, int]]:
    """Sessions in plain Python: ``(user, first event time, last event time, events)``."""
    times: dict[str, list[float]] = defaultdict(list)
    for event in data:
        times[event["user_id"]].append(seconds_of(event))
    sessions = set()
    for user, stamps in times.items():
        stamps.sort()
        first = last = stamps[0]
        count = 0
        for stamp in stamps:
            if stamp - last >= gap:
                sessions.add((user, format_timestamp(first), format_timestamp(last), count))
                first, count = stamp, 0
            last = stamp
            count += 1
        sessions.add((user, format_timestamp(first), format_timestamp(last), count))
    return sessions


@pytest.mark.parametrize("time_field", ["timestamp", "ts"])
def test_sessionize_finds_the_sessions_of_user_events(tmp_path: Path, time_field: str) -> None:
    data = access_log(120, time_field)
    bad = [without(data[0], "user_id"), {**data[1], "user_id": {"id": 1}}]
    source = write_jsonl(tmp_path / "in.jsonl", data + bad)

    report = run_pipeline(
        get_pipeline("sessionize"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out", "--key_field=user_id",
         "--gap=5m", f"--event_time_field={time_field}"],
    )  # fmt: skip

    assert report.balanced
    rows = read_jsonl(tmp_path / "out")
    got = {
        (r["user_id"], format_timestamp(parse_timestamp(r["session_start"])),
         format_timestamp(parse_timestamp(r["session_end"])), r["event_count"])
        for r in rows
    }  # fmt: skip
    assert got == expected_sessions(data, 300.0)
    assert len(got) > 4  # the pauses split sessions
    dead = dead_by_reason(tmp_path / "out_dead_letter")
    assert sorted(dead) == ["missing_field", "wrong_type"]
    assert all("'user_id'" in d["error_message"] for found in dead.values() for d in found)


USER_SCHEMA = Schema.from_bigquery(
    [
        {"name": "request_id", "type": "STRING", "mode": "REQUIRED"},
        {"name": "timestamp", "type": "TIMESTAMP"},
        {"name": "user_id", "type": "STRING"},
        {"name": "path", "type": "STRING"},
        {"name": "status_code", "type": "INTEGER"},
        {"name": "bytes_sent", "type": "INTEGER"},
        {"name": "duration_ms", "type": "FLOAT"},
    ]
)


@pytest.mark.integration
def test_events_to_bigquery_writes_into_the_users_existing_table(
    bigquery_emulator: Any, unique_name: str, tmp_path: Path
) -> None:
    data = access_log(50)
    bad = [without(data[0], "timestamp")]
    source = write_jsonl(tmp_path / "in.jsonl", data + bad)
    project, endpoint = "local-project", bigquery_emulator.endpoint
    table = f"{project}.{unique_name}.requests"
    client = make_client(project, endpoint)
    ensure_table(client, table, USER_SCHEMA)

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}",
         f"--sink=bigquery://{project}:{unique_name}.requests?endpoint={endpoint}",
         f"--dead_letter=file://{tmp_path}/dlq", "--event_time_field=timestamp"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(WRITTEN) == len(data)
    rows = list(client.list_rows(table))
    by_id = {row["request_id"]: row for row in rows}
    assert sorted(by_id) == sorted(e["request_id"] for e in data)
    for event in data:
        row = by_id[event["request_id"]]
        assert row["timestamp"].timestamp() == seconds_of(event)
        assert (row["path"], row["status_code"]) == (event["path"], event["status_code"])
    dead = read_jsonl(tmp_path / "dlq")
    assert [d["reason"] for d in dead] == ["bad_timestamp"]
    assert "'timestamp'" in dead[0]["error_message"]


@pytest.mark.integration
def test_events_to_bigquery_without_schema_or_table_fails_before_it_starts(
    bigquery_emulator: Any, unique_name: str, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", access_log(3))
    uri = f"bigquery://local-project:{unique_name}.requests?endpoint={bigquery_emulator.endpoint}"
    with pytest.raises((EndpointError, OptionError), match="--schema"):
        run_pipeline(
            get_pipeline("events_to_bigquery"),
            [f"--source=file://{source}", f"--sink={uri}",
             f"--dead_letter=file://{tmp_path}/dlq", "--event_time_field=timestamp"],
        )  # fmt: skip
    assert not (tmp_path / "dlq").exists()


def test_events_to_files_with_counts_by_a_user_field(tmp_path: Path) -> None:
    data = access_log(90)
    bad = [without(data[0], "path")]
    source = write_jsonl(tmp_path / "in.jsonl", data + bad)

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--event_time_field=timestamp",
         f"--counts_sink=file://{tmp_path}/counts", "--counts_group_by=path"],
    )  # fmt: skip

    assert report.balanced
    # The counts are a side aggregation: the record without a path is written, not counted.
    assert sorted(r["request_id"] for r in read_jsonl(tmp_path / "out")) == sorted(
        e["request_id"] for e in data + bad
    )
    counts = {
        f"{r['path']}:{r['window_start']}": r["events"] for r in read_jsonl(tmp_path / "counts")
    }
    assert counts == {key: row["hits"] for key, row in expected_metrics(data).items()}
    assert read_jsonl(tmp_path / "dlq") == []
    assert report.count("not_aggregated.missing_field") == 1


PROFILES = {"user-0": 5.0, "user-1": 20.0, "user-2": 1.0}  # user-3 has no profile


def test_enrich_and_alert_on_user_events(tmp_path: Path) -> None:
    data = access_log(80)
    bad = [{**data[0], "user_id": ["user-0"]}]
    source = write_jsonl(tmp_path / "in.jsonl", data + bad)
    profiles = write_jsonl(
        tmp_path / "profiles.jsonl",
        [{"user_id": user, "usual_ms": usual} for user, usual in PROFILES.items()],
    )

    report = run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source=file://{source}", f"--profiles=file://{profiles}?key={{user_id}}",
         "--rules={slow: duration_ms > 3 * profile.usual_ms}", "--event_time_field=timestamp",
         f"--alert_sink=file://{tmp_path}/alerts", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced
    written = {r["request_id"]: r for r in read_jsonl(tmp_path / "out")}
    assert sorted(written) == sorted(e["request_id"] for e in data)
    for event in data:
        usual = PROFILES.get(event["user_id"])
        profile = written[event["request_id"]]["profile"]
        assert (profile or {}).get("usual_ms") == usual
    slow = {
        e["request_id"]
        for e in data
        if e["user_id"] in PROFILES and e["duration_ms"] > 3 * PROFILES[e["user_id"]]
    }
    assert {a["request_id"] for a in read_jsonl(tmp_path / "alerts")} == slow
    dead = read_jsonl(tmp_path / "dlq")
    assert [(d["reason"], d["step"]) for d in dead] == [("wrong_type", "fields")]
    assert "'user_id'" in dead[0]["error_message"]


def order_change(op: str, ref: str, pos: int, **after: Any) -> dict[str, Any]:
    """A Debezium (MySQL, schemas off) change of the user's own ``shop.orders`` table."""
    row = {"order_ref": ref, **after} if op != "d" else None
    before = {"order_ref": ref} if op in ("u", "d") else None
    source = {"connector": "mysql", "db": "shop", "table": "orders", "file": "binlog.000001",
              "pos": pos, "row": 0, "ts_ms": 1_764_064_800_000 + pos}  # fmt: skip
    return {"before": before, "after": row, "source": source, "op": op,
            "ts_ms": 1_764_064_800_000 + pos}  # fmt: skip


def test_cdc_replicate_with_the_users_key_column(tmp_path: Path) -> None:
    changes = [
        order_change("c", "A-1", 10, total=5),
        order_change("c", "A-2", 20, total=7),
        order_change("u", "A-1", 30, total=6),
        order_change("c", "A-3", 40, total=9),
        order_change("d", "A-2", 50),
    ]
    keyless = order_change("c", "A-4", 60, total=1)
    keyless["after"].pop("order_ref")
    source = write_jsonl(tmp_path / "changes.jsonl", [*changes, keyless])

    report = run_pipeline(
        get_pipeline("cdc_replicate"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--key_columns=shop.orders=order_ref"],
    )  # fmt: skip

    assert report.balanced
    final: dict[str, dict[str, Any]] = {}
    for change in changes:
        ref = (change["after"] or change["before"])["order_ref"]
        if change["op"] == "d":
            final.pop(ref, None)
        else:
            final[ref] = change["after"]
    rows = read_jsonl(tmp_path / "out")
    assert {r["table"] for r in rows} == {"shop.orders"}
    assert {r["key"]["order_ref"]: r["row"] for r in rows} == final
    dead = read_jsonl(tmp_path / "dlq")
    assert [d["reason"] for d in dead] == ["cdc_no_key"]
    assert "order_ref" in dead[0]["error_message"]


def test_the_fields_are_checked_after_the_udf(tmp_path: Path) -> None:
    data = [{**without(e, "user_id"), "uid": e["user_id"]} for e in access_log(40)]
    source = write_jsonl(tmp_path / "in.jsonl", [*data, without(data[0], "uid")])
    udf = tmp_path / "udf.py"
    udf.write_text(
        "def rename(record):\n"
        "    if 'uid' in record:\n"
        "        record['user_id'] = record.pop('uid')\n"
        "    return record\n"
    )

    report = run_pipeline(
        get_pipeline("sessionize"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out", "--key_field=user_id",
         "--event_time_field=timestamp", f"--udf_file={udf}", "--udf_function=rename"],
    )  # fmt: skip

    assert report.balanced
    renamed = [{**without(e, "uid"), "user_id": e["uid"]} for e in data]
    rows = read_jsonl(tmp_path / "out")
    assert sum(r["event_count"] for r in rows) == len(renamed)
    assert {r["user_id"] for r in rows} == {e["user_id"] for e in renamed}
    dead = read_jsonl(tmp_path / "out_dead_letter")
    assert [(d["reason"], d["step"]) for d in dead] == [("missing_field", "fields")]
