"""UDFs that misbehave on some records: each such record is dead-lettered, the run goes on.

Every case runs the real ``events_to_bigquery`` pipeline file -> file with a UDF written to a
file, and checks the dead letters (original bytes, step, reason) and the balance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.catalog import get_pipeline
from pipelines.framework.options import OptionError
from pipelines.framework.run import RunReport, run_pipeline
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN

UDF = """\
import sys


def exits(record):
    if record["user_id"] == "u1":
        sys.exit(3)
    return record


def not_json(record):
    if record["user_id"] == "u2":
        record["raw"] = b"\\xff"
    if record["user_id"] == "u3":
        record["tags"] = {"a", "b"}
    if record["user_id"] == "u4":
        record["name"] = "\\ud800"
    return record


def breaks_schema(record):
    if record["user_id"] == "u1":
        record["event_type"] = ["not", "a", "string"]
    if record["user_id"] == "u2":
        del record["event_id"]
    return record
"""

EXITS_ON_LOAD = "import sys\nsys.exit(1)\n\ndef f(record):\n    return record\n"


def events(folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    rows = [
        {"event_id": f"e{i}", "ts": 1_764_064_800 + i, "user_id": f"u{i % 5}",
         "event_type": ("click", "view", "buy")[i % 3]}
        for i in range(40)
    ]  # fmt: skip
    path = folder / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, rows


def run_udf(folder: Path, function: str, source: str = UDF) -> tuple[RunReport, list[dict]]:
    path, _ = events(folder)
    (folder / "udf.py").write_text(source)
    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{path}", f"--sink=file://{folder}/out",
         f"--dead_letter=file://{folder}/dlq", f"--udf_file={folder}/udf.py",
         f"--udf_function={function}", "--schema=builtin:events", "--event_time_field=ts"],
    )  # fmt: skip
    dead = [json.loads(line) for p in (folder / "dlq").glob("*.jsonl") for line in p.open()]
    return report, dead


def by_user(rows: list[dict[str, Any]], *users: str) -> list[str]:
    return sorted(json.dumps(row) for row in rows if row["user_id"] in users)


def test_a_udf_calling_sys_exit_dead_letters_the_record_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    report, dead = run_udf(tmp_path, "exits")
    _, rows = events(tmp_path)
    assert report.balanced
    assert report.count(READ) == len(rows)
    assert report.count(WRITTEN) == len(rows) - len(by_user(rows, "u1"))
    assert report.count(f"{DEAD_LETTERED}.udf_error") == report.count(DEAD_LETTERED)
    assert sorted(d["payload_string"] for d in dead) == by_user(rows, "u1")
    for record in dead:
        assert (record["step"], record["reason"]) == ("udf", "udf_error")
        assert "SystemExit" in record["error_message"]


def test_a_udf_returning_values_that_are_not_json_dead_letters_the_record(
    tmp_path: Path,
) -> None:
    report, dead = run_udf(tmp_path, "not_json")
    _, rows = events(tmp_path)
    assert report.balanced
    assert report.count(WRITTEN) == len(by_user(rows, "u0", "u1"))
    assert report.count(DEAD_LETTERED) == report.count(f"{DEAD_LETTERED}.udf_error")
    assert sorted(d["payload_string"] for d in dead) == by_user(rows, "u2", "u3", "u4")
    messages = {json.loads(d["payload_string"])["user_id"]: d["error_message"] for d in dead}
    assert "raw: a bytes is not JSON" in messages["u2"]
    assert "tags: a set is not JSON" in messages["u3"]
    assert "name: text that is not UTF-8" in messages["u4"]
    assert {d["step"] for d in dead} == {"udf"}


def test_a_udf_returning_a_record_the_schema_rejects_dead_letters_it_udf_schema(
    tmp_path: Path,
) -> None:
    report, dead = run_udf(tmp_path, "breaks_schema")
    _, rows = events(tmp_path)
    assert report.balanced
    assert report.count(WRITTEN) == len(by_user(rows, "u0", "u3", "u4"))
    assert report.count(f"{DEAD_LETTERED}.udf_schema") == report.count(DEAD_LETTERED)
    assert sorted(d["payload_string"] for d in dead) == by_user(rows, "u1", "u2")
    for record in dead:
        assert (record["step"], record["reason"]) == ("udf", "udf_schema")
        assert "the schema rejects" in record["error_message"]
    written = [json.loads(line) for p in (tmp_path / "out").glob("*.jsonl") for line in p.open()]
    assert all(isinstance(row["event_type"], str) for row in written)


def test_a_udf_file_that_exits_while_loading_is_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="loading the file failed: SystemExit"):
        run_udf(tmp_path, "f", EXITS_ON_LOAD)
