"""The reference-table loaders of `transforms.enrich.loaders`, fed hostile rows.

A bad row of a reference table is skipped and counted alone (``enrich_rows_skipped``): the
table still loads and the run goes on. JSON Lines rows are decoded by the rules of Parse.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest

from tests.transforms.test_enrich import Result, run
from transforms.blocks import Block
from transforms.enrich.base import EnrichSettings, enrich_from_uri
from transforms.enrich.loaders import JsonLinesLoader
from transforms.errors import RecordError
from transforms.io.endpoint import EndpointError
from transforms.io.redis.text import KeyTemplate
from transforms.message import Message, Origin, Record
from transforms.parse import parse_message

GOOD = '{"user_id": "u1", "typical_amount": 100}'
# Hostile lines, each of a user that records ask for (u2), as the trial's tables had them.
HOSTILE = {
    "lone surrogate": r'{"user_id": "u2", "name": "\ud800"}',
    "NaN value": '{"user_id": "u2", "typical_amount": NaN}',
    "Infinity value": '{"user_id": "u2", "typical_amount": -Infinity}',
    "number out of range": '{"user_id": "u2", "typical_amount": 1e999}',
    "NaN key": '{"user_id": NaN, "name": "nankey"}',
    "nested too deeply": '{"user_id": "u2", "deep": ' + "[" * 200_000 + "]" * 200_000 + "}",
    "not JSON": '{"user_id": "u2",',
    "not an object": '["u2"]',
}


def txn(n: int, user: str) -> Record:
    data = {"txn": n, "user_id": user}
    origin = Origin("file", path="/in.jsonl", line=n)
    return Record(data, Message(json.dumps(data).encode(), {}, origin), None)


class Loaded:
    """What `enrich_file` gave: each user's profile, the dead letters and the counters."""

    def __init__(self, result: Result) -> None:
        self.profiles = {r.data["user_id"]: r.data["profile"] for r in result.records}
        self.errors = result.errors
        self.counters = result.counters


