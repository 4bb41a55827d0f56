"""metrics_to_redis end to end: the issue's spec on a file, Redis hashes, the demo."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from pipelines.catalog import get_pipeline
from pipelines.framework.run import run_pipeline
from transforms.event_time import format_timestamp
from transforms.metrics import DEAD_LETTERED, READ

SPEC = """\
event_time: ts            # field holding the event time (ISO-8601 or epoch seconds/millis)
window: {type: tumbling, size: 60s}
group_by: [endpoint]
aggregates:
  requests: count()
  errors: count_if(status_code >= 500)
  avg_latency_ms: mean(latency_ms)
  max_latency_ms: max(latency_ms)
having: requests >= 1
allowed_lateness: 0s
"""
START = 1_764_064_800  # a whole minute


def events(n: int) -> list[dict[str, Any]]:
    """Events over five minutes, out of order, on three endpoints."""
    out = []
    for i in range(n):
        ts = START + (i * 37) % 300 + (i % 7) / 10
        out.append({
            "event_id": f"e{i}", "ts": ts, "user_id": f"u{i % 11}", "event_type": "click",
            "endpoint": f"/api/{'abc'[i % 3]}", "status_code": (200, 503, 200, 404)[i % 4],
            "latency_ms": float(i % 50) + 0.5,
        })  # fmt: skip
    return out


def expected_rows(data: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The spec computed in plain Python: one final row per endpoint and minute."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for event in data:
        groups[(event["endpoint"], math.floor(event["ts"] / 60) * 60)].append(event)
    rows = {}
    for (endpoint, start), items in groups.items():
        latencies = [e["latency_ms"] for e in items]
        rows[(endpoint, format_timestamp(start))] = {
            "endpoint": endpoint,
            "window_start": format_timestamp(start),
            "window_end": format_timestamp(start + 60),
            "requests": len(items),
            "errors": sum(1 for e in items if e["status_code"] >= 500),
            "avg_latency_ms": sum(latencies) / len(latencies),
            "max_latency_ms": max(latencies),
        }
    return rows


def write_input(tmp_path: Path, data: list[dict[str, Any]], bad: list[bytes]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([json.dumps(e).encode() for e in data] + bad) + b"\n")
    return path


def test_spec_file_on_a_bounded_file_gives_one_final_row_per_group_and_window(
    tmp_path: Path,
) -> None:
    data = events(600)
    source = write_input(tmp_path, data, [b"{broken", json.dumps({"ts": "x"}).encode()])
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out, dlq = tmp_path / "out", tmp_path / "dlq"

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "metrics_to_redis",
         f"--source=file://{source}", f"--spec={spec}", f"--sink=file://{out}",
         f"--dead_letter=file://{dlq}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for path in out.glob("*.jsonl") for line in path.open()]
    got = {(r["endpoint"], r["window_start"]): r for r in rows}
    assert len(got) == len(rows), "one row per group and window"
    expected = expected_rows(data)
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        assert row["timing"] == "ON_TIME"
        for name, value in want.items():
            assert row[name] == pytest.approx(value), (key, name)
    dead = [json.loads(line) for path in dlq.glob("*.jsonl") for line in path.open()]
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "invalid_json"]
    assert "balanced" in result.stdout


@pytest.mark.integration
def test_rows_land_in_redis_hashes_keyed_by_group_and_window(
    redis_clean: Any, tmp_path: Path
) -> None:
    data = events(300)
    source = write_input(tmp_path, data, [])
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    url = redis_clean.endpoint
    key = "m:{endpoint}:{window_start}"

    report = run_pipeline(
        get_pipeline("metrics_to_redis"),
        [f"--source=file://{source}", f"--spec={spec}",
         f"--sink={url}?mode=hash&key={key}&ttl=3600",
         f"--history=file://{tmp_path}/history", f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == len(data)
    assert report.count(DEAD_LETTERED) == 0
    client = redis.Redis.from_url(url, decode_responses=True)
    expected = expected_rows(data)
    assert sorted(client.keys("m:*")) == sorted(f"m:{e}:{w}" for e, w in expected)
    for (endpoint, window), want in expected.items():
        stored = client.hgetall(f"m:{endpoint}:{window}")
        assert int(stored["requests"]) == want["requests"]
        assert int(stored["errors"]) == want["errors"]
        assert float(stored["max_latency_ms"]) == pytest.approx(want["max_latency_ms"])
        assert 0 < client.ttl(f"m:{endpoint}:{window}") <= 3600


def test_bad_spec_fails_before_the_pipeline_starts(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("max(latency_ms)", "max(latency)"))
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "metrics_to_redis",
         "--source=generator://events?count=10", f"--spec={spec}", "--schema=builtin:events",
         f"--sink=file://{tmp_path}/o", f"--dead_letter=file://{tmp_path}/d"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "latency" in result.stderr and "record fields" in result.stderr
    assert not (tmp_path / "o").exists()


def test_demo_runs_live_and_balances(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "demo", f"--output={tmp_path}", "--count=1500",
         "--no-redis"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "metrics_to_redis: DONE" in result.stdout
    assert "balanced" in result.stdout
    rows = [json.loads(line) for p in (tmp_path / "metrics").glob("*.jsonl") for line in p.open()]
    assert rows and {"endpoint", "window_start", "requests", "timing"} <= set(rows[0])
    dead = [
        json.loads(line) for p in (tmp_path / "dead_letter").glob("*.jsonl") for line in p.open()
    ]
    assert {d["reason"] for d in dead} <= {"late", "bad_timestamp", "invalid_json",
                                           "invalid_utf8", "not_an_object", "schema"}  # fmt: skip
    assert "ON_TIME" in {r["timing"] for r in rows}
