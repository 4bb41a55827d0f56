"""Flex Templates: committed metadata, spec files, the launch request, the image's Dockerfile."""

from __future__ import annotations

import ast
import copy
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import pytest

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.devtools import java_jars
from pipelines.devtools.cli import main as devtools_main
from pipelines.devtools.metadata import write_metadata
from pipelines.framework.cli import main
from pipelines.framework.launch import Launch, gcloud_command
from pipelines.framework.templates import (
    TemplateError,
    metadata_text,
    template_metadata,
    validate_metadata,
    validate_spec,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/proj-x/suite/beam-suite:1.0"


def committed(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "templates" / name / "metadata.json").read_text())


def params(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {param["name"]: param for param in document["parameters"]}


# --- metadata.json -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_committed_metadata_is_what_the_declaration_generates(name: str) -> None:
    path = ROOT / "templates" / name / "metadata.json"
    assert path.read_text() == metadata_text(get_pipeline(name)), (
        "stale: run python -m pipelines.devtools metadata --write"
    )
    validate_metadata(json.loads(path.read_text()))


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_metadata_has_one_parameter_per_option_plus_the_pipeline_selector(name: str) -> None:
    spec = get_pipeline(name)
    document = committed(name)
    assert [p["name"] for p in document["parameters"]] == ["pipeline"] + [
        option.name for option in spec.options
    ]
    selector = params(document)["pipeline"]
    assert selector["isOptional"] is False
    assert re.search(selector["regexes"][0], name)
    assert not re.search(selector["regexes"][0], name + "x")
    for option in spec.options:
        assert params(document)[option.name]["isOptional"] is (not option.required)


def test_parameter_types_follow_the_declared_values() -> None:
    got = params(committed("metrics_to_redis"))
    assert got["event_time_unit"]["paramType"] == "ENUM"
    assert [o["value"] for o in got["event_time_unit"]["enumOptions"]] == ["auto", "s", "ms", "us"]
    assert got["event_time_unit"]["defaultValue"] == "auto"
    assert got["console"]["paramType"] == "BOOLEAN"
    assert got["console"]["defaultValue"] == "false"
    assert got["max_payload_bytes"]["paramType"] == "NUMBER"
    assert got["max_seconds"]["paramType"] == "NUMBER"
    assert got["source"]["paramType"] == "TEXT"
    assert got["spec"]["isOptional"] is False and "defaultValue" not in got["spec"]
    assert got["udf_function"]["parentName"] == "udf_file"
    assert got["udf_function"]["parentTriggerValues"] == []


def test_streaming_flags_say_what_each_pipeline_supports() -> None:
    events = committed("events_to_bigquery")
    assert (events["streaming"], events["supportsAtLeastOnce"], events["supportsExactlyOnce"]) == (
        True, True, True,
    )  # fmt: skip
    assert events["defaultStreamingMode"] == "EXACTLY_ONCE"
    metrics = committed("metrics_to_redis")  # aggregates: a duplicate would be counted twice
    assert (metrics["streaming"], metrics["supportsAtLeastOnce"]) == (True, False)
    assert metrics["supportsExactlyOnce"] is True
    assert "defaultStreamingMode" not in metrics


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_regexes_accept_blank_optional_values_and_defaults_and_refuse_junk(name: str) -> None:
    for param in committed(name)["parameters"]:
        patterns = [re.compile(pattern) for pattern in param.get("regexes", [])]
        for pattern in patterns:
            assert bool(pattern.search("")) is param["isOptional"], param["name"]
            if "defaultValue" in param:
                assert pattern.search(param["defaultValue"]), param["name"]
            if param["paramType"] == "NUMBER":
                assert not pattern.search("ten") and pattern.search("10"), param["name"]
            for option in param.get("enumOptions", []):
                assert pattern.search(option["value"])
                assert not pattern.search(option["value"] + "x"), param["name"]


def test_write_metadata_creates_every_file_and_then_is_stable(tmp_path: Path) -> None:
    assert write_metadata(tmp_path) == sorted(CATALOG)
    for name in CATALOG:
        assert (tmp_path / "templates" / name / "metadata.json").read_text() == metadata_text(
            get_pipeline(name)
        )
    assert write_metadata(tmp_path) == []


def _break_unknown_key(d: dict[str, Any]) -> None:
    d["parameters"][1]["example"] = "x"


def _break_duplicate(d: dict[str, Any]) -> None:
    d["parameters"].append(copy.deepcopy(d["parameters"][1]))


def _break_regex(d: dict[str, Any]) -> None:
    params(d)["max_seconds"]["regexes"] = ["^([0-9]+$"]


def _break_blank(d: dict[str, Any]) -> None:
    params(d)["max_seconds"]["regexes"] = ["^[0-9.]+$"]


def _break_default(d: dict[str, Any]) -> None:
    params(d)["unknown_fields"]["defaultValue"] = "ignore"


def _break_enum(d: dict[str, Any]) -> None:
    del params(d)["unknown_fields"]["enumOptions"]


def _break_parent(d: dict[str, Any]) -> None:
    params(d)["udf_function"]["parentName"] = "udf_path"


def _break_trigger(d: dict[str, Any]) -> None:
    params(d)["udf_function"]["parentName"] = "unknown_fields"
    params(d)["udf_function"]["parentTriggerValues"] = ["ignore"]


def _break_mode(d: dict[str, Any]) -> None:
    d["supportsAtLeastOnce"] = False


def _break_batch(d: dict[str, Any]) -> None:
    d["streaming"] = False


def _break_param_type(d: dict[str, Any]) -> None:
    params(d)["source"]["paramType"] = "URI"


def _break_selector(d: dict[str, Any]) -> None:
    del d["parameters"][0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_break_unknown_key, 'no field named "example"'),
        (_break_duplicate, "declared twice"),
        (_break_regex, "does not compile"),
        (_break_blank, "must accept a blank value"),
        (_break_default, "is not one of"),
        (_break_enum, "has enumOptions"),
        (_break_parent, "is not another parameter"),
        (_break_trigger, "is never 'ignore'"),
        (_break_mode, "defaultStreamingMode is set exactly when both"),
        (_break_batch, "batch template"),
        (_break_param_type, "Invalid enum value URI"),
        (_break_selector, "'pipeline' is missing"),
    ],
)
def test_validation_refuses_broken_metadata(damage: Any, message: str) -> None:
    document = committed("events_to_bigquery")
    damage(document)
    with pytest.raises(TemplateError, match=re.escape(message)):
        validate_metadata(document)


