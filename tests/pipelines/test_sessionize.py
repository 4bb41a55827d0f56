"""sessionize end to end: the issue's command on a file, against a plain-Python sessionization."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipelines.catalog import get_pipeline
from pipelines.catalog.sessionize import default_dead_letter
from pipelines.framework.options import OptionError
from pipelines.framework.run import build_pipeline
from transforms.event_time import format_timestamp

T0 = calendar.timegm((2026, 11, 25, 9, 0, 0))
GAP_S = 30 * 60


def activity() -> list[dict[str, Any]]:
    """Events of several users, shuffled; u1's third event bridges two bursts 40 min apart."""
    times = {
        "u1": [0, 600, 1200, 3600, 3900, 2400],  # 2400 arrives last and bridges 1200 -> 3600
        "u2": [100, 5000, 5100],  # two sessions
        "u3": [7000],
    }
    events = []
    for user, offsets in times.items():
        for n, offset in enumerate(offsets):
            events.append({"event_id": f"{user}-{n}", "user_id": user,
                           "ts": format_timestamp(T0 + offset), "event_type": f"t{n}"})  # fmt: skip
    return sorted(events, key=lambda e: (e["event_id"][-1], e["user_id"]), reverse=True)


def plain_sessions(events: list[dict[str, Any]], gap: float) -> list[dict[str, Any]]:
    """Sessionizes events per user in plain Python: a session ends after ``gap`` idle seconds."""
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for e in events:
        ts = dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
        by_user[e["user_id"]].append((ts, e["event_type"]))
    rows = []
    for user, items in by_user.items():
        items.sort()
        groups = [[items[0]]]
        for item in items[1:]:
            if item[0] - groups[-1][-1][0] < gap:
                groups[-1].append(item)
            else:
                groups.append([item])
        for group in groups:
            rows.append({
                "user_id": user,
                "session_start": format_timestamp(group[0][0]),
                "session_end": format_timestamp(group[-1][0]),
                "event_count": len(group),
                "duration_s": group[-1][0] - group[0][0],
                "first_event_type": group[0][1],
                "last_event_type": group[-1][1],
                "timing": "ON_TIME",
            })  # fmt: skip
    return sorted(rows, key=lambda r: (r["user_id"], r["session_start"]))


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]


def test_the_issue_command_gives_the_plain_python_sessions(tmp_path: Path) -> None:
    events = activity()
    source = tmp_path / "ACTIVITY.jsonl"
    lines = [json.dumps(e) for e in events] + ["{broken", json.dumps({"ts": "x", "user_id": "u9"})]
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "OUT"

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "sessionize", "--source", f"file://{source}",
         "--sink", f"file://{out}", "--key_field", "user_id", "--gap", "30m",
         "--event_time_field", "ts", "--include_fields", "event_type"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    got = sorted(read_jsonl(out), key=lambda r: (r["user_id"], r["session_start"]))
    expected = plain_sessions(events, GAP_S)
    assert [r["event_count"] for r in expected if r["user_id"] == "u1"] == [6]
    assert got == expected
    dead_folder = tmp_path / "OUT_dead_letter"
    assert f"dead letters go to file://{dead_folder}" in result.stderr
    dead = read_jsonl(dead_folder)
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "invalid_json"]
    assert re.search(
        r"read \d+ = aggregated \d+ \+ dead_lettered \(input\) \d+ \+ dropped \d+: balanced",
        result.stdout,
    )


def test_dead_letter_defaults_next_to_file_and_bigquery_sinks_only() -> None:
    assert default_dead_letter("file:///data/out/") == "file:///data/out_dead_letter"
    assert (
        default_dead_letter("bigquery://p:d.sessions?endpoint=http://127.0.0.1:9050")
        == "bigquery://p:d.sessions_dead_letter?endpoint=http://127.0.0.1:9050"
    )
    with pytest.raises(OptionError, match="--dead_letter is required with a redis:// sink"):
        default_dead_letter("redis://127.0.0.1:6379/0?key=s:{user_id}")


def test_unknown_key_field_fails_before_anything_runs(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(activity()[0]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "sessionize", f"--source=file://{source}",
         f"--sink=file://{tmp_path}/o", "--key_field=account", "--gap=30m",
         "--schema=builtin:events"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "account" in result.stderr and "schema" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key_field=user.id"], "--key_field/--include_fields: key field 'user.id' is a nested"),
        (["--key_field=u", "--gap=0s"], "^--gap must be positive"),
        (["--key_field=u", "--gap=0.5ms"], "^--gap: the session gap must be 1ms or more"),
        (["--key_field=u", "--include_fields=u,u"], "include_fields must be distinct"),
    ],
)
def test_bad_session_options_name_the_option_at_fault(args: list[str], message: str) -> None:
    base = ["--source=generator://events?count=1", "--sink=stdout://", "--dead_letter=stdout://",
            "--event_time_field=ts"]  # fmt: skip
    with pytest.raises(OptionError, match=message):
        build_pipeline(get_pipeline("sessionize"), base + args)
