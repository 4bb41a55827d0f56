"""The command line: list, describe, run and demo, as a user calls them.

Errors raised before a pipeline starts, ``list`` and ``describe`` go through the command's
``main`` in this process (`cli_in_process`); runs, and a few errors that must cross the process
boundary, go through ``python -m pipelines`` in a subprocess (`cli`).
"""

from __future__ import annotations

import argparse
import base64
import bz2
import contextlib
import gzip
import hashlib
import io
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.devtools import cli as devtools_cli
from pipelines.framework import cli as pipelines_cli
from transforms.redaction import PROJECT_LOGGERS


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@contextlib.contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    """Runs the block with ``env`` as the whole environment (unchanged for ``None``)."""
    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Puts back what a command's ``main`` changes in logging and the excepthook."""
    root = logging.getLogger()
    loggers = [root, *map(logging.getLogger, (*PROJECT_LOGGERS, "apache_beam"))]
    levels = {logger: logger.level for logger in logging.Logger.manager.loggerDict.values()
              if isinstance(logger, logging.Logger)}  # fmt: skip
    handlers = list(root.handlers)
    filters = {target: list(target.filters) for target in [*loggers, *handlers]}
    hook = sys.excepthook
    try:
        yield
    finally:
        sys.excepthook = hook
        root.handlers[:] = handlers
        for target, kept in filters.items():
            target.filters[:] = kept
        for logger, level in levels.items():
            logger.setLevel(level)


def _in_process(
    main: Callable[[Sequence[str]], int], args: Sequence[str], env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    """Runs ``main(args)`` here as its process would, capturing what it writes and logs."""
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)  # what the process logs on its standard error
    with _environment(env), _logging_kept():
        logging.getLogger().addHandler(handler)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse's --help
                code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_in_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pipelines ARGS`` through its ``main`` in this process (no pipeline runs)."""
    return _in_process(pipelines_cli.main, args, env)


def devtools(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.devtools ARGS`` through its ``main`` in this process."""
    return _in_process(devtools_cli.main, args, None)


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def test_list_names_every_pipeline() -> None:
    result = cli_in_process("list")
    assert result.returncode == 0
    for name in CATALOG:
        assert name in result.stdout


Described = dict[str, tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]]


@pytest.fixture(scope="module")
def described() -> Described:
    """``describe NAME`` and ``describe NAME --format=json`` of every pipeline, run once."""
    return {
        name: (cli_in_process("describe", name), cli_in_process("describe", name, "--format=json"))
        for name in CATALOG
    }


def test_describe_prints_every_option_with_help_and_default(described: Described) -> None:
    result = described["events_to_bigquery"][0]
    assert result.returncode == 0
    for option in get_pipeline("events_to_bigquery").options:
        assert f"--{option.name}" in result.stdout
        assert option.help.split(".")[0] in " ".join(result.stdout.split())
        if not option.required:
            assert f"default: {option.default}" in result.stdout


def test_unknown_scheme_fails_before_running_and_lists_known_schemes(tmp_path: Path) -> None:
    result = cli_in_process(
        "run", "events_to_bigquery", "--source=ftp://host/x", f"--sink=file://{tmp_path}/o",
        f"--dead_letter=file://{tmp_path}/d",
    )  # fmt: skip
    assert result.returncode == 2
    assert "no source for scheme 'ftp'" in result.stderr
    for scheme in ("generator://", "file://", "pubsub://"):
        assert scheme in result.stderr
    assert not (tmp_path / "o").exists()


def test_password_in_a_uri_is_redacted_in_errors(tmp_path: Path) -> None:
    result = cli_in_process(
        "run", "events_to_bigquery", "--source=generator://events?count=1",
        "--sink=redis://:hunter2@127.0.0.1:6390/0", f"--dead_letter=file://{tmp_path}/d",
    )  # fmt: skip
    assert result.returncode == 2
    assert "hunter2" not in result.stderr + result.stdout
    assert ":***@" in result.stderr


