"""Dashboards and alerts come from the metrics the code declares, and name no other counter.

``terraform/modules/monitoring/pipelines.json`` is generated (``terraform/generate.py``) from
``transforms.metrics``; the module's provider-free ``dashboard.tf`` turns it into the dashboard
and the alert conditions, which the stubbed module shows as outputs (tests/terraform/stubs).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tfcheck import MODULES, STUBS, load_hcl, load_script, tf_files

import pipelines.catalog
from pipelines.catalog import CATALOG
from transforms import metrics
from transforms.metrics import METRICS, Metric, declared

generate = load_script("generate")
MONITORING = MODULES / "monitoring"
ALERTS = {"dead_letters", "balance", "system_lag", "data_watermark_age", "backlog_age",
          "job_not_running"}  # fmt: skip
# metric_name="read" and metric_name=~"dead_lettered\\..+" in the PromQL queries.
METRIC_NAME = re.compile(r'metric_name(=~?)"((?:[^"\\]|\\.)*)"')


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in _strings(item)] if isinstance(value, list) else []


def _named_counters(text: str) -> set[str]:
    """The counter names a PromQL query selects (a regex gives the literal stem of each
    alternative: ``dead_lettered\\\\.(sink_.*)`` names ``dead_lettered``)."""
    names = set()
    for operator, value in METRIC_NAME.findall(text):
        if operator == "=":
            names.add(value)
            continue
        depth, alternatives = 0, [""]
        for char in value:  # split on the | outside parentheses
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == "|" and depth == 0:
                alternatives.append("")
            else:
                alternatives[-1] += char
        names |= {re.split(r"\\\\|\(|\.", alternative)[0] for alternative in alternatives}
    return names


def test_every_pipeline_has_a_dashboard_and_the_alert_set():
    document = json.loads((MONITORING / "pipelines.json").read_text(encoding="utf-8"))
    assert sorted(document) == sorted(CATALOG)
    for name, entry in document.items():
        assert entry["dashboard"]["mosaicLayout"]["tiles"], name
        assert set(entry["alerts"]) == ALERTS, name


def test_every_counter_a_dashboard_or_alert_names_is_declared():
    document = json.loads((MONITORING / "pipelines.json").read_text(encoding="utf-8"))
    named = {name for text in _strings(document) for name in _named_counters(text)}
    assert {"read", "dead_lettered", "written_alerts", "aggregated"} <= named
    for name in named:
        declared(name)  # KeyError: a query names a counter the code does not declare


def test_the_monitoring_hcl_names_no_counter():
    for path in tf_files(MONITORING):
        literals = set(re.findall(r'"([a-z_.]+)"', path.read_text(encoding="utf-8")))
        assert not literals & set(METRICS), (path, literals & set(METRICS))
    main = load_hcl(MONITORING / "main.tf")
    resources = {(kind, name) for entry in main["resource"] for kind, named in entry.items()
                 for name in named}  # fmt: skip
    assert resources == {
        ("google_monitoring_dashboard", "this"),
        ("google_monitoring_alert_policy", "this"),
    }


def test_the_gcp_example_monitors_every_job():
    main = load_hcl(MODULES.parent / "examples" / "gcp" / "streaming_suite" / "main.tf")
    modules = {name: body for entry in main["module"] for name, body in entry.items()}
    assert modules["monitoring"]["for_each"] == modules["job"]["for_each"]
    assert modules["monitoring"]["notification_channels"] == "${var.notification_channels}"


@pytest.fixture(scope="module")
def applied(tmp_path_factory, tf):
    """A root with the stubbed module twice (with and without a subscription), applied after
    adding a counter to the declaration and regenerating pipelines.json."""
    tmp_path = tmp_path_factory.mktemp("monitoring")
    module = tmp_path / "modules" / "monitoring"
    shutil.copytree(MONITORING, module)
    for file in ("main.tf", "outputs.tf", "versions.tf"):
        shutil.copy(STUBS / "monitoring" / file, module / file)
    probe = Metric("probe_counter", "counter", "A counter added to the declaration.")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(METRICS, probe.name, probe)
        patch.setattr(pipelines.catalog, "COMMON", (*metrics.COMMON, probe.name))
        (module / "pipelines.json").write_text(generate.render(generate.monitoring()))
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text(_ROOT)
    env = {"TF_DATA_DIR": str(tmp_path / "data")}
    for command in (["init", "-backend=false"], ["apply", "-auto-approve", "-input=false"]):
        result = tf.run([f"-chdir={root}", *command, "-no-color"], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    output = tf.run([f"-chdir={root}", "output", "-json"], env=env)
    return {name: entry["value"] for name, entry in json.loads(output.stdout).items()}


_ROOT = """
module "events" {
  source                = "../modules/monitoring"
  project_id            = "acme-data-dev"
  pipeline              = "events_to_bigquery"
  job_name              = "bss-dev-events-to-bigquery"
  subscription_id       = "bss-dev-events-to-bigquery-input-dataflow"
  notification_channels = ["projects/acme-data-dev/notificationChannels/42"]
  thresholds            = { system_lag_seconds = 120 }
}

