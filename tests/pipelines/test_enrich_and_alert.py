"""enrich_and_alert end to end: profiles in the real Redis, a file of transactions, alerts on the
Pub/Sub emulator, records to files; expected values computed here in plain Python."""

from __future__ import annotations

import calendar
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipelines.catalog import get_pipeline
from pipelines.framework.options import OptionError
from pipelines.framework.run import build_pipeline, run_pipeline
from tests.support import pull_json
from transforms.event_time import format_timestamp
from transforms.io.redis.text import to_text
from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN

START = 1_764_064_800  # 2025-11-25T10:00:00Z, a multiple of 10 minutes
PROJECT = "local-project"
PROFILES = {
    "c1": {"risk_score": 0.2, "typical_amount": 50.0, "tier": "gold"},
    "c2": {"risk_score": 0.9, "typical_amount": 100.0, "tier": "silver"},
    "c3": {"risk_score": 0.1, "typical_amount": 20.0, "tier": "bronze"},
}
RULES = (
    '{high_amount: "amount > 3 * profile.typical_amount", high_risk: "profile.risk_score > 0.8"}'
)


def transactions() -> list[dict[str, Any]]:
    """c1 busy in the first 10 minutes, c2 risky, c3 quiet, c9 without a profile."""
    plan = [("c1", 40), ("c1", 45), ("c1", 200), ("c1", 60), ("c1", 151), ("c1", 30),
            ("c2", 90), ("c2", 400), ("c3", 61), ("c3", 59), ("c9", 10), ("c9", 5000),
            ("c1", 20)]  # fmt: skip
    out = []
    for i, (customer, amount) in enumerate(plan):
        ts = START + 40 * i + (700 if i == len(plan) - 1 else 0)  # the last c1 in the 2nd window
        out.append({"transaction_id": f"t{i}", "customer_id": customer, "amount": amount,
                    "ts": format_timestamp(ts)})  # fmt: skip
    return out


def expected_alerts(unique: list[dict[str, Any]]) -> dict[str, str]:
    """transaction id -> the first rule it matches (rules in order), for profiled ones."""
    alerts = {}
    for txn in unique:
        profile = PROFILES.get(txn["customer_id"])
        if profile is None:
            continue
        if txn["amount"] > 3 * profile["typical_amount"]:
            alerts[txn["transaction_id"]] = "high_amount"
        elif profile["risk_score"] > 0.8:
            alerts[txn["transaction_id"]] = "high_risk"
    return alerts