def test_bad_option_value_names_the_option(tmp_path: Path) -> None:
    result = cli_in_process(
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
_PARAMETERS = "--parameters=source=generator://events,sink=stdout://,dead_letter=stdout://"
_BUILD = ("template", "build", "events_to_bigquery", "--image=gcr.io/p/i:1")
_PUBSUB = ("--source=pubsub://projects/proj-x/subscriptions/sub-x",
           "--sink=pubsub://projects/proj-x/topics/out-x",
           "--dead_letter=pubsub://projects/proj-x/topics/dead-x")  # fmt: skip
_REPLAY = ("run", "dlq_replay", "--source=file://{tmp}/folder/in.jsonl", "--sink=stdout://",
           "--dead_letter=stdout://", "--parked=stdout://")  # fmt: skip
# A run that starts the pipeline, and fails on a worker: it goes through a process of its own, as
# does one usage error, to check the exit codes and standard error of `python -m pipelines`.
_STARTS = ("run", "events_to_bigquery", *_PUBSUB, "--max_seconds=60")
IN_A_PROCESS = (_STARTS, ("run", "nope"))
_ENRICH = ("run", "enrich_and_alert", "--source=generator://events?count=1", "--sink=stdout://",
           "--dead_letter=stdout://", "--alert_sink=stdout://",
           "--profiles=file://{tmp}/profiles.jsonl?key={{customer_id}}")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "culprit", "suggestion"),
    [
        ((*_RUN, "--unkown_fields=drop"), 2, "--unkown_fields", "--unknown_fields"),
        ((*_RUN, "--event_time_fild=ts"), 2, "--event_time_fild", "--event_time_field"),
        ((*_RUN, "--sourc=generator://events"), 2, "--sourc", "--source"),
        ((*_RUN, "--runer=DirectRunner"), 2, "--runer", "--runner"),
        ((*_RUN, "--temp_locaton=/tmp"), 2, "--temp_locaton", "--temp_location"),
        ((*_RUN, "--max_seconds=soon"), 2, "--max_seconds", "float"),
        ((*_RUN, "--unknown_fields=maybe"), 2, "--unknown_fields", "choose from"),
        (("run", "events_to_bigquery"), 2, "--source", "required"),
        (("run", "nope"), 2, "'nope'", "the catalog has"),
        (("run", "--source=x"), 2, "run", "pipeline name"),
        (
            ("run", "events_to_bigquery", *_PUBSUB, "--runner=DataflowRunner"),
            2,
            "--temp_location",
            "--project=P",
        ),
        (
            (
                "run",
                "events_to_bigquery",
                "--source=generator://events?count=1",
                "--sink=file://{tmp}/a_file",
                "--dead_letter=stdout://",
            ),
            2,
            "--sink",
            "name a folder",
        ),
        (
            (
                "run",
                "events_to_bigquery",
                "--source=generator://events?count=1",
                "--sink=stdout://",
                "--dead_letter=file://{tmp}/a_file/dead",
            ),
            2,
            "--dead_letter",
            "name a folder",
        ),
        (
            (
                "run",
                "events_to_bigquery",
                "--source=file://{tmp}/folder",
                "--sink=stdout://",
                "--dead_letter=stdout://",
            ),
            2,
            "--source",
            "/*.jsonl",
        ),
        (
            (
                "run",
                "events_to_bigquery",
                "--source=generator://events?count=1",
                "--sink=file://{tmp}/out?format=parquet",
                "--dead_letter=stdout://",
            ),
            2,
            "format=parquet",
            "--schema",
        ),
        (_STARTS, 1, "events_to_bigquery stopped", "application-default login"),
        ((*_RUN, "--counts_group_by=region"), 2, "--counts_group_by", "set --counts_sink"),
        ((*_RUN, "--counts_window=5m"), 2, "--counts_window", "set --counts_sink"),
        (
            (*_RUN, "--counts_sink=stdout://", "--counts_group_by=customer.id"),
            2,
            "'customer.id'",
            "group_by takes top-level fields",
        ),
        (
            (
                "run",
                "metrics_to_redis",
                "--source=generator://events?count=1",
                "--sink=stdout://",
                "--dead_letter=stdout://",
                "--spec={{window: {{type: tumbling, size: 60s}}, "
                "group_by: [customer, meta.region], aggregates: {{n: count()}}}}",
            ),
            2,
            "'meta.region'",
            "group_by takes top-level fields",
        ),
        ((*_ENRICH, "--burst_count=-1"), 2, "--burst_count=-1", "a positive number"),
        ((*_ENRICH, "--burst_key=region"), 2, "--burst_key", "set --burst_count"),
        (
            (*_ENRICH, "--burst_count=2", "--burst_key=meta.region"),
            2,
            "'meta.region'",
            "group_by takes top-level fields",
        ),
        ((*_ENRICH, "--rules={{big: amount ==}}"), 2, "--rules", "syntax error"),
        ((*_ENRICH, "--rules=amount is None"), 2, "--rules", "mapping of name: expression"),
        (_REPLAY, 2, "--ledger", "redis://HOST:PORT/DB"),
        ((*_REPLAY, "--ledger=redis://127.0.0.1:1/0"), 2, "--ledger", "cannot be reached"),
        ((*_REPLAY, "--ledger=none", "--where=reason =="), 2, "--where", "syntax error"),
        ((*_REPLAY, "--ledger=none", "--since=yesterday"), 2, "--since", "RFC 3339"),
        ((*_REPLAY, "--ledger=none", "--where=retry_count < 'a'"), 2, "--where", "is INTEGER"),
        (
            ("run", "dlq_replay", *_PUBSUB, "--parked=stdout://", "--preview=true"),
            2,
            "--preview",
            "a copy of the dead letters",
        ),
        ((*_LAUNCH, "--parameters=sink=stdout://,sorce=x"), 2, "'sorce'", "source"),
        ((*_LAUNCH, _PARAMETERS), 1, "credentials", "application-default login"),
        ((*_LAUNCH, _PARAMETERS, "--environment=colour=red"), 2, "colour", "supported fields"),
        ((*_LAUNCH, _PARAMETERS, "--job_name=Bad_Name"), 2, "Bad_Name", "lowercase"),
        ((*_LAUNCH, _PARAMETERS, "--transform_name_mappings=A=B"), 2, "mappings", "--update"),
        (("template", "launch", "events_to_bigquery"), 2, "--project", "required"),
        (("template", "validate", "nope"), 2, "'nope'", "no pipeline"),
        ((*_BUILD[:3], "--bucket=gs://b-x"), 2, "--image", "required"),
        ((*_BUILD, "--bucket=gs://b-x/folder"), 2, "--bucket", "gs://BUCKET"),
        (("template", "frobnicate"), 2, "frobnicate", "choose from"),
        (("lst",), 2, "'lst'", "list"),
        (("list", "--json"), 2, "--json", "--format=json"),
        (("list", "--format=yaml"), 2, "--format", "text or json"),
        (("describe",), 2, "describe", "pipeline name"),
        (("describe", "nope"), 2, "'nope'", "the catalog has"),
        (("describe", "sessionize", "extra"), 2, "extra", "unexpected"),
        (("demo", "--colour=red"), 2, "--colour", "--output=DIR"),
        (("demo", "--count=many"), 2, "--count", "whole number"),
        (("dashboard", "--sink=file:///tmp/rows"), 2, "--sink", "mode=hash"),
        (("demo", "--output={tmp}/folder"), 2, "--output", "not an empty folder"),
        (("drain", "job-1", "--region=us-central1"), 2, "--project", "required"),
        (
            ("update-check", "compare", "{tmp}/folder/in.jsonl", "{tmp}/folder/in.jsonl"),
            2,
            "in.jsonl",
            "neither a summary",
        ),
        (("services", "up"), 2, "services", "python -m pipelines.devtools services"),
        (("docs",), 2, "docs", "python -m pipelines.devtools docs"),
    ],
)
def test_wrong_input_fails_with_one_message_naming_it(
    argv: tuple[str, ...], code: int, culprit: str, suggestion: str, tmp_path: Path
) -> None:
    (tmp_path / "a_file").write_text("")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "in.jsonl").write_text("{}\n")
    (tmp_path / "profiles.jsonl").write_text('{"customer_id": "c1"}\n')
    args = [arg.format(tmp=tmp_path) for arg in argv]
    # No credentials and no emulator: what a new user without a Google Cloud setup has.
    env = {key: value for key, value in os.environ.items() if key != "PUBSUB_EMULATOR_HOST"}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "no-such-key.json")
    run = cli if argv in IN_A_PROCESS else cli_in_process
    assert_one_error(run(*args, env=env), code, culprit, suggestion)


