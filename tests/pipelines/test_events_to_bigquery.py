"""events_to_bigquery end to end: the balance from Beam metrics."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.catalog import get_pipeline
from pipelines.framework.run import run_pipeline
from transforms.event_time import parse_timestamp
from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN


def count_lines(folder: Path) -> int:
    return sum(1 for path in folder.glob("*.jsonl") for _ in path.open())


def test_balance_from_metrics_matches_the_files(tmp_path: Path) -> None:
    count = 5000
    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [
            f"--source=generator://events?count={count}&seed=3&malformed=0.04&late=0.1",
            "--schema=builtin:events",
            f"--sink=file://{tmp_path}/out",
            f"--dead_letter=file://{tmp_path}/dlq",
        ],
    )
    assert report.state == "DONE"
    assert report.count(READ) == count
    assert report.count(READ) == (
        report.count(WRITTEN) + report.count(DEAD_LETTERED) + report.count(DROPPED)
    )
    assert report.balanced
    assert report.count(WRITTEN) == count_lines(tmp_path / "out")
    assert report.count(DEAD_LETTERED) == count_lines(tmp_path / "dlq")
    assert report.count(DEAD_LETTERED) > 0
    reasons = {
        name.split(".", 1)[1]: value
        for name, value in report.counters.items()
        if name.startswith(DEAD_LETTERED + ".")
    }
    assert sum(reasons.values()) == report.count(DEAD_LETTERED)
    on_disk: dict[str, int] = {}
    for path in (tmp_path / "dlq").glob("*.jsonl"):
        for line in path.open():
            reason = json.loads(line)["reason"]
            on_disk[reason] = on_disk.get(reason, 0) + 1
    assert on_disk == reasons


def test_per_window_counts_match_plain_python_and_keep_the_balance(tmp_path: Path) -> None:
    events = [
        {"event_id": f"e{i}", "ts": 1_764_064_800 + (i * 13) % 240, "user_id": "u1",
         "event_type": ("click", "view", "buy")[i % 3]}
        for i in range(90)
    ]  # fmt: skip
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events) + "\n")

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", f"--counts_sink=file://{tmp_path}/counts",
         "--counts_window=60s", "--counts_group_by=event_type"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(WRITTEN) == len(events)
    expected: dict[tuple[str, int], int] = {}
    for event in events:
        key = (event["event_type"], event["ts"] // 60 * 60)
        expected[key] = expected.get(key, 0) + 1
    rows = [json.loads(line) for p in (tmp_path / "counts").glob("*.jsonl") for line in p.open()]
    got = {(r["event_type"], int(parse_timestamp(r["window_start"]))): r["events"] for r in rows}
    assert got == expected
    assert report.count("written_counts") == len(expected)


def test_counts_leave_records_they_cannot_key_in_the_sink_and_count_them(tmp_path: Path) -> None:
    # The counts are a side aggregation: a record without a group key (or with a list there)
    # is still written whole; the counts only count it as not_aggregated.<reason>.
    lines = [
        {"order_no": "o1", "amount_cents": 5, "region": "eu", "placed_at": 1714550401000},
        {"order_no": "o2", "amount_cents": 6, "placed_at": 1714550402000},
        {"order_no": "o3", "amount_cents": 6, "region": ["eu"], "placed_at": 1714550402000},
        {"order_no": "o4", "amount_cents": 7, "region": None, "placed_at": 1714550403000},
        {"order_no": "o5", "amount_cents": 8, "region": "eu", "placed_at": 1714550404000},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--event_time_field=placed_at",
         f"--counts_sink=file://{tmp_path}/counts", "--counts_window=1m",
         "--counts_group_by=region"],
    )  # fmt: skip

    assert report.balanced, report.render()
    assert report.count(WRITTEN) == len(lines) and report.count(DEAD_LETTERED) == 0
    written = [json.loads(line) for p in (tmp_path / "out").glob("*.jsonl") for line in p.open()]
    assert sorted(r["order_no"] for r in written) == [line["order_no"] for line in lines]
    assert count_lines(tmp_path / "dlq") == 0
    assert report.count("not_aggregated.missing_field") == 2  # o2 (absent), o4 (null)
    assert report.count("not_aggregated.wrong_type") == 1  # o3 (a list)
    rows = [json.loads(line) for p in (tmp_path / "counts").glob("*.jsonl") for line in p.open()]
    assert [(r["region"], r["events"]) for r in rows] == [("eu", 2)]