def test_template_validate_command_checks_every_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["template", "validate"]) == 0
    assert capsys.readouterr().out.strip() == f"valid: {', '.join(sorted(CATALOG))}"


def test_devtools_metadata_checks_every_committed_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert devtools_main(["metadata"]) == 0
    assert capsys.readouterr().out.strip().endswith(", ".join(sorted(CATALOG)))


# --- the spec file ---------------------------------------------------------------------------


def test_build_writes_the_gcloud_shape_with_the_streaming_flags(tmp_path: Path) -> None:
    output = tmp_path / "spec.json"
    argv = ["template", "build", "metrics_to_redis", "--image", IMAGE, "--bucket", "gs://bucket-x"]
    assert main([*argv, "--output", str(output)]) == 0
    spec = json.loads(output.read_text())
    assert spec == {
        "defaultEnvironment": {
            "sdkContainerImage": IMAGE,
            "stagingLocation": "gs://bucket-x/staging",
            "tempLocation": "gs://bucket-x/temp",
        },
        "image": IMAGE,
        "metadata": committed("metrics_to_redis"),
        "sdkInfo": {"language": "PYTHON"},
    }
    assert spec["metadata"]["streaming"] is True
    assert spec["metadata"]["supportsExactlyOnce"] is True
    assert main(["template", "validate", "--spec", str(output)]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sdkInfo": {"language": "JAVA"}}, "must be PYTHON"),
        ({"image": ""}, "has no image"),
        ({"imageUri": IMAGE}, 'no field named "imageUri"'),
    ],
)
def test_validate_refuses_a_bad_spec(change: dict[str, Any], message: str) -> None:
    spec = {
        "defaultEnvironment": {},
        "image": IMAGE,
        "metadata": committed("events_to_bigquery"),
        "sdkInfo": {"language": "PYTHON"},
        **change,
    }
    with pytest.raises(TemplateError, match=re.escape(message)):
        validate_spec(spec)