def assert_one_error(
    result: subprocess.CompletedProcess[str], code: int, culprit: str, suggestion: str
) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    starts = [at for at, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, result.stderr
    message = [lines[starts[0]]]  # the error line, and the problems it lists, indented
    message += itertools.takewhile(lambda line: line.startswith("  "), lines[starts[0] + 1 :])
    named = [line for line in message if culprit in line]
    assert named, result.stderr
    assert suggestion in named[0], result.stderr


@pytest.mark.parametrize(
    ("argv", "code", "culprit", "suggestion"),
    [
        (("docs", "extra"), 2, "docs", "unexpected"),
        (("metadata", "--writ"), 2, "metadata", "unexpected"),
        (("service",), 2, "'service'", "services"),
        (("services", "restart"), 2, "'restart'", "choose from"),
        (("services", "status", "mysql"), 2, "mysql", "known: pubsub"),
    ],
)
def test_wrong_developer_input_fails_with_one_message_naming_it(
    argv: tuple[str, ...], code: int, culprit: str, suggestion: str
) -> None:
    assert_one_error(devtools(*argv), code, culprit, suggestion)


def test_the_developer_help_lists_the_maintainers_commands() -> None:
    # (The user's help leaves them out: tests/pipelines/test_wheel.py checks it, installed.)
    usage = devtools("--help").stdout
    assert "services env" in usage and "docs" in usage and "metadata [--write]" in usage


def test_verbose_shows_the_traceback_of_an_error() -> None:
    result = cli_in_process("--verbose", "template", "validate", "nope")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "error: no pipeline 'nope'" in result.stderr


def test_list_format_json_has_the_text_content() -> None:
    text, data = cli_in_process("list"), cli_in_process("list", "--format=json")
    assert data.returncode == 0
    entries = json.loads(data.stdout)
    assert [entry["name"] for entry in entries] == sorted(CATALOG)
    assert [f"{e['name']:<24} {e['summary']}" for e in entries] == text.stdout.splitlines()


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_describe_format_json_has_the_text_content(name: str, described: Described) -> None:
    text, data = described[name]
    assert data.returncode == 0
    document = json.loads(data.stdout)
    shown = text.stdout.splitlines()
    assert document["name"] == shown[0]
    assert document["description"] in text.stdout
    assert [option["name"] for option in document["options"]] == [
        option.name for option in get_pipeline(name).options
    ]
    for option in document["options"]:
        flag = f"--{option['name']}" + (" (required)" if option["required"] else "")
        at = shown.index(flag)
        assert shown[at + 1].strip() == option["help"]
        if option["choices"]:
            assert f"one of: {', '.join(option['choices'])}" in shown[at + 2]
        if not option["required"]:
            assert f"    default: {option['default']}" in shown[at + 2 : at + 4]
    for support in document["runners"]:
        for scheme in support["schemes"]:
            name = [support["role"], scheme] + ([support["kind"]] if support["kind"] else [])
            row = next(line for line in shown if line.split()[: len(name)] == name)
            marks = row.split()[len(name) :]
            assert sum(mark == "yes" for mark in marks) == len(support["runners"])
    for scheme, guarantees in document["delivery"].items():
        for runner, guarantee in guarantees.items():
            assert f"  {scheme} on {runner}: {guarantee}" in shown


def test_run_help_shows_beam_options_in_their_own_group_and_no_empty_default() -> None:
    result = cli_in_process("run", "enrich_and_alert", "--help")
    assert result.returncode == 0
    assert "Beam pipeline options (passed through):" in result.stdout
    assert "--runner=DataflowRunner" in result.stdout
    assert "(default: )" not in result.stdout


def test_every_template_argument_has_help() -> None:
    from pipelines.framework.template_cli import _parser

    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"template {name}: {action.dest} has no help"
    result = cli_in_process("template", "launch", "--help")
    assert result.returncode == 0
    assert "the Dataflow region" in result.stdout


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="needs the Google Cloud CLI")
def test_gcloud_equivalent_uses_only_flags_gcloud_has() -> None:
    from pipelines.framework.launch import Launch, gcloud_command

    help_text = subprocess.run(
        ["gcloud", "dataflow", "flex-template", "run", "--help"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    known = set(re.findall(r"--[a-z][a-z-]*", help_text))
    launch = Launch(
        "events_to_bigquery", "proj-x", "us-central1", "gs://bucket-x",
        {"source": "generator://events", "sink": "stdout://", "dead_letter": "stdout://"},
        environment={"tempLocation": "gs://bucket-x/t", "maxWorkers": "3"}, validate_only=True,
    )  # fmt: skip
    flags = {word.split("=")[0] for word in shlex.split(gcloud_command(launch))[5:]}
    assert flags <= known, flags - known


def test_services_env_exports_every_running_server() -> None:
    from pipelines.devtools import services
    from pipelines.devtools.services.specs import EXTRA_ENV, SPECS

    result = devtools("services", "env")
    assert result.returncode == 0
    running = [name for name in SPECS if services.is_running(name)]
    assert running, "the local servers run in this suite"
    expected = {f"export {SPECS[name].env_var}={SPECS[name].endpoint}" for name in running}
    for name in running:  # the BigQuery emulator's Storage Write API, beside its REST API
        expected |= {f"export {var}={value}" for var, value in EXTRA_ENV.get(name, {}).items()}
    assert set(result.stdout.splitlines()) == expected
    status = devtools("services", "status").stdout
    for name in running:
        assert SPECS[name].endpoint in status


def test_a_successful_run_leaves_no_temporary_folders(tmp_path: Path) -> None:
    result = cli(
        "run", "events_to_bigquery", "--source=generator://events?count=50&malformed=0.1",
        f"--sink=file://{tmp_path}/out", f"--dead_letter=file://{tmp_path}/dead",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "out").glob("*.jsonl"))
    assert not [path for path in tmp_path.rglob(".temp*")]


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
    assert "Reading" not in result.stderr and "records/s" not in result.stderr  # piped: quiet


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
    assert re.search(
        r"read 3000 = written \d+ \+ dead_lettered \d+ \+ dropped 0: balanced", result.stdout
    )
    rows = sum(pq.read_table(path).num_rows for path in (tmp_path / "events").glob("*.parquet"))
    dead = sum(1 for path in (tmp_path / "dead_letter").glob("*.jsonl") for _ in path.open())
    assert rows + dead == 3000
    assert dead > 0
