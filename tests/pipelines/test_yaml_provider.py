"""The Beam YAML provider: the catalog's YAML templates give the Python pipelines' results.

One Beam pipeline (one DirectRunner run, shared by the module) holds every catalog pipeline
twice on the same small inputs: built by its Python module, and expanded from
``templates/<name>/pipeline.yaml`` through ``apache_beam.yaml`` with the provider file. The
tests compare their output rows and dead letters (step, reason, original bytes). Other tests run
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
import msgspec
import pytest
import yaml
from apache_beam.yaml import yaml_provider, yaml_transform
from apache_beam.yaml.yaml_transform import SafeLineLoader, YamlTransform

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.options import parse_options
from pipelines.yaml_provider import PROVIDERS
from transforms.dead_letter import REPLAY_COUNT, REPLAY_OF, error_record
from transforms.event_time import format_timestamp
from transforms.message import Message, Origin

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "cdc"
T0 = 1_764_064_800  # 2025-11-25T10:00:00Z
CATALOG = ("events_to_bigquery", "metrics_to_redis", "enrich_and_alert", "sessionize",
           "cdc_replicate")  # fmt: skip


def _events() -> list[bytes]:
    """API events of three users over two hours, and lines that fail parse or the schema."""
    offsets = {"u1": [0, 50, 130, 4000], "u2": [20, 70], "u3": [3700, 3710, 3800]}
    lines = []
    for user, times in offsets.items():
        for n, offset in enumerate(times):
            event = {
                "event_id": f"{user}-{n}", "ts": format_timestamp(T0 + offset), "user_id": user,
                "event_type": f"t{n}", "endpoint": f"/e{n % 2}", "status_code": 200 + 150 * n,
                "latency_ms": 10.0 * (n + 1), "amount": n + 0.5, "country": "DE",
            }  # fmt: skip
            lines.append(json.dumps(event).encode())
    keyless = {"event_id": "nokey", "ts": format_timestamp(T0 + 10), "user_id": "u1"}
    return lines + [json.dumps(keyless).encode(), b"{broken", b'{"event_id": "x", "ts": "not a time", "user_id": "u9"}']


def _transactions() -> list[bytes]:
    """Transactions: a duplicate, a risky customer, one without a profile, a list as key."""
    rows = [("t1", "c1", 10.0, 0), ("t2", "c1", 500.0, 60), ("t2", "c1", 500.0, 61),
            ("t3", "c2", 20.0, 90), ("t4", "c9", 5.0, 100), ("t5", ["c1"], 1.0, 120)]  # fmt: skip
    lines = [
        json.dumps({"transaction_id": t, "customer_id": c, "amount": a,
                    "ts": format_timestamp(T0 + s)}).encode()
        for t, c, a, s in rows
    ]  # fmt: skip
    return lines + [b"[1, 2]"]


def _changes() -> list[bytes]:
    """Debezium and Datastream fixtures (a duplicate, a tombstone, a message) and a bad line."""
    names = ["debezium_postgres_snapshot_read", "debezium_postgres_create",
             "debezium_postgres_update_schemas", "debezium_postgres_create",
             "debezium_postgres_delete", "debezium_postgres_message",
             "datastream_postgres_insert", "debezium_postgres_truncate"]  # fmt: skip
    lines = [json.dumps(json.loads((FIXTURES / f"{n}.json").read_text())["value"]).encode()
             for n in names]  # fmt: skip
    return lines[:5] + [b""] + lines[5:] + [b"{not json"]


def _dead_letters_read_back() -> list[bytes]:
    """Dead letters as a file sink writes them: replayed, parked (replayed enough, cut),
    filtered out by reason; and lines that are no dead letters."""
    origin = Origin("kafka", topic="orders", partition=0, offset=7, key="c1")
    messages = [
        (Message(b'{"event_id": "e1", "amount": "x"}', {"k": "v"}, origin), "schema"),
        (Message(b"\xff{not json", {}, Origin("file", path="/in.jsonl", line=3)), "invalid_json"),
        (Message(b'{"event_id": "e2"}', {REPLAY_COUNT: "3", REPLAY_OF: "f" * 32}, origin), "schema"),
        (Message(b'{"event_id": "e3"}', {}, origin), "schema"),
        (Message(b'{"event_id": "e4"}', {}, origin), "udf"),
    ]  # fmt: skip
    letters = [
        error_record(message, pipeline="events_to_bigquery", step="parse", reason=reason,
                     error_type="SchemaViolation", error_message="no good")
        for message, reason in messages
    ]  # fmt: skip
    letters[3]["payload_truncated"] = True
    lines = [msgspec.json.encode(letter) for letter in letters]
    return lines + [b'{"pipeline": "x"}', b"not json at all"]


PROFILES = [
    {"customer_id": "c1", "typical_amount": 40.0, "risk_score": 0.1},
    {"customer_id": "c2", "typical_amount": 900.0, "risk_score": 0.9},
]


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
        "events_to_bigquery": {**common, "schema": "builtin:events", "counts_window": "30m",
                               "counts_group_by": "endpoint"},  # fmt: skip
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
    }[name]


# Hostile records through the steps, from a file: every line must come out as a row (or in an
# aggregate's count) or as a dead letter with its bytes; no bundle may fail.
HOSTILE = """
providers: [{include: "PROVIDERS"}]
pipeline:
  transforms:
    - {type: ReadFromEndpoint, name: Events, config: {uri: "file://FOLDER/hostile_events.jsonl"}}
    - type: Parse
      name: ParseEvents
      input: Events
      config: {event_time_field: ts, keep_origin: true, error_handling: {output: errors}}
    - type: WindowedAggregate
      input: ParseEvents
      config:
        spec:
          window: {type: tumbling, size: 60s}
          group_by: [endpoint]
          aggregates: {n: count(), total: sum(amount), slowest: max(latency_ms)}
        error_handling: {output: errors}
    - type: Enrich
      input: ParseEvents
      config:
        reference: "file://FOLDER/profiles.jsonl?key={customer_id}"
        error_handling: {output: errors}
    - {type: ReadFromEndpoint, name: Changes, config: {uri: "file://FOLDER/hostile_changes.jsonl"}}
    - type: Parse
      name: ParseChanges
      input: Changes
      config: {keep_origin: true, error_handling: {output: errors}}
    - type: ApplyChanges
      input: ParseChanges
      config: {key_columns: "inventory.customers=id", error_handling: {output: errors}}
