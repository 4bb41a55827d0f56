"""Every catalog pipeline on the managed runners, proven offline; and the Python UDF step.

- Dataflow: ``--dry_run=True --no_auth`` translates the whole graph for Dataflow (batch from a
  bounded input, streaming from Pub/Sub) without a project.
- Flink and other portable runners: ``PortableRunner`` with an embedded job server and a
  LOOPBACK environment speaks the same Fn API; each pipeline's output there must equal the
  DirectRunner's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.framework.cli import main
from pipelines.framework.options import OptionError
from pipelines.framework.run import build_pipeline, run_pipeline
from transforms.io.base import SinkContext
from transforms.io.registry import SINKS, SOURCES, make_sink, make_source
from transforms.io.runners import MATRIX, runners_for
from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN

PIPELINES = sorted(CATALOG)
# A value for each required option beyond the endpoints, per option name; a new pipeline with
# a new required option fails `test_every_required_option_has_a_sample` until it has one here.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLES = {
    "spec": "builtin:api_metrics",
    "key_field": "user_id",
    "profiles": f"file://{FIXTURES}/profiles.jsonl?key={{user_id}}",
    "alert_sink": "stdout://",
    "parked": "stdout://",
}
BOUNDED = "generator://events?count=300&seed=7&malformed=0.05&start=2026-01-01T00:00:00Z"
PUBSUB = "pubsub://projects/proj-x/subscriptions/sub-x"
DATAFLOW = [
    "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=proj-x",
    "--region=us-central1", "--temp_location=gs://bucket-x/tmp",
]  # fmt: skip
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]


def argv(name: str, source: str, folder: Path) -> list[str]:
    values = {
        "source": source,
        "sink": f"file://{folder}/out",
        "dead_letter": f"file://{folder}/dlq",
    }
    for option in get_pipeline(name).options:
        if option.required and option.name not in values:
            values[option.name] = SAMPLES[option.name]
    return [f"--{key}={value}" for key, value in values.items()]


def test_every_required_option_has_a_sample() -> None:
    for name in PIPELINES:
        for option in get_pipeline(name).options:
            if option.required and option.name not in ("source", "sink", "dead_letter"):
                assert option.name in SAMPLES, f"{name}: add a sample --{option.name}"


# --- Dataflow --------------------------------------------------------------------------------


def translate(arguments: list[str]) -> Any:
    pipeline, _ = build_pipeline(get_pipeline(arguments[0]), arguments[1:] + DATAFLOW)
    result = pipeline.run()
    assert str(result.state) == "DONE"
    return result.job


@pytest.mark.parametrize("name", PIPELINES)
def test_translates_for_dataflow_in_batch_from_a_bounded_source(name: str, tmp_path: Path) -> None:
    job = translate([name, *argv(name, BOUNDED, tmp_path)])
    assert job.proto.type.name == "JOB_TYPE_BATCH"
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"Read", "Parse", "Count read"} <= names


@pytest.mark.parametrize("name", PIPELINES)
def test_translates_for_dataflow_streaming_from_pubsub(name: str, tmp_path: Path) -> None:
    job = translate([name, *argv(name, PUBSUB, tmp_path)])
    assert job.proto.type.name == "JOB_TYPE_STREAMING"


def test_the_flex_entry_point_builds_the_selected_pipeline_for_dataflow(tmp_path: Path) -> None:
    from pipelines import flex_main

    flex_main.main(["--pipeline=events_to_bigquery", *argv("events_to_bigquery", PUBSUB, tmp_path),
                    *DATAFLOW])  # fmt: skip
    with pytest.raises(KeyError, match="no pipeline 'nope'"):
        flex_main.main(["--pipeline=nope", *DATAFLOW])
    with pytest.raises(SystemExit):
        flex_main.main(argv("events_to_bigquery", PUBSUB, tmp_path))


# --- Portable (Flink's protocol) -------------------------------------------------------------


def rows(folder: Path) -> list[str]:
    """The written rows, as sorted canonical JSON (floats rounded: sums may be reordered)."""

    def canonical(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items() if k != "error_timestamp"}
        if isinstance(value, list):
            return [canonical(v) for v in value]
        return value

    lines = [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]
    return sorted(json.dumps(canonical(line), sort_keys=True) for line in lines)


@pytest.mark.parametrize("name", PIPELINES)
def test_portable_runner_gives_the_direct_runners_output(name: str, tmp_path: Path) -> None:
    reports = {}
    for runner, extra in (("direct", ["--runner=DirectRunner"]), ("portable", PORTABLE)):
        report = run_pipeline(get_pipeline(name), argv(name, BOUNDED, tmp_path / runner) + extra)
        assert report.state == "DONE" and report.balanced
        reports[runner] = report
    assert reports["portable"].counters == reports["direct"].counters
    assert reports["direct"].count(READ) == 300
    for output in ("out", "dlq"):
        assert rows(tmp_path / "portable" / output) == rows(tmp_path / "direct" / output)
    assert rows(tmp_path / "direct" / "dlq"), "the input has malformed events"


# --- the runner x IO matrix ------------------------------------------------------------------


def test_the_matrix_has_every_registered_scheme_once_per_kind() -> None:
    for role, table in (("source", SOURCES), ("sink", SINKS)):
        rows = [(scheme, row.kind) for row in MATRIX if row.role == role for scheme in row.schemes]
        assert len(rows) == len(set(rows)), f"a {role} kind in two rows"
        assert {scheme for scheme, kind in rows if not kind} == set(table)


def test_sources_and_sinks_read_their_runners_from_the_matrix(tmp_path: Path) -> None:
    every = {"DirectRunner", "DataflowRunner", "FlinkRunner", "PortableRunner"}
    assert make_source(PUBSUB).runners == {"DirectRunner", "DataflowRunner"}
    assert make_source(BOUNDED).runners == every == runners_for("source", "generator")
    assert make_source("kafka://b:9092/t?impl=java&max_records=1").runners == every - {
        "DirectRunner"
    }
    assert make_source("kinesis://s?region=r&live=true").runners == {"DirectRunner"}
    assert make_sink("console://", SinkContext("p")).runners == {"DirectRunner"}
    assert make_sink(f"file://{tmp_path}/out", SinkContext("p")).runners == every


def test_every_sink_of_a_config_is_checked_not_only_the_main_one(tmp_path: Path) -> None:
    arguments = argv("metrics_to_redis", BOUNDED, tmp_path) + ["--console=true", *DATAFLOW]
    with pytest.raises(OptionError, match="console://.*does not run on DataflowRunner"):
        build_pipeline(get_pipeline("metrics_to_redis"), arguments)


@pytest.mark.parametrize("runner", ["PortableRunner", "FlinkRunner"])
def test_pubsub_on_a_portable_runner_fails_at_construction_naming_alternatives(
    runner: str, tmp_path: Path
) -> None:
    arguments = argv("events_to_bigquery", PUBSUB, tmp_path) + [f"--runner={runner}"]
    with pytest.raises(OptionError) as error:
        build_pipeline(get_pipeline("events_to_bigquery"), arguments)
    message = str(error.value)
    assert (
        f"this source does not run on {runner}; it runs on DataflowRunner, DirectRunner" in message
    )
    alternatives = re.search(r"use a source among: (.*)$", message)
    assert alternatives is not None
    named = alternatives[1].split(", ")
    assert {"file://", "generator://"} <= set(named) and "pubsub://" not in named


def test_describe_prints_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "events_to_bigquery"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "DataflowRunner" in line).split()
    pubsub = next(line for line in out.splitlines() if line.strip().startswith("source pubsub"))
    marks = dict(zip(header, pubsub.split()[2:], strict=True))
    assert marks == {"DataflowRunner": "yes", "DirectRunner": "yes", "FlinkRunner": "-",
                     "PortableRunner": "-"}  # fmt: skip


def test_describe_says_which_bigquery_write_modes_run_where(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["describe", "events_to_bigquery", "--format=json"]) == 0
    writes = json.loads(capsys.readouterr().out)["bigquery_writes"]
    assert writes["options"] == ["sink", "dead_letter", "counts_sink"]
    kinds = {"": "mode=at_least_once", "mode=exactly_once": "mode=exactly_once",
             "method=insert_all": "method=insert_all"}  # fmt: skip
    for kind, shown in kinds.items():
        (mode,) = [m for m in writes["modes"] if shown in m["parameters"]]
        assert mode["runners"] == sorted(runners_for("sink", "bigquery", kind))
    assert main(["describe", "events_to_bigquery"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("BigQuery writes"))
    assert "--counts_sink" in lines[at]
    assert lines[at + 1].split(":")[0].strip() == writes["modes"][0]["parameters"]


@pytest.mark.parametrize(
    ("name", "sinks"),
    [
        ("metrics_to_redis", ["sink", "dead_letter", "publish", "history"]),
        ("dlq_replay", ["sink", "dead_letter", "parked", "report"]),
        ("enrich_and_alert", ["sink", "dead_letter", "alert_sink", "route_sinks"]),
    ],
)
def test_describe_lists_every_option_declared_to_take_a_sink_uri(
    capsys: pytest.CaptureFixture[str], name: str, sinks: list[str]
) -> None:
    assert main(["describe", name, "--format=json"]) == 0
    assert json.loads(capsys.readouterr().out)["bigquery_writes"]["options"] == sinks
    assert main(["describe", name]) == 0
    heading = next(line for line in capsys.readouterr().out.splitlines()
                   if line.startswith("BigQuery writes"))  # fmt: skip
    assert heading.endswith(f"in {', '.join('--' + sink for sink in sinks)}):")


def test_describe_states_what_a_sink_outage_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "cdc_replicate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    section = " ".join(lines[lines.index("Sink outages") + 1 :]).split("--")[0]
    assert "until the sink is back" in section
    assert "attempts=N" in section and "sink_unavailable" in section


# --- Python UDFs -----------------------------------------------------------------------------

UDF = """
def transform(record):
    if record["event_type"] == "view":
        return None
    if record["user_id"] == "u3":
        raise ValueError("no u3 please")
    record["event_type"] = record["event_type"].upper()
    record["source"] = "udf"
    return record


