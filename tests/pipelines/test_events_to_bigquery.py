"""events_to_bigquery end to end: the balance from Beam metrics."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.catalog import get_pipeline
from pipelines.run import run_pipeline
from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN


def count_lines(folder: Path) -> int:
    return sum(1 for path in folder.glob("*.jsonl") for _ in path.open())


def test_balance_from_metrics_matches_the_files(tmp_path: Path) -> None:
    count = 5000
    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [
            f"--source=generator://events?count={count}&seed=3&malformed=0.04&late=0.1",
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