def expected_bursts(unique: list[dict[str, Any]], more_than: int) -> dict[tuple[str, str], int]:
    """(customer, window start) -> events, for windows of 10 minutes with more than N."""
    counts: Counter[tuple[str, str]] = Counter()
    for txn in unique:
        seconds = calendar.timegm(time.strptime(txn["ts"], "%Y-%m-%dT%H:%M:%SZ"))
        counts[(txn["customer_id"], format_timestamp(seconds // 600 * 600))] += 1
    return {key: n for key, n in counts.items() if n > more_than}


@pytest.fixture
def profiles(redis_server: Any, unique_name: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.endpoint)
    for customer, row in PROFILES.items():
        client.hset(f"{unique_name}:p:{customer}", mapping={k: to_text(v) for k, v in row.items()})
    yield f"{redis_server.endpoint}?key={unique_name}:p:{{customer_id}}"
    client.delete(*client.keys(f"{unique_name}:*"))


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]


@pytest.mark.integration
def test_profiles_from_redis_alerts_to_pubsub_records_to_files(
    tmp_path: Path, profiles: str, pubsub_topic: tuple[str, str]
) -> None:
    data = transactions()
    lines = [json.dumps(t) for t in data]
    lines += [json.dumps(data[1]), json.dumps(data[4])]  # redelivered: duplicates
    lines += ["{broken", json.dumps({"transaction_id": "bad", "ts": "not a time"})]
    source = tmp_path / "transactions.jsonl"
    source.write_text("\n".join(lines) + "\n")
    topic, subscription = pubsub_topic

    report = run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source=file://{source}", f"--profiles={profiles}", f"--rules={RULES}",
         "--on_missing=drop", f"--alert_sink=pubsub://{topic}", "--burst_count=4",
         "--burst_window=10m", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    profiled = [t for t in data if t["customer_id"] in PROFILES]
    written = read_jsonl(tmp_path / "out")
    assert sorted(r["transaction_id"] for r in written) == sorted(
        t["transaction_id"] for t in profiled
    )
    for record in written:
        assert record["profile"] == PROFILES[record["customer_id"]]
    dead = read_jsonl(tmp_path / "dlq")
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "invalid_json"]

    rule_alerts = expected_alerts(data)
    bursts = expected_bursts(profiled, 4)
    assert rule_alerts and bursts == {("c1", format_timestamp(START)): 6}
    alerts = pull_json(subscription, len(rule_alerts) + len(bursts))
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        by_kind["burst" if alert["alert"] == "burst" else "rule"].append(alert)
    assert {a["transaction_id"]: a["alert"] for a in by_kind["rule"]} == rule_alerts
    assert len(by_kind["rule"]) == len(rule_alerts)  # one alert each (first match)
    assert all(a["profile"] == PROFILES[a["customer_id"]] for a in by_kind["rule"])
    assert {(a["customer_id"], a["window_start"]): a["events"] for a in by_kind["burst"]} == bursts

    counters = report.counters
    assert counters[READ] == len(lines)
    assert counters[WRITTEN] == len(profiled)
    assert counters["written_alerts"] == len(alerts)
    assert counters["dropped.duplicate"] == 2
    assert counters["dropped.missing_reference"] == 2  # c9
    assert counters[READ] == counters[WRITTEN] + counters[DEAD_LETTERED] + counters[DROPPED]
    assert report.balanced


def write_inputs(tmp_path: Path, data: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Writes the transactions and the PROFILES table as JSON Lines files; returns both."""
    source = tmp_path / "transactions.jsonl"
    source.write_text("\n".join(json.dumps(t) for t in data) + "\n")
    table = tmp_path / "profiles.jsonl"
    table.write_text("\n".join(json.dumps({"customer_id": c, **p}) for c, p in PROFILES.items()))
    return source, table


def test_a_side_input_file_of_profiles_and_per_route_sinks(tmp_path: Path) -> None:
    data = transactions()
    source, table = write_inputs(tmp_path, data)

    report = run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source=file://{source}", f"--profiles=file://{table}?key={{customer_id}}",
         f"--rules={RULES}", "--route_mode=all", f"--alert_sink=file://{tmp_path}/alerts",
         f"--route_sinks=high_risk=file://{tmp_path}/risky", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    written = read_jsonl(tmp_path / "out")
    assert len(written) == len(data)  # on_missing=pass: c9 comes out with a null profile
    assert all(r["profile"] is None for r in written if r["customer_id"] == "c9")
    high_amount = {
        t["transaction_id"]
        for t in data
        if t["customer_id"] in PROFILES
        and t["amount"] > 3 * PROFILES[t["customer_id"]]["typical_amount"]
    }
    risky = {t["transaction_id"] for t in data if t["customer_id"] == "c2"}
    assert {a["transaction_id"] for a in read_jsonl(tmp_path / "alerts")} == high_amount
    assert {a["transaction_id"] for a in read_jsonl(tmp_path / "risky")} == risky
    assert report.count("written_alerts") == len(high_amount)
    assert report.count("written_alerts_high_risk") == len(risky)
    assert report.balanced and report.count(DEAD_LETTERED) == 0


def test_bursts_leave_records_they_cannot_key_in_the_sink_and_count_them(tmp_path: Path) -> None:
    # The bursts are a side aggregation: a record without the burst key (or with an object or
    # a list there) is enriched and written like any other; the bursts only count it.
    keyed = [("t1", "eu"), ("t2", "eu"), ("t3", None), ("t4", ["eu"]), ("t5", {"x": 1})]
    data = []
    for i, (txn, region) in enumerate(keyed):
        record: dict[str, Any] = {"transaction_id": txn, "customer_id": "c1", "amount": 1,
                                  "ts": format_timestamp(START + i)}  # fmt: skip
        if region is not None:
            record["region"] = region
        data.append(record)
    source, table = write_inputs(tmp_path, data)

    report = run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source=file://{source}", f"--profiles=file://{table}?key={{customer_id}}",
         "--burst_count=1", "--burst_key=region", f"--alert_sink=file://{tmp_path}/alerts",
         f"--sink=file://{tmp_path}/out", f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced, report.render()
    assert report.count(DEAD_LETTERED) == 0 and read_jsonl(tmp_path / "dlq") == []
    written = read_jsonl(tmp_path / "out")
    assert sorted(r["transaction_id"] for r in written) == [t["transaction_id"] for t in data]
    assert report.count(WRITTEN) == len(data)
    assert report.count("not_aggregated.missing_field") == 1  # t3
    assert report.count("not_aggregated.wrong_type") == 2  # t4, t5
    bursts = [a for a in read_jsonl(tmp_path / "alerts") if a["alert"] == "burst"]
    assert [(b["region"], b["events"]) for b in bursts] == [("eu", 2)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rules={a: amount >}"], "--rules"),
        (["--rules=/nonexistent/rules.yaml"], "--rules: no such file '/nonexistent/rules.yaml'"),
        (["--route_sinks=nope=file:///tmp/x"], "--route_sinks"),
        (["--profiles=redis://127.0.0.1:6390/0"], "--profiles"),
        (["--burst_window=soon", "--burst_count=3"], "--burst_window"),
        (["--burst_window=0s", "--burst_count=3"], "--burst_window must be positive"),
        (["--dedup_key=@offset"], "--dedup_"),
        (["--burst_count=-1"], "--burst_count=-1: .*a positive number"),
        (["--burst_window=5m"], "--burst_window applies only with burst alerts"),
        (["--burst_count=2", "--burst_key=user.id"], "group_by takes top-level fields"),
    ],
)
def test_bad_options_fail_before_anything_runs(args: list[str], message: str) -> None:
    base = ["--source=generator://events?count=1", "--sink=stdout://",
            "--dead_letter=stdout://", "--alert_sink=stdout://",
            "--profiles=redis://127.0.0.1:6390/0?key=p:{customer_id}"]  # fmt: skip
    with pytest.raises(OptionError, match=message):
        build_pipeline(get_pipeline("enrich_and_alert"), base + args)