def not_a_dict(record):
    return [record]
"""


def events_file(folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    events = [
        {"event_id": f"e{i}", "ts": 1_764_064_800 + i, "user_id": f"u{i % 5}",
         "event_type": ("click", "view", "buy")[i % 3]}
        for i in range(60)
    ]  # fmt: skip
    path = folder / "in.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path, events


def udf_argv(folder: Path, function: str) -> list[str]:
    source, _ = events_file(folder)
    (folder / "udf.py").write_text(UDF)
    return [f"--source=file://{source}", f"--sink=file://{folder}/out",
            f"--dead_letter=file://{folder}/dlq", f"--udf_file={folder}/udf.py",
            f"--udf_function={function}", "--unknown_fields=keep"]  # fmt: skip


@pytest.mark.parametrize(
    "runner", [["--runner=DirectRunner"], PORTABLE], ids=["direct", "portable"]
)
def test_udf_transforms_drops_and_dead_letters_with_the_balance(
    runner: list[str], tmp_path: Path
) -> None:
    report = run_pipeline(
        get_pipeline("events_to_bigquery"), udf_argv(tmp_path, "transform") + runner
    )
    _, events = events_file(tmp_path)
    views = [e for e in events if e["event_type"] == "view"]
    failing = [e for e in events if e["event_type"] != "view" and e["user_id"] == "u3"]
    kept = [e for e in events if e not in views and e not in failing]
    assert report.balanced
    assert report.count(READ) == len(events)
    assert report.count(WRITTEN) == len(kept)
    assert report.count(DROPPED) == report.count(f"{DROPPED}.udf") == len(views)
    assert report.count(DEAD_LETTERED) == report.count(f"{DEAD_LETTERED}.udf_error")
    assert report.count(DEAD_LETTERED) == len(failing)

    written = [json.loads(line) for p in (tmp_path / "out").glob("*.jsonl") for line in p.open()]
    expected = [{**e, "event_type": e["event_type"].upper(), "source": "udf"} for e in kept]
    key = lambda row: row["event_id"]  # noqa: E731
    assert sorted(
        ({k: row[k] for k in ("event_id", "event_type", "user_id", "source")} for row in written),
        key=key,
    ) == sorted(
        ({k: row[k] for k in ("event_id", "event_type", "user_id", "source")} for row in expected),
        key=key,
    )
    dead = [json.loads(line) for p in (tmp_path / "dlq").glob("*.jsonl") for line in p.open()]
    assert sorted(d["payload_string"] for d in dead) == sorted(json.dumps(e) for e in failing)
    for record in dead:
        assert (record["step"], record["reason"]) == ("udf", "udf_error")
        assert "ValueError: no u3 please" in record["error_message"]


def test_udf_returning_something_else_is_dead_lettered(tmp_path: Path) -> None:
    report = run_pipeline(get_pipeline("events_to_bigquery"), udf_argv(tmp_path, "not_a_dict"))
    assert report.balanced
    assert report.count(f"{DEAD_LETTERED}.udf_error") == report.count(READ) == 60
    line = next((tmp_path / "dlq").glob("*.jsonl")).open().readline()
    assert "returned list; expected a dict or None" in json.loads(line)["error_message"]


def test_udf_translates_for_dataflow(tmp_path: Path) -> None:
    job = translate(["events_to_bigquery", *udf_argv(tmp_path, "transform")])
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert "UDF" in names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--udf_function=transform", "--udf_function="), "--udf_file needs --udf_function"),
        (("--udf_file=", "--udf_file="), "--udf_function applies only when --udf_file is set"),
        (("--udf_function=transform", "--udf_function=missing"), "no function 'missing'"),
        (("udf.py", "nowhere.py"), "cannot be read"),
    ],
)
def test_udf_options_are_checked_before_the_graph_is_built(
    change: tuple[str, str], message: str, tmp_path: Path
) -> None:
    arguments = [arg.replace(*change) for arg in udf_argv(tmp_path, "transform")]
    if change[0] == "--udf_file=":
        arguments = [arg for arg in arguments if not arg.startswith("--udf_file")]
    with pytest.raises(OptionError, match=re.escape(message)):
        build_pipeline(get_pipeline("events_to_bigquery"), arguments)


def test_a_udf_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    arguments = udf_argv(tmp_path, "transform")
    (tmp_path / "udf.py").write_text("def transform(record)\n    return record\n")
    with pytest.raises(OptionError, match="loading the file failed: SyntaxError"):
        build_pipeline(get_pipeline("events_to_bigquery"), arguments)