def test_build_refuses_a_bucket_with_a_folder(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["template", "build", "events_to_bigquery", "--image", IMAGE]
    assert main([*argv, "--bucket", "gs://bucket-x/templates"]) == 2
    assert "expected gs://BUCKET" in capsys.readouterr().err


# --- launch ----------------------------------------------------------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = urlsplit(self.path)
        assert unquote(url.query) == "$alt=json;enum-encoding=int"  # the client's JSON flavour
        type(self).requests.append((url.path, body))
        reply = json.dumps({"job": {"id": "2026-11-25_01_02_03-42", "name": "events-1"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def dataflow_stub() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    _Stub.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _Stub.requests
    finally:
        server.shutdown()
        server.server_close()


SOURCE = "pubsub://projects/proj-x/subscriptions/events"
SINK = "bigquery://proj-x:analytics.events"
DLQ = "bigquery://proj-x:analytics.events_dlq"


def test_launch_sends_the_exact_request_and_prints_gcloud(
    dataflow_stub: tuple[str, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "us-central1", "--bucket", "gs://bucket-x", "--job_name", "events-1",
        "--parameters", f"source={SOURCE},sink={SINK},dead_letter={DLQ},unknown_fields=drop",
        "--environment", "tempLocation=gs://bucket-x/tmp,maxWorkers=3",
        "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 0
    assert requests == [
        (
            "/v1b3/projects/proj-x/locations/us-central1/flexTemplates:launch",
            {
                "launchParameter": {
                    "jobName": "events-1",
                    "containerSpecGcsPath": "gs://bucket-x/templates/events_to_bigquery.json",
                    "parameters": {
                        "pipeline": "events_to_bigquery",
                        "source": SOURCE,
                        "sink": SINK,
                        "dead_letter": DLQ,
                        "unknown_fields": "drop",
                    },
                    "environment": {"tempLocation": "gs://bucket-x/tmp", "maxWorkers": 3},
                }
            },
        )
    ]
    out = capsys.readouterr().out
    assert "job id 2026-11-25_01_02_03-42" in out
    command = next(line.strip() for line in out.splitlines() if "gcloud" in line and "run" in line)
    assert shlex.split(command) == [
        "gcloud", "dataflow", "flex-template", "run", "events-1",
        "--template-file-gcs-location=gs://bucket-x/templates/events_to_bigquery.json",
        "--project=proj-x", "--region=us-central1",
        f"--parameters=pipeline=events_to_bigquery,source={SOURCE},sink={SINK},"
        f"dead_letter={DLQ},unknown_fields=drop",
        "--temp-location=gs://bucket-x/tmp", "--max-workers=3",
    ]  # fmt: skip


def test_validate_only_is_sent(dataflow_stub: tuple[str, list[Any]]) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "europe-west1", "--bucket", "gs://bucket-x", "--validate_only",
        "--parameters", f"source={SOURCE},sink={SINK},dead_letter={DLQ}",
        "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 0
    ((path, body),) = requests
    assert path == "/v1b3/projects/proj-x/locations/europe-west1/flexTemplates:launch"
    assert body["validateOnly"] is True
    assert re.fullmatch(r"events-to-bigquery-\d{8}-\d{6}", body["launchParameter"]["jobName"])


def test_update_sends_the_transform_name_mappings(
    dataflow_stub: tuple[str, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "us-central1", "--bucket", "gs://bucket-x", "--job_name", "events-1",
        "--parameters", f"source={SOURCE},sink={SINK},dead_letter={DLQ}",
        "--update", "--transform_name_mappings", "Write=Write rows,Counts=",
        "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 0
    ((_, body),) = requests
    launch = body["launchParameter"]
    assert launch["update"] is True
    assert launch["transformNameMappings"] == {"Write": "Write rows", "Counts": ""}
    out = capsys.readouterr().out
    assert "--update '--transform-name-mappings=Write=Write rows,Counts='" in out


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (f"source={SOURCE},sink={SINK},dead_letter={DLQ},colour=red", "unknown parameter 'colour'"),
        (f"source={SOURCE},sink={SINK}", "missing required parameter 'dead_letter'"),
        (f"source={SOURCE},sink={SINK},dead_letter={DLQ},max_seconds=soon", "max_seconds='soon'"),
        (f"source={SOURCE},sink={SINK},dead_letter={DLQ},udf_function=f",
         "udf_function applies only when udf_file is set"),
        (f"source={SOURCE},sink={SINK},dead_letter={DLQ},pipeline=metrics_to_redis",
         "'pipeline' is set by the command"),
    ],
)  # fmt: skip
def test_bad_parameters_fail_before_any_request(
    parameters: str,
    message: str,
    dataflow_stub: tuple[str, list[Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "us-central1", "--bucket", "gs://bucket-x",
        "--parameters", parameters, "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert requests == []


def test_gcloud_command_keeps_values_with_commas_in_one_parameter() -> None:
    launch = Launch(
        pipeline="events_to_bigquery",
        project="proj-x",
        region="us-central1",
        bucket="gs://bucket-x",
        job_name="events-2",
        parameters={"source": SOURCE, "sink": SINK, "dead_letter": DLQ,
                    "counts_group_by": "event_type,user_id"},
    )  # fmt: skip
    words = shlex.split(gcloud_command(launch))
    flag = next(word for word in words if word.startswith("--parameters="))
    assert flag == (
        "--parameters=^~^pipeline=events_to_bigquery~source=" + SOURCE + "~sink=" + SINK
        + "~dead_letter=" + DLQ + "~counts_group_by=event_type,user_id"
    )  # fmt: skip


def test_metadata_of_the_declaration_is_what_launch_checks() -> None:
    # A required option has no default in the metadata, so launch reports it missing.
    required = [p["name"] for p in template_metadata(get_pipeline("metrics_to_redis"))[
        "parameters"] if not p["isOptional"]]  # fmt: skip
    assert required == ["pipeline", "source", "sink", "dead_letter", "spec"]
    with pytest.raises(TemplateError, match="missing required parameter 'spec'"):
        Launch("metrics_to_redis", "proj-x", "us-central1", "gs://bucket-x",
               {"source": SOURCE, "sink": SINK, "dead_letter": DLQ})  # fmt: skip


# --- the image -------------------------------------------------------------------------------


def hadolint() -> str:
    return str(Path(sys.executable).parent / "hadolint")


def test_dockerfile_lints_clean_with_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "")


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_dockerfile_is_launcher_and_worker_with_the_suite_entry_point() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert base_image_of(dockerfile_stages()[-1].image) == "apache/beam_python3.11_sdk:2.77.0"
    assert re.fullmatch(
        r"gcr\.io/dataflow-templates-base/python311-template-launcher-base:\w+", froms[0]
    )
    launcher = "/opt/google/dataflow/python_template_launcher"
    assert f"COPY --from=launcher {launcher} {launcher}" in text
    copied = re.search(r"^COPY pipelines/flex_main\.py (\S+)$", text, re.MULTILINE)
    assert copied is not None
    assert f"ENV FLEX_TEMPLATE_PYTHON_PY_FILE={copied[1]}" in text
    assert "--require-hashes --requirement requirements/image.txt" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text


def test_image_lock_pins_every_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements" / "image.txt").read_text()
    pins = dict(
        re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, re.MULTILINE | re.IGNORECASE)
    )
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    assert pins["apache-beam"] == "2.77.0"  # the same Beam as the base image
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 1)[1], flags=re.IGNORECASE)
    for block in blocks:
        if re.match(r"[a-z0-9]", block, re.IGNORECASE):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    tree = ast.parse((ROOT / "setup.py").read_text())
    install = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "INSTALL_REQUIRES"
    )  # fmt: skip
    for requirement in ast.literal_eval(install):
        name = re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower().replace("_", "-")  # type: ignore[index]
        assert name in pins, f"{name} is not in requirements/image.txt: regenerate it"


# --- the image's `java` target ---------------------------------------------------------------

BEAM_VERSION = "2.77.0"
MAVEN = "https://repo.maven.apache.org/maven2/org/apache/beam"
KAFKA_JAR = f"beam-sdks-java-io-expansion-service-{BEAM_VERSION}.jar"
KINESIS_JAR = f"beam-sdks-java-io-amazon-web-services2-expansion-service-{BEAM_VERSION}.jar"
BQ_JAR = f"beam-sdks-java-io-google-cloud-platform-expansion-service-{BEAM_VERSION}.jar"


class Stage(NamedTuple):
    """One build stage of the Dockerfile."""

    image: str  # what it starts from: an image or an earlier stage's name
    name: str  # its name after AS, "" for none
    body: str  # its instructions


def dockerfile_stages(text: str | None = None) -> list[Stage]:
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    parts = re.split(r"^(FROM \S+(?: AS \S+)?)$", text, flags=re.MULTILINE)
    stages = []
    for line, body in zip(parts[1::2], parts[2::2], strict=True):
        words = line.split()
        stages.append(Stage(words[1], words[3] if len(words) == 4 else "", body))
    return stages


def base_image_of(image: str) -> str:
    """Follows stage names (``FROM base``) back to the image they start from."""
    names = {stage.name: stage.image for stage in dockerfile_stages() if stage.name}
    while image in names:
        image = names[image]
    return image


def test_java_jars_are_the_ones_beam_2_77_names_for_kafka_and_kinesis() -> None:
    # Pure: Beam's factories and path_to_beam_jar only build URLs; nothing is downloaded.
    jars = java_jars.resolve_jars()
    assert [(jar.ios, jar.gradle_target, jar.url) for jar in jars] == [
        (("kafka",), "sdks:java:io:expansion-service:shadowJar",
         f"{MAVEN}/beam-sdks-java-io-expansion-service/{BEAM_VERSION}/{KAFKA_JAR}"),
        (("kinesis",), "sdks:java:io:amazon-web-services2:expansion-service:shadowJar",
         f"{MAVEN}/beam-sdks-java-io-amazon-web-services2-expansion-service/{BEAM_VERSION}/"
         f"{KINESIS_JAR}"),
    ]  # fmt: skip
    assert [jar.file_name for jar in jars] == [KAFKA_JAR, KINESIS_JAR]


def test_java_jars_are_the_urls_beam_itself_uses_when_building_the_graph() -> None:
    from apache_beam.io import kafka, kinesis
    from apache_beam.io.gcp.bigquery import StorageWriteToBigQuery
    from apache_beam.io.kafka import ReadFromKafka

    by_io = {jar.ios[0]: jar.url for jar in java_jars.resolve_jars(java_jars.EXPANSION_SERVICES)}
    assert by_io["kafka"] == kafka.default_io_expansion_service().path_to_jar
    assert by_io["kinesis"] == kinesis.default_io_expansion_service().path_to_jar
    write = StorageWriteToBigQuery(table="p:d.t")
    assert by_io["storage_write"] == write._expansion_service.path_to_jar
    assert by_io["storage_write"].endswith(f"/{BQ_JAR}")
    # The transform the suite builds for Kafka impl=java (no expansion_service argument).
    read = ReadFromKafka(consumer_config={"bootstrap.servers": "k:9092"}, topics=["t"])
    assert read._expansion_service.path_to_jar == by_io["kafka"]


def test_java_jars_cache_where_beam_looks_and_take_a_mirror(tmp_path: Path) -> None:
    from apache_beam.utils.subprocess_server import JavaJarServer

    kafka_jar, kinesis_jar = java_jars.resolve_jars(["kafka", "kinesis", "kafka"])
    assert java_jars.cached_path(kafka_jar) == str(Path(JavaJarServer.JAR_CACHE) / KAFKA_JAR)
    assert JavaJarServer.JAR_CACHE == str(Path("~/.apache_beam/cache/jars").expanduser())
    assert java_jars.cached_path(kinesis_jar, str(tmp_path)) == str(tmp_path / KINESIS_JAR)
    (mirrored,) = java_jars.resolve_jars(["kafka"], "https://mirror.example/maven2")
    assert mirrored.url == (
        "https://mirror.example/maven2/org/apache/beam/beam-sdks-java-io-expansion-service/"
        f"{BEAM_VERSION}/{KAFKA_JAR}"
    )
    assert mirrored.file_name == kafka_jar.file_name  # so Beam finds it under its own URL
    with pytest.raises(KeyError, match="unknown IO 'kafak'"):
        java_jars.resolve_jars(["kafak"])


def test_java_jars_check_and_list_work_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(tmp_path)
    assert java_jars.main(["--check", "--cache_dir", cache]) == 1
    out = capsys.readouterr().out
    assert f"kafka: MISSING {tmp_path / KAFKA_JAR}" in out
    assert f"kinesis: MISSING {tmp_path / KINESIS_JAR}" in out
    (tmp_path / KAFKA_JAR).write_bytes(b"PK")
    assert java_jars.missing_jars(java_jars.resolve_jars(), cache) == java_jars.resolve_jars()[1:]
    (tmp_path / KINESIS_JAR).write_bytes(b"PK")
    assert java_jars.main(["--check", "--cache_dir", cache]) == 0
    assert f"kinesis: cached {tmp_path / KINESIS_JAR}" in capsys.readouterr().out
    assert java_jars.main(["--list", "--io", "storage_write", "--cache_dir", cache]) == 0
    out = capsys.readouterr().out
    assert f"Beam {BEAM_VERSION}, jar cache {tmp_path}" in out
    assert f"storage_write: {MAVEN}/" in out and f"-> {tmp_path / BQ_JAR}" in out
    assert "kafka" not in out


def test_java_jars_download_nothing_already_cached(tmp_path: Path) -> None:
    for name in (KAFKA_JAR, KINESIS_JAR):
        (tmp_path / name).write_bytes(b"PK")
    paths = java_jars.cache_jars(java_jars.resolve_jars(), str(tmp_path))
    assert paths == [str(tmp_path / KAFKA_JAR), str(tmp_path / KINESIS_JAR)]


def test_dockerfile_stages_base_by_default_and_java_on_request() -> None:
    stages = dockerfile_stages()
    assert [(stage.image, stage.name) for stage in stages] == [
        (stages[0].image, "launcher"),
        ("apache/beam_python3.11_sdk:2.77.0", "jars"),
        ("apache/beam_python3.11_sdk:2.77.0", "base"),
        ("base", "java"),
        ("base", ""),  # the default target: `docker build .` builds the image without Java
    ]
    assert stages[-1].body.strip() == ""
    assert "USER" not in (ROOT / "Dockerfile").read_text()  # root: Beam's cache is /root/...
    assert "docker build --target java" in (ROOT / "Dockerfile").read_text()


def test_dockerfile_java_stage_installs_a_pinned_headless_jre_and_the_cached_jars() -> None:
    java = next(stage for stage in dockerfile_stages() if stage.name == "java")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", java.body, re.MULTILINE))
    assert args["JRE_PACKAGE"].endswith("-jre-headless")
    assert re.fullmatch(r"\d[\w.+~:-]*", args["JRE_VERSION"])
    run = re.search(r"^RUN apt-get update .*?[^\\]$", java.body, re.MULTILINE | re.DOTALL)
    assert run is not None
    command = " ".join(run[0].replace("\\\n", " ").split())
    assert 'apt-get install -y --no-install-recommends "${JRE_PACKAGE}=${JRE_VERSION}"' in command
    assert "rm -rf /var/lib/apt/lists/*" in command and command.endswith("java -version")
    cache = "/root/.apache_beam/cache/jars"
    assert f"COPY --from=jars {cache} {cache}" in java.body
    assert re.search(
        r"^RUN python -m pipelines\.devtools\.java_jars --check$", java.body, re.MULTILINE
    )


def test_dockerfile_jars_stage_runs_the_module_from_the_files_it_copies(tmp_path: Path) -> None:
    jars = next(stage for stage in dockerfile_stages() if stage.name == "jars")
    copies = re.findall(r"^COPY ((?:pipelines/\S+ )+)(pipelines/\S*)$", jars.body, re.MULTILINE)
    assert copies
    assert re.search(
        r"^RUN python -m pipelines\.devtools\.java_jars --maven_repository_url", jars.body, re.M
    )
    for sources, folder in copies:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for name in sources.split():
            assert str(Path(name).parent) + "/" == folder, name
            (tmp_path / name).write_text((ROOT / name).read_text())
    # Only the copied files and the Beam of the SDK image: nothing else of the suite.
    script = (
        "import sys, pipelines.devtools.java_jars as m; print(m.__file__); "
        "sys.exit(m.main(['--list', '--cache_dir', 'C']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(tmp_path / "pipelines" / "devtools" / "java_jars.py")
    assert lines[2].endswith(f"-> C/{KAFKA_JAR}") and lines[3].endswith(f"-> C/{KINESIS_JAR}")


def test_hadolint_checks_the_java_stage_too(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    pinned = '--no-install-recommends "${JRE_PACKAGE}=${JRE_VERSION}"'
    assert pinned in text
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace(pinned, '"${JRE_PACKAGE}"'))
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3008" in result.stdout and "DL3015" in result.stdout