module "cdc" {
  source     = "../modules/monitoring"
  project_id = "acme-data-dev"
  pipeline   = "cdc_replicate"
  job_name   = "bss-dev-cdc-replicate"
}

output "events" { value = module.events }
output "cdc" { value = module.cdc }
"""


def test_a_counter_added_to_the_declaration_shows_on_the_dashboard(applied):
    for job in ("events", "cdc"):
        dashboard = json.loads(applied[job]["dashboard_json"])
        titles = [tile["widget"]["title"] for tile in dashboard["mosaicLayout"]["tiles"]]
        assert "probe_counter per second, by step" in titles, job
        assert "probe_counter" in applied[job]["metric_names"]


def test_the_job_and_subscription_are_filled_in(applied):
    text = applied["events"]["dashboard_json"]
    assert "__" not in text.replace("__name__", "")
    assert 'job_name=\\"bss-dev-events-to-bigquery\\"' in text
    assert "bss-dev-events-to-bigquery-input-dataflow" in text


def test_alerts_take_the_thresholds_and_the_backlog_alert_needs_a_subscription(applied):
    events, cdc = applied["events"]["alert_queries"], applied["cdc"]["alert_queries"]
    assert set(events) == ALERTS and set(cdc) == ALERTS - {"backlog_age"}
    assert events["system_lag"].endswith("> 120")  # set
    assert events["data_watermark_age"].endswith("> 600")  # default
    assert events["dead_letters"].endswith("> 1")
    assert "cdc_key_changes" in cdc["balance"]  # read + splits = applied + ...
    assert all("__" not in query for query in [*events.values(), *cdc.values()])


def test_named_counters_reads_exact_names_and_regex_stems():
    text = 'metric_name="read"} metric_name=~"dead_lettered\\\\.(sink_.*|rule_error)"'
    assert _named_counters(text) == {"read", "dead_lettered"}
    assert _named_counters('metric_name=~"written_alerts(_.+)?"') == {"written_alerts"}
    assert _named_counters('metric_name=~"read|cdc_key_changes"') == {"read", "cdc_key_changes"}


def test_generate_check_sees_a_stale_monitoring_file(tmp_path: Path, monkeypatch):
    for relative in generate.FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(generate.render(generate.FILES[relative]()))
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.stale_files() == []
    probe = Metric("probe_counter", "counter", "A counter added to the declaration.")
    monkeypatch.setitem(METRICS, probe.name, probe)
    monkeypatch.setattr(pipelines.catalog, "COMMON", (*metrics.COMMON, probe.name))
    assert generate.stale_files() == [
        "modules/monitoring/pipelines.json",
        "modules/monitoring/dashboard.svg",
    ]
