"""The command line: list, describe, run and demo, as a user calls them (in a subprocess)."""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.catalog import CATALOG, get_pipeline


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, timeout=300
    )


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def test_list_names_every_pipeline() -> None:
    result = cli("list")
    assert result.returncode == 0
    for name in CATALOG:
        assert name in result.stdout


def test_describe_prints_every_option_with_help_and_default() -> None:
    result = cli("describe", "events_to_bigquery")
    assert result.returncode == 0
    for option in get_pipeline("events_to_bigquery").options:
        assert f"--{option.name}" in result.stdout
        assert option.help.split(".")[0] in " ".join(result.stdout.split())
        if not option.required:
            assert f"default: {option.default}" in result.stdout


def test_unknown_scheme_fails_before_running_and_lists_known_schemes(tmp_path: Path) -> None:
    result = cli(
        "run", "events_to_bigquery", "--source=ftp://host/x", f"--sink=file://{tmp_path}/o",
        f"--dead_letter=file://{tmp_path}/d",
    )  # fmt: skip
    assert result.returncode == 2
    assert "no source for scheme 'ftp'" in result.stderr
    for scheme in ("generator://", "file://", "pubsub://"):
        assert scheme in result.stderr
    assert not (tmp_path / "o").exists()


def test_password_in_a_uri_is_redacted_in_errors(tmp_path: Path) -> None:
    result = cli(
        "run", "events_to_bigquery", "--source=generator://events?count=1",
        "--sink=redis://:hunter2@127.0.0.1:6390/0", f"--dead_letter=file://{tmp_path}/d",
    )  # fmt: skip
    assert result.returncode == 2
    assert "hunter2" not in result.stderr + result.stdout
    assert ":***@" in result.stderr


def test_bad_option_value_names_the_option(tmp_path: Path) -> None:
    result = cli(
        "run", "events_to_bigquery", "--source=generator://events?count=1",
        f"--sink=file://{tmp_path}/o", f"--dead_letter=file://{tmp_path}/d",
        "--event_time_field=when", "--schema=builtin:events",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--event_time_field=when" in result.stderr
    assert "'ts'" in result.stderr


_RUN = ("run", "events_to_bigquery", "--source=generator://events?count=1", "--sink=stdout://",
        "--dead_letter=stdout://")  # fmt: skip
_LAUNCH = ("template", "launch", "events_to_bigquery", "--project=proj-x",
           "--region=us-central1", "--bucket=gs://bucket-x")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "culprit", "suggestion"),
    [
        ((*_RUN, "--unkown_fields=drop"), 2, "--unkown_fields", "--unknown_fields"),
        ((*_RUN, "--event_time_fild=ts"), 2, "--event_time_fild", "--event_time_field"),
        ((*_RUN, "--sourc=generator://events"), 2, "--sourc", "--source"),
        ((*_RUN, "--runer=DirectRunner"), 2, "--runer", "--runner"),
        ((*_RUN, "--temp_locaton=/tmp"), 2, "--temp_locaton", "--temp_location"),
        ((*_LAUNCH, "--parameters=sink=stdout://,sorce=x"), 2, "'sorce'", "source"),
        (("lst",), 2, "'lst'", "list"),
        (("describe",), 2, "describe", "pipeline name"),
        (("run",), 2, "run", "pipeline name"),
    ],
)
def test_wrong_input_fails_with_one_message_naming_it(
    argv: tuple[str, ...], code: int, culprit: str, suggestion: str
) -> None:
    result = cli(*argv)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.lstrip().startswith("error:")
    named = [line for line in result.stderr.splitlines() if culprit in line]
    assert named, result.stderr
    assert suggestion in named[0]


def test_beam_pass_through_options_are_accepted(tmp_path: Path) -> None:
    result = cli(*_RUN, "--runner=DirectRunner", "--temp_location", str(tmp_path), "--no_auth")
    assert result.returncode == 0, result.stderr
    assert "Discarding unparseable args" not in result.stderr


def test_version_prints_the_package_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("pipelines ")
    assert result.stdout.split()[1][0].isdigit()


