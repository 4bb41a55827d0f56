"""The Beam YAML provider: the catalog's YAML templates give the Python pipelines' results.

One Beam pipeline (one DirectRunner run, shared by the module) holds every catalog pipeline
twice on the same small inputs: built by its Python module, and expanded from
``templates/<name>/pipeline.yaml`` through ``apache_beam.yaml`` with the provider file. The
tests compare their output rows and dead letters (step, reason, original bytes); the same run
takes hostile records through the YAML steps (`yaml_inputs`). Other tests run
Beam YAML's own ``tests:`` section of a template, a step without ``error_handling`` failing the
run, and an unconsumed error output refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import yaml
from apache_beam.yaml import yaml_provider, yaml_transform
from apache_beam.yaml.yaml_transform import SafeLineLoader, YamlTransform

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import BIGQUERY_PROJECT, ServiceSpec
from pipelines.framework.options import parse_options
from pipelines.yaml_provider import PROVIDERS
from tests.pipelines.yaml_inputs import (
    HOSTILE_OUTPUTS,
    PROFILES,
    changes,
    dead_letters_read_back,
    events,
    hostile_pipeline,
    transactions,
)
from transforms.io.bigquery.client import make_client

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ("events_to_bigquery", "metrics_to_redis", "enrich_and_alert", "sessionize",
           "cdc_replicate")  # fmt: skip
# Runs of a catalog pipeline with other options, on `mixed_events`: (label, name).
VARIANTS = (("metrics_to_redis_spec_time", "metrics_to_redis"),
            ("sessionize_mixed_types", "sessionize"))  # fmt: skip
# The spec of `metrics_to_redis_spec_time`: its event time field is not the default ts.
SPEC_TIME = """
event_time: t
window: {type: tumbling, size: 60s}
group_by: [cust]
aggregates: {n: count(), total: sum(amt), buys: "count_if(kind == 'buy')"}
"""


def mixed_events() -> list[bytes]:
    """Events timed by field ``t`` (epoch ms), whose ``amt``, ``kind`` and ``cust`` change type
    (a number, text, null, an object, a list; a number as the key), and lines that fail."""
    t0 = 1_796_112_000_000
    events: list[dict[str, Any]] = [
        {"cust": f"c{n % 3}", "amt": 1.5 * n, "t": t0 + 20_000 * n,
         "kind": ("view", "buy")[n % 2]}
        for n in range(9)
    ]  # fmt: skip
    events += [
        {"cust": "c0", "amt": "lots", "t": t0 + 5_000},
        {"cust": "c1", "amt": None, "t": t0 + 9_000},
        {"cust": "c2", "amt": {"v": 1}, "t": t0 + 41_000, "kind": ["a", 1]},
        {"cust": 7, "amt": 2, "t": t0 + 1_000, "kind": True}, {"amt": 1, "t": t0 + 7_000},
        {"cust": {"x": 1}, "amt": 1, "t": t0 + 8_000}, {"cust": "c2", "amt": 1, "t": "not a time"},
        {"cust": "c2", "amt": 1, "ts": "2026-12-01T08:00:00Z"},  # no t
    ]  # fmt: skip
    return [json.dumps(event).encode() for event in events] + [b"garbage"]


class _Catalog(beam.PTransform):
    """A catalog pipeline built by its Python module, inside a composite of a shared pipeline."""

    def __init__(self, name: str, argv: list[str]) -> None:
        super().__init__()
        self._spec = get_pipeline(name)
        values, _ = parse_options(name, "", self._spec.options, argv)
        self._config = self._spec.configure(values)

    def expand(self, root: beam.pvalue.PBegin) -> beam.pvalue.PDone:
        self._spec.build(root.pipeline, self._config)
        return beam.pvalue.PDone(root.pipeline)


def yaml_template(name: str, variables: dict[str, Any]) -> YamlTransform:
    """The template ``templates/<name>/pipeline.yaml`` rendered with ``variables``."""
    path = ROOT / "templates" / name / "pipeline.yaml"
    text = yaml_transform.expand_jinja(
        path.read_text(), {"providers": PROVIDERS, **variables}, [str(path.parent)]
    )
    return yaml_pipeline(text, path)


def yaml_pipeline(text: str, path: Path = ROOT) -> YamlTransform:
    """The Beam YAML pipeline ``text`` (which includes its providers) as one transform."""
    spec = yaml.load(text, Loader=SafeLineLoader)
    yaml_transform.validate_against_schema(spec, "generic")
    providers = yaml_provider.parse_providers(str(path), spec["providers"])
    return YamlTransform(yaml_transform.pipeline_as_composite(spec["pipeline"]), providers)


def _arguments(name: str, folder: Path) -> dict[str, str]:
    """The options of a catalog pipeline run on the inputs in ``folder``."""
    common = {"source": f"file://{folder}/events.jsonl"}
    return {
        "events_to_bigquery": {
            **common,
            "schema": "builtin:events",
            "counts_window": "30m",
            "counts_group_by": "endpoint",
        },  # fmt: skip
        "metrics_to_redis": {**common, "spec": "builtin:api_metrics"},
        "sessionize": {**common, "key_field": "user_id", "include_fields": "event_type"},
        "enrich_and_alert": {
            "source": f"file://{folder}/transactions.jsonl",
            "profiles": f"file://{folder}/profiles.jsonl?key={{customer_id}}",
            "burst_count": "1",
        },
        "cdc_replicate": {
            "source": f"file://{folder}/changes.jsonl",
            "key_columns": "inventory.customers=id",
        },
        # The spec's event time field, with no --event_time_field.
        "metrics_to_redis_spec_time": {
            "source": f"file://{folder}/mixed.jsonl",
            "spec": f"{folder}/spec_time.yaml",
        },
        # Included fields (and the key) the records do not type: their values as they are.
        "sessionize_mixed_types": {
            "source": f"file://{folder}/mixed.jsonl",
            "key_field": "cust",
            "event_time_field": "t",
            "gap": "30s",
            "include_fields": "amt,kind",
        },
    }[name]


def _replay_arguments(folder: Path, preview: bool) -> dict[str, str]:
    """The options of ``dlq_replay`` on the dead letters in ``folder`` (a dry run: ``preview``)."""
    common = {"source": f"file://{folder}/dead_letters.jsonl", "ledger": "none",
              "reasons": "schema,invalid_json", "max_replays": "3",
              "parked": f"file://{folder}/parked"}  # fmt: skip
    if preview:
        return {**common, "preview": "true", "report": f"file://{folder}/report"}
    return common


def _outputs(folder: Path, name: str) -> dict[str, str]:
    outputs = {"sink": f"file://{folder}/{name}/out", "dead_letter": f"file://{folder}/{name}/dlq"}
    if name == "events_to_bigquery":
        outputs["counts_sink"] = f"file://{folder}/{name}/counts"
    if name == "enrich_and_alert":
        outputs["alert_sink"] = f"file://{folder}/{name}/alerts"
        outputs["route_sinks"] = f"high_risk=file://{folder}/{name}/risky"
    return outputs


@pytest.fixture(scope="module")
def redis_prefix(redis_server: ServiceSpec) -> Iterator[tuple[str, str]]:
    """``(Redis URL, key prefix)``: the keys under the prefix are deleted afterwards."""
    import redis

    prefix = f"yaml{uuid.uuid4().hex[:8]}"
    yield redis_server.endpoint, prefix
    client = redis.Redis.from_url(redis_server.endpoint)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def _add(
    pipeline: beam.Pipeline, kind: str, label: str, name: str, options: dict[str, str]
) -> None:
    """Adds the catalog pipeline ``name`` built by its Python module or from its template."""
    if kind == "python":
        argv = [f"--{key}={value}" for key, value in options.items()]
        _ = pipeline | f"python {label}" >> _Catalog(name, argv)
    else:
        variables = {**options, "preview": "preview" in options}
        _ = pipeline | f"yaml {label}" >> yaml_template(name, variables)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, redis_prefix: tuple[str, str]) -> Path:
    """Runs every catalog pipeline, Python and YAML, in one pipeline; returns the folder.

    The YAML ``metrics_to_redis`` also runs with its Redis sink (keys ``PREFIX:endpoint:window``).
    """
    folder = tmp_path_factory.mktemp("yaml")
    (folder / "events.jsonl").write_bytes(b"\n".join(events()) + b"\n")
    (folder / "transactions.jsonl").write_bytes(b"\n".join(transactions()) + b"\n")
    (folder / "changes.jsonl").write_bytes(b"\n".join(changes()) + b"\n")
    (folder / "profiles.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROFILES))
    (folder / "dead_letters.jsonl").write_bytes(b"\n".join(dead_letters_read_back()) + b"\n")
    (folder / "mixed.jsonl").write_bytes(b"\n".join(mixed_events()) + b"\n")
    (folder / "spec_time.yaml").write_text(SPEC_TIME)
    pipeline = beam.Pipeline()
    for kind in ("python", "yaml"):  # the Python pipelines first: each checks its error routing
        for label, name in tuple((name, name) for name in CATALOG) + VARIANTS:
            options = {**_arguments(label, folder), **_outputs(folder / kind, label)}
            _add(pipeline, kind, label, name, options)
        for preview in (False, True):
            label = "dlq_replay_preview" if preview else "dlq_replay"
            options = {**_replay_arguments(folder / kind / label, preview),
                       **_outputs(folder / kind, label),
                       "source": f"file://{folder}/dead_letters.jsonl"}  # fmt: skip
            _add(pipeline, kind, label, "dlq_replay", options)
    _ = pipeline | "yaml hostile" >> yaml_pipeline(hostile_pipeline(folder))
    url, prefix = redis_prefix
    variables = {**_arguments("metrics_to_redis", folder), **_outputs(folder / "redis", "m"),
                 "sink": f"{url}?key={prefix}:{{endpoint}}:{{window_start}}"}  # fmt: skip
    _ = pipeline | "yaml metrics_to_redis, Redis" >> yaml_template("metrics_to_redis", variables)
    variables = {**_replay_arguments(folder / "ledger", False), **_outputs(folder, "ledger"),
                 "source": f"file://{folder}/dead_letters.jsonl",
                 "ledger": f"{url}?prefix={prefix}ledger:"}  # fmt: skip
    _ = pipeline | "yaml dlq_replay, ledger" >> yaml_template("dlq_replay", variables)
    pipeline.run().wait_until_finish()
    return folder


def _rows(folder: Path) -> list[str]:
    """The rows written to a folder, canonical (numbers as floats, keys sorted), sorted."""
    rows = [
        json.loads(line, parse_int=float) for path in folder.glob("*.jsonl") for line in path.open()
    ]
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def _lines(folder: Path) -> list[bytes]:
    """The lines written to a folder, sorted."""
    return sorted(b"".join(path.read_bytes() for path in folder.glob("*.jsonl")).splitlines())


def _dead_letters(folder: Path) -> Counter[tuple[str, str, bytes]]:
    letters = [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]
    return Counter((d["step"], d["reason"], base64.b64decode(d["payload_bytes"])) for d in letters)


@pytest.mark.parametrize("name", CATALOG + tuple(label for label, _ in VARIANTS))
def test_the_yaml_template_writes_the_rows_of_the_python_pipeline(runs: Path, name: str) -> None:
    python, yaml_run = runs / "python" / name, runs / "yaml" / name
    rows = _rows(python / "out")
    assert rows, "the Python pipeline wrote nothing: the comparison would prove nothing"
    assert _rows(yaml_run / "out") == rows
    side = {"events_to_bigquery": ("counts",), "enrich_and_alert": ("alerts", "risky")}
    for output in side.get(name, ()):
        assert _rows(yaml_run / output) == _rows(python / output), output
    if name == "events_to_bigquery":
        counts = [json.loads(row) for row in _rows(python / "counts")]
        assert sum(row["events"] for row in counts) == len(rows)
    if name == "enrich_and_alert":
        alerts = {json.loads(a)["alert"] for a in _rows(python / "alerts")}
        assert alerts == {"high_amount", "burst"}
        assert {json.loads(a)["alert"] for a in _rows(python / "risky")} == {"high_risk"}


@pytest.mark.parametrize("name", CATALOG + tuple(label for label, _ in VARIANTS))
def test_the_yaml_template_dead_letters_what_the_python_pipeline_does(
    runs: Path, name: str
) -> None:
    expected = _dead_letters(runs / "python" / name / "dlq")
    assert expected, "no dead letters: the comparison would prove nothing"
    assert _dead_letters(runs / "yaml" / name / "dlq") == expected


def _number_or_text(value: Any) -> Any:
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    )


def _hash_value(text: str) -> Any:
    """A Redis hash value as the sink wrote it: numbers and booleans as JSON, text as it is."""
    try:
        return _number_or_text(json.loads(text))
    except json.JSONDecodeError:
        return text


def test_the_yaml_dlq_replay_sends_parks_and_reports_what_the_python_pipeline_does(
    runs: Path,
) -> None:
    python, yaml_run = runs / "python" / "dlq_replay", runs / "yaml" / "dlq_replay"
    sent = _lines(python / "out")
    assert b"\xff{not json" in sent and len(sent) == 2  # the original bytes, unchanged
    assert _lines(yaml_run / "out") == sent
    parked = _rows(python / "parked")
    assert len(parked) == 2
    assert _rows(yaml_run / "parked") == parked
    assert {step for step, _, _ in _dead_letters(python / "dlq")} == {"parse", "select"}
    assert _dead_letters(yaml_run / "dlq") == _dead_letters(python / "dlq")
    # The dry run: each replay's id and attributes, and why each parked one is parked.
    report = _rows(runs / "python" / "dlq_replay_preview" / "report")
    assert {json.loads(line).get("why") for line in report} == {None, "max_replays", "truncated"}
    assert _rows(runs / "yaml" / "dlq_replay_preview" / "report") == report
    assert _dead_letters(runs / "yaml" / "dlq_replay_preview" / "dlq") == _dead_letters(
        runs / "python" / "dlq_replay_preview" / "dlq"
    )


def test_the_yaml_dlq_replay_claims_what_it_sends_or_parks_in_its_ledger(
    runs: Path, redis_prefix: tuple[str, str]
) -> None:
    import redis

    url, prefix = redis_prefix
    client = redis.Redis.from_url(url, decode_responses=True)
    claimed = {
        key.removeprefix(f"{prefix}ledger:") for key in client.scan_iter(f"{prefix}ledger:*")
    }
    report = [json.loads(line) for line in _rows(runs / "python" / "dlq_replay_preview" / "report")]
    assert claimed == {line["replay_id"] for line in report}  # the parked ones' too
    assert _lines(runs / "ledger" / "out") == _lines(runs / "python" / "dlq_replay" / "out")


def _hostile_letters(folder: Path, lines: list[bytes]) -> Counter[bytes]:
    """The input lines of the dead letters in ``folder`` (a cut payload: the line it was cut
    from, by its SHA-256); fails on one that is no input line or has no reason."""
    by_hash = {hashlib.sha256(line).hexdigest(): line for line in lines}
    found: Counter[bytes] = Counter()
    for letter in (json.loads(text) for path in folder.glob("*.jsonl") for text in path.open()):
        payload = base64.b64decode(letter["payload_bytes"])
        if letter.get("payload_truncated"):
            payload = by_hash.get(letter["payload_sha256"], payload)
        assert payload in lines and letter["reason"] and letter["step"], letter
        found[payload] += 1
    return found


def test_hostile_records_through_the_yaml_steps_are_rows_or_dead_letters_with_their_bytes(
    runs: Path,
) -> None:
    out = runs / "hostile"
    events = (runs / "hostile_events.jsonl").read_bytes().splitlines()
    changes = (runs / "hostile_changes.jsonl").read_bytes().splitlines()
    for parse, lines, steps in (("ParseEvents", events, ("WindowedAggregate", "Enrich")),
                                ("ParseChanges", changes, ("ApplyChanges",))):  # fmt: skip
        parsed = _hostile_letters(out / f"dlq_{parse}", lines)
        assert parsed, f"{parse}: no dead letter, the inputs are not hostile enough"
        for step in steps:
            letters = parsed + _hostile_letters(out / f"dlq_{step}", lines)
            assert letters, step
            if step == "WindowedAggregate":
                written = sum(int(json.loads(row)["n"]) for row in _rows(out / "aggregate"))
            else:
                written = len(_rows(out / HOSTILE_OUTPUTS[step]))
            # Every line is accounted for once: a row (or counted in one), or a dead letter.
            assert written + sum(letters.values()) == len(lines), step
            assert max(letters.values()) == 1 and lines[0] not in letters, step


def test_the_yaml_pipeline_writes_the_same_rows_to_a_redis_sink(
    runs: Path, redis_prefix: tuple[str, str]
) -> None:
    import redis

    url, prefix = redis_prefix
    client = redis.Redis.from_url(url, decode_responses=True)
    rows = [json.loads(row) for row in _rows(runs / "python" / "metrics_to_redis" / "out")]
    for row in rows:
        stored = client.hgetall(f"{prefix}:{row['endpoint']}:{row['window_start']}")
        assert {k: _hash_value(v) for k, v in stored.items()} == {
            k: _number_or_text(v) for k, v in row.items()
        }
    assert len(list(client.scan_iter(f"{prefix}:*"))) == len(rows)


def test_dead_letters_of_the_yaml_pipelines_carry_the_original_bytes_and_origin(runs: Path) -> None:
    folder = runs / "yaml" / "enrich_and_alert" / "dlq"
    letters = {
        d["reason"]: d for path in folder.glob("*.jsonl") for d in map(json.loads, path.open())
    }
    source = runs / "transactions.jsonl"
    lines = source.read_bytes().splitlines()
    parse = letters["not_an_object"]
    assert base64.b64decode(parse["payload_bytes"]) == b"[1, 2]"
    assert parse["source"] == {"system": "file", "path": str(source), "line": len(lines)}
    # A later step (Enrich, after Dedup) still has the message the record was parsed from.
    keyless = letters["wrong_type"]
    assert (keyless["step"], keyless["pipeline"]) == ("fields", "enrich_and_alert")
    assert base64.b64decode(keyless["payload_bytes"]) == lines[5]
    assert keyless["source"]["line"] == 6


def test_the_yaml_counts_sink_creates_its_bigquery_table_with_timestamp_window_bounds(
    tmp_path: Path, bigquery_emulator: ServiceSpec, unique_name: str
) -> None:
    """The counts rows of the template have no schema option: the sink takes the rows' types."""
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events()) + b"\n")
    table = f"{BIGQUERY_PROJECT}.{unique_name}.counts"
    counts = (
        f"bigquery://{BIGQUERY_PROJECT}:{unique_name}.counts?endpoint={bigquery_emulator.endpoint}"
    )
    variables = {**_arguments("events_to_bigquery", tmp_path),
                 **_outputs(tmp_path, "events_to_bigquery"), "counts_sink": counts}  # fmt: skip
    client = make_client(BIGQUERY_PROJECT, bigquery_emulator.endpoint)
    try:
        pipeline = beam.Pipeline()
        _ = pipeline | yaml_template("events_to_bigquery", variables)
        pipeline.run().wait_until_finish()
        types = {field.name: field.field_type for field in client.get_table(table).schema}
        rows = list(client.query(f"SELECT * FROM `{table}`").result())
    finally:
        client.delete_dataset(f"{BIGQUERY_PROJECT}.{unique_name}", delete_contents=True,
                              not_found_ok=True)  # fmt: skip
        client.close()
    assert types["window_start"] == types["window_end"] == "TIMESTAMP"
    assert (types["endpoint"], types["events"], types["timing"]) == ("STRING", "INTEGER", "STRING")
    out = tmp_path / "events_to_bigquery" / "out"
    written = [json.loads(line) for path in out.glob("*.jsonl") for line in path.open()]
    assert sum(row["events"] for row in rows) == len(written)
    assert all(row["window_start"].tzinfo is not None for row in rows)