"""
HOSTILE_OUTPUTS = {"WindowedAggregate": "aggregate", "Enrich": "enrich",
                   "ApplyChanges": "changes"}  # fmt: skip
HOSTILE_ERRORS = ("ParseEvents", "ParseChanges", "WindowedAggregate", "Enrich", "ApplyChanges")


def _hostile_pipeline(folder: Path) -> str:
    """Writes the hostile inputs into ``folder``; returns the pipeline writing under it."""
    at = format_timestamp(T0)
    good = [{"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": 2.5, "latency_ms": 10},
            {"ts": T0 + 65, "endpoint": "/b", "customer_id": "c9", "amount": 1, "latency_ms": 20}]
    hostile = [
        {"ts": at, "endpoint": ["/a"], "customer_id": {"id": 1}, "amount": 1},  # wrong types
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": "lots", "latency_ms": True},
        {"endpoint": "/a", "customer_id": "c1"}, {"ts": at, "amount": 1},  # fields missing
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": int("9" * 400)},
        {"ts": "0001-01-01T00:00:00Z", "endpoint": "/a"}, {"ts": 1e300, "endpoint": "/a"},
        {"ts": at, "endpoint": "x" * 100_000, "customer_id": "c1"},  # huge but within limits
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "deep": json.loads("[" * 400 + "]" * 400)},
    ]  # fmt: skip
    raw = [b"\xff\xfe\xfd", b'{"ts": 1, "endpoint": "/\xff", "customer_id": "c1"}', b"[1, 2]",
           b"null", b'{"ts": 1, "latency_ms": NaN, "endpoint": "/a"}',
           b'{"ts": 1, "latency_ms": 1e999, "endpoint": "/a"}',
           b'{"ts": 1, "endpoint": "/a", "pad": "' + b"y" * 1_000_000 + b'"}']  # fmt: skip
    lines = [json.dumps(item).encode() for item in good + hostile] + raw
    (folder / "hostile_events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    fixture = json.loads((FIXTURES / "debezium_postgres_create.json").read_text())["value"]
    changes = [json.dumps(fixture).encode()] + [
        json.dumps(change).encode()
        for change in (
            {**fixture, "op": 5, "after": "text"},
            {**fixture, "after": {"id": [1005]}},
            {**fixture, "source": {**fixture["source"], "ts_ms": int("9" * 400)}},
            {**fixture, "source": None}, {"payload": []},
        )
    ] + [b'{"op": "c", "after": {"id": 1, "name": "\xff"}}', b"\xff"]  # fmt: skip
    (folder / "hostile_changes.jsonl").write_bytes(b"\n".join(changes) + b"\n")
    text = HOSTILE.replace("PROVIDERS", PROVIDERS).replace("FOLDER", str(folder))
    for step, output in HOSTILE_OUTPUTS.items():
        text += (f"    - {{type: WriteToEndpoint, name: Write{output}, input: {step}, "
                 f"config: {{uri: 'file://{folder}/hostile/{output}'}}}}\n")  # fmt: skip
    for step in HOSTILE_ERRORS:
        text += (f"    - {{type: WriteToEndpoint, name: Dead{step}, input: {step}.errors, "
                 f"config: {{uri: 'file://{folder}/hostile/dlq_{step}', dead_letters: true}}}}\n")  # fmt: skip
    return text


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
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def _add(pipeline: beam.Pipeline, kind: str, label: str, name: str, options: dict[str, str]) -> None:
    """Adds the catalog pipeline ``name`` built by its Python module or from its template."""
    if kind == "python":
        argv = [f"--{key}={value}" for key, value in options.items()]
        _ = pipeline | f"python {label}" >> _Catalog(name, argv)
    else:
        _ = pipeline | f"yaml {label}" >> yaml_template(name, {**options, "preview": "preview" in options})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, redis_prefix: tuple[str, str]) -> Path:
    """Runs every catalog pipeline, Python and YAML, in one pipeline; returns the folder.

    The YAML ``metrics_to_redis`` also runs with its Redis sink (keys ``PREFIX:endpoint:window``).
    """
    folder = tmp_path_factory.mktemp("yaml")
    (folder / "events.jsonl").write_bytes(b"\n".join(_events()) + b"\n")
    (folder / "transactions.jsonl").write_bytes(b"\n".join(_transactions()) + b"\n")
    (folder / "changes.jsonl").write_bytes(b"\n".join(_changes()) + b"\n")
    (folder / "profiles.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROFILES))
    (folder / "dead_letters.jsonl").write_bytes(b"\n".join(_dead_letters_read_back()) + b"\n")
    pipeline = beam.Pipeline()
    for kind in ("python", "yaml"):  # the Python pipelines first: each checks its error routing
        for name in CATALOG:
            options = {**_arguments(name, folder), **_outputs(folder / kind, name)}
            _add(pipeline, kind, name, name, options)
        for preview in (False, True):
            label = "dlq_replay_preview" if preview else "dlq_replay"
            options = {**_replay_arguments(folder / kind / label, preview),
                       **_outputs(folder / kind, label),
                       "source": f"file://{folder}/dead_letters.jsonl"}  # fmt: skip
            _add(pipeline, kind, label, "dlq_replay", options)
    _ = pipeline | "yaml hostile" >> yaml_pipeline(_hostile_pipeline(folder))
    url, prefix = redis_prefix
    variables = {**_arguments("metrics_to_redis", folder), **_outputs(folder / "redis", "m"),
                 "sink": f"{url}?key={prefix}:{{endpoint}}:{{window_start}}"}  # fmt: skip
    _ = pipeline | "yaml metrics_to_redis, Redis" >> yaml_template("metrics_to_redis", variables)
    pipeline.run().wait_until_finish()
    return folder


def _rows(folder: Path) -> list[str]:
    """The rows written to a folder, canonical (numbers as floats, keys sorted), sorted."""
    rows = [
        json.loads(line, parse_int=float) for path in folder.glob("*.jsonl") for line in path.open()
    ]
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def _dead_letters(folder: Path) -> Counter[tuple[str, str, bytes]]:
    letters = [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]
    return Counter((d["step"], d["reason"], base64.b64decode(d["payload_bytes"])) for d in letters)


@pytest.mark.parametrize("name", CATALOG)
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
        assert {json.loads(a)["alert"] for a in _rows(python / "alerts")} == {"high_amount", "burst"}
        assert {json.loads(a)["alert"] for a in _rows(python / "risky")} == {"high_risk"}


@pytest.mark.parametrize("name", CATALOG)
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

    def lines(folder: Path) -> list[bytes]:
        return sorted(line for path in folder.glob("*.jsonl") for line in path.read_bytes().splitlines())

    sent = lines(python / "out")
    assert b"\xff{not json" in sent and len(sent) == 2  # the original bytes, unchanged
    assert lines(yaml_run / "out") == sent
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