def test_run_file_to_file_accounts_for_every_line(tmp_path: Path) -> None:
    good = [
        {"event_id": f"e{i}", "ts": 1764064800 + i, "user_id": f"u{i % 3}",
         "event_type": "click", "status_code": 200, "latency_ms": 1.5 * i}
        for i in range(20)
    ]  # fmt: skip
    lines: list[bytes] = [json.dumps(event).encode() for event in good]
    bad = [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        json.dumps({**good[0], "status_code": "two hundred"}).encode(),
        json.dumps({**good[0], "ts": "soon"}).encode(),
        json.dumps({**good[0], "padding": "x" * 5000}).encode(),
    ]
    lines += bad
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out, dlq = tmp_path / "out", tmp_path / "dlq"

    result = cli(
        "run", "events_to_bigquery", f"--source=file://{source}", f"--sink=file://{out}",
        f"--dead_letter=file://{dlq}", "--max_payload_bytes=4096", "--schema=builtin:events",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    written = read_jsonl(out)
    dead = read_jsonl(dlq)
    assert sorted(r["event_id"] for r in written) == sorted(e["event_id"] for e in good)
    assert len(written) + len(dead) == len(lines)
    dead_by_line = {d["source"]["line"]: d for d in dead}
    assert sorted(dead_by_line) == list(range(len(good) + 1, len(lines) + 1))
    for number, record in dead_by_line.items():
        assert base64.b64decode(record["payload_bytes"]) == lines[number - 1]
        assert record["source"] == {"system": "file", "path": str(source), "line": number}
        assert record["step"] == "parse"
    reasons = [dead_by_line[n]["reason"] for n in sorted(dead_by_line)]
    expected = ["invalid_json", "invalid_utf8", "not_an_object", "schema", "bad_timestamp",
                "too_large"]  # fmt: skip
    assert reasons == expected
    assert f"read {len(lines):>15}".replace(" ", "") in result.stdout.replace(" ", "")
    assert "balanced" in result.stdout


def test_run_reads_compressed_files_and_skips_an_oversize_line(tmp_path: Path) -> None:
    good = [
        {"event_id": f"e{i}", "ts": 1764064800 + i, "user_id": f"u{i % 3}",
         "event_type": "click", "status_code": 200, "latency_ms": 1.5 * i}
        for i in range(10)
    ]  # fmt: skip
    huge = json.dumps({**good[0], "padding": "x" * 300_000}).encode()
    lines = [json.dumps(event).encode() for event in good[:5]] + [huge, b"{not json"]
    lines += [json.dumps(event).encode() for event in good[5:]]
    content = b"\n".join(lines) + b"\n"
    compressors = {"": bytes, ".gz": gzip.compress, ".bz2": bz2.compress,
                   ".zst": zstandard.ZstdCompressor().compress}  # fmt: skip
    for extension, compress in compressors.items():
        (tmp_path / f"in.jsonl{extension}").write_bytes(compress(content))
    out, dlq = tmp_path / "out", tmp_path / "dlq"

    result = cli(
        "run", "events_to_bigquery", f"--source=file://{tmp_path}/in.jsonl*",
        f"--sink=file://{out}", f"--dead_letter=file://{dlq}", "--max_payload_bytes=4096",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == len(good) * len(compressors)
    dead = {(d["source"]["path"], d["source"]["line"]): d for d in read_jsonl(dlq)}
    paths = [str(tmp_path / f"in.jsonl{extension}") for extension in compressors]
    assert sorted(dead) == sorted((path, line) for path in paths for line in (6, 7))
    for path in paths:
        too_large, invalid = dead[(path, 6)], dead[(path, 7)]
        assert too_large["reason"] == "too_large"
        assert too_large["payload_truncated"] is True
        assert base64.b64decode(too_large["payload_bytes"]) == huge[: 64 * 1024]
        assert too_large["payload_size"] == len(huge)
        assert too_large["payload_sha256"] == hashlib.sha256(huge).hexdigest()
        assert invalid["reason"] == "invalid_json"
        assert base64.b64decode(invalid["payload_bytes"]) == b"{not json"
    read = len(lines) * len(compressors)
    assert f"read {read:>15}".replace(" ", "") in result.stdout.replace(" ", "")
    assert "balanced" in result.stdout


def test_parquet_sink_writes_files_and_balances(tmp_path: Path) -> None:
    result = cli(
        "run", "events_to_bigquery", "--source=generator://events?count=3000&malformed=0.05",
        f"--sink=file://{tmp_path}/events?format=parquet",
        f"--dead_letter=file://{tmp_path}/dead_letter", "--schema=builtin:events",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "events") in result.stdout
    assert "read = written + dead_lettered + dropped: balanced" in result.stdout
    rows = sum(pq.read_table(path).num_rows for path in (tmp_path / "events").glob("*.parquet"))
    dead = sum(1 for path in (tmp_path / "dead_letter").glob("*.jsonl") for _ in path.open())
    assert rows + dead == 3000
    assert dead > 0