def test_the_tests_section_of_a_template_runs_through_beam_yaml(tmp_path: Path) -> None:
    from apache_beam.yaml import main

    variables = {"providers": PROVIDERS, "source": "file:///unused", "sink": f"file://{tmp_path}",
                 "dead_letter": f"file://{tmp_path}/dlq"}  # fmt: skip
    main.run_tests(
        [f"--yaml_pipeline_file={ROOT}/templates/metrics_to_redis/pipeline.yaml", "--tests",
         f"--jinja_variables={json.dumps(variables)}"],
        exit=False,
    )  # fmt: skip


PARSE_ONLY = """
providers: [{include: PROVIDERS}]
pipeline:
  type: chain
  transforms:
    - type: Create
      config: {elements: [{payload: '{"a": 1}'}, {payload: 'not json'}]}
    - type: Parse
      config: CONFIG
    - type: LogForTesting
"""


def _parse_only(config: str) -> str:
    return PARSE_ONLY.replace("PROVIDERS", PROVIDERS).replace("CONFIG", config)


def test_a_step_without_error_handling_fails_the_run_on_a_bad_record() -> None:
    from apache_beam.yaml import main

    with pytest.raises(Exception, match=r"step parse failed on a record \(invalid_json\).*"
                       "error_handling"):  # fmt: skip
        main.run([f"--yaml_pipeline={_parse_only('{}')}", "--runner=DirectRunner"])


def test_an_unconsumed_error_output_is_refused_before_the_run() -> None:
    spec = yaml.load(_parse_only("{error_handling: {output: errors}}"), Loader=SafeLineLoader)
    with pytest.raises(ValueError, match=r"Unconsumed error output.*Parse\.errors"):
        yaml_transform.expand_pipeline(beam.Pipeline(), spec)