def enrich_file(path: Path, users: list[str]) -> Loaded:
    """Enriches one transaction per user from ``path`` (``key={user_id}``, missing=pass)."""
    transform = enrich_from_uri(
        f"file://{path}?key={{user_id}}", EnrichSettings("enrich_test", into="profile")
    )
    items = [Block([txn(n, user) for n, user in enumerate(users, 1)])]
    return Loaded(run(lambda pipeline: pipeline | beam.Create(items, reshuffle=False) | transform))


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("line", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_row_is_skipped_and_counted_alone(tmp_path: Path, line: str) -> None:
    path = write_lines(tmp_path / "users.jsonl", GOOD, line, "", '{"user_id": "u3"}')
    result = enrich_file(path, ["u1", "u2", "u3"])
    assert result.profiles == {
        "u1": {"user_id": "u1", "typical_amount": 100},
        "u2": None,  # its row was skipped: no profile, by the pass policy
        "u3": {"user_id": "u3"},
    }
    assert result.errors == []
    assert result.counters.get("enrich_rows_skipped") == 1
    assert "enrich_load_failures" not in result.counters


def test_a_lone_surrogate_no_record_asks_for_does_not_stop_the_run(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "users.jsonl", GOOD, r'{"user_id": "u5", "name": "\ud800"}')
    result = enrich_file(path, ["u1"])
    assert result.profiles == {"u1": {"user_id": "u1", "typical_amount": 100}}
    assert result.counters.get("enrich_rows_skipped") == 1


def test_rows_not_utf8_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_bytes(GOOD.encode() + b'\n{"user_id": "u2", "name": "bad\xff"}\n')
    result = enrich_file(path, ["u1", "u2"])
    assert result.profiles["u2"] is None and result.profiles["u1"] is not None
    assert result.counters.get("enrich_rows_skipped") == 1


def _parses(line: bytes) -> bool:
    try:
        parse_message(Message(line, {}, Origin("file")), max_bytes=sys.maxsize)
    except RecordError:
        return False
    return True


LINES = {
    **HOSTILE,
    "good": GOOD,
    "large number": '{"user_id": "u2", "x": 1e308}',
    "surrogate pair": r'{"user_id": "\ud83d\ude00"}',
}


@pytest.mark.parametrize("line", LINES.values(), ids=LINES.keys())
def test_rows_load_exactly_when_parse_would_take_them_as_records(tmp_path: Path, line: str) -> None:
    path = write_lines(tmp_path / "users.jsonl", line)
    table = JsonLinesLoader(str(path), KeyTemplate.parse("{user_id}"))(0.0)
    assert bool(table) == _parses(line.encode())


def test_a_large_row_loads(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "users.jsonl", json.dumps({"user_id": "u1", "pad": "x" * 2_000_000})
    )
    table = JsonLinesLoader(str(path), KeyTemplate.parse("{user_id}"))(0.0)
    assert len(table["u1"]["pad"]) == 2_000_000


def test_the_last_row_of_a_key_wins_and_repeats_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_lines(
        tmp_path / "users.jsonl",
        '{"user_id": "u1", "v": 1}',
        '{"user_id": "u2", "v": 1}',
        '{"user_id": "u1", "v": 2}',
        '{"user_id": "u1", "v": 3}',
    )
    with caplog.at_level(logging.WARNING, logger="transforms.enrich.loaders"):
        table = JsonLinesLoader(str(path), KeyTemplate.parse("{user_id}"))(0.0)
    assert table == {"u1": {"user_id": "u1", "v": 3}, "u2": {"user_id": "u2", "v": 1}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 reference rows repeat the key of an earlier row (first: 'u1')" in warnings[0]
    assert str(path) in warnings[0]


def test_rows_replaced_by_a_later_row_of_their_key_are_counted_in_a_run(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "users.jsonl",
        '{"user_id": "u1", "typical_amount": 1}',
        '{"user_id": "u1", "typical_amount": 2}',
        '{"user_id": "u1", "typical_amount": 3}',
    )
    result = enrich_file(path, ["u1"])
    assert result.profiles == {"u1": {"user_id": "u1", "typical_amount": 3}}
    assert result.counters.get("enrich_rows_replaced") == 2


def test_no_repeat_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_lines(tmp_path / "users.jsonl", GOOD, '{"user_id": "u2"}')
    with caplog.at_level(logging.WARNING, logger="transforms.enrich.loaders"):
        JsonLinesLoader(str(path), KeyTemplate.parse("{user_id}"))(0.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("customer", "key=customer names no field: write key={customer}"),
        ("customer:1", "key=customer:1 names no field: name a field in braces"),
        ("{{customer}}", "key={{customer}} names no field"),
    ],
)
def test_a_key_template_must_name_a_field(tmp_path: Path, key: str, message: str) -> None:
    path = write_lines(tmp_path / "users.jsonl", GOOD)
    settings = EnrichSettings("enrich_test", into="profile")
    with pytest.raises(EndpointError) as error:
        enrich_from_uri(f"file://{path}?key={key}", settings)
    assert message in str(error.value)
    with pytest.raises(EndpointError, match="names no field"):
        enrich_from_uri(f"redis://127.0.0.1:6390/0?key={key}", settings)


def test_the_cli_refuses_a_key_without_a_field_before_the_run(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "users.jsonl", GOOD)
    records = write_lines(tmp_path / "in.jsonl", '{"user_id": "u1", "ts": 1714550400}')
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "enrich_and_alert",
         f"--source=file://{records}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", f"--alert_sink=file://{tmp_path}/alerts",
         f"--profiles=file://{path}?key=customer"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: --profiles: file://{path}?key=customer: key=customer names no field: "
        "write key={customer}"
    ]
    assert not (tmp_path / "out").exists()
