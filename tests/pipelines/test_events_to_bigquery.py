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
