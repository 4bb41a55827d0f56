"""Structural rules on every .tf file, read with python-hcl2 (no provider needed)."""

from __future__ import annotations

import re

import pytest
from tfcheck import (
    EXAMPLES,
    MODULES,
    TERRAFORM,
    blocks,
    load_hcl,
    named_blocks,
    regex_repeat_counts,
    tf_files,
)

# Words (between underscores) that make a variable name secret-like.
SECRET_WORDS = {"password", "passwd", "auth", "token", "secret", "credential", "credentials"}
# Variables whose names have a secret word but that hold a switch or a name, not a secret.
SECRET_SETTING = re.compile(r"(_enabled|_id|_ids|_name|_mode)$")
MODULE_DIRS = sorted(p for p in MODULES.iterdir() if p.is_dir())
ROOT_DIRS = sorted(p.parent for p in EXAMPLES.rglob("main.tf"))


def _all(kind: str, two_labels: bool = True):
    for path in tf_files():
        document = load_hcl(path)
        if two_labels:
            for type_name, name, body in blocks(document, kind):
                yield path, type_name, name, body
        else:
            for name, body in named_blocks(document, kind):
                yield path, name, body


def _unwrap(expression: str) -> str:
    return expression[2:-1] if expression.startswith("${") and expression.endswith("}") else ""


def test_the_tree_has_modules_and_examples():
    names = {p.name for p in MODULE_DIRS}
    assert {"naming", "wiring", "pubsub", "bigquery", "redis", "dataflow_flex_job"} <= names
    assert EXAMPLES / "aws" / "kinesis" in ROOT_DIRS
    assert any(p.parent == EXAMPLES / "gcp" for p in ROOT_DIRS)


def test_every_variable_has_a_description_and_a_type():
    problems = [
        f"{path.relative_to(TERRAFORM)}: variable {name}"
        for path, name, body in _all("variable", two_labels=False)
        if not str(body.get("description", "")).strip() or "type" not in body
    ]
    assert not problems, problems


def test_every_output_has_a_description():
    problems = [
        f"{path.relative_to(TERRAFORM)}: output {name}"
        for path, name, body in _all("output", two_labels=False)
        if not str(body.get("description", "")).strip()
    ]
    assert not problems, problems


def test_no_secret_like_variable_has_a_default():
    checked = 0
    for path, name, body in _all("variable", two_labels=False):
        if not SECRET_WORDS & set(name.split("_")):
            continue
        checked += 1
        if body.get("type") == "bool" or SECRET_SETTING.search(name):
            continue  # auth_enabled, auth_secret_id: a switch, or the name of a secret
        assert "default" not in body, f"{path}: secret-like variable {name} has a default"
        assert body.get("sensitive") is True, f"{path}: secret-like variable {name} not sensitive"
    assert checked > 0


def test_every_subscription_has_a_dead_letter_policy():
    # The one exception is the subscription that keeps the dead letters themselves: its topic
    # is a dead-letter topic (a dead-letter policy there would loop).
    dead_letter_topics = set()
    subscriptions = list(_all("resource"))
    for _, type_name, _name, body in subscriptions:
        if type_name == "google_pubsub_subscription":
            for policy in body.get("dead_letter_policy", []):
                dead_letter_topics.add(_unwrap(policy["dead_letter_topic"]).removesuffix(".id"))
    found = 0
    for path, type_name, name, body in subscriptions:
        if type_name != "google_pubsub_subscription":
            continue
        found += 1
        if _unwrap(body["topic"]).removesuffix(".id") in dead_letter_topics:
            assert "dead_letter_policy" not in body, f"{name} holds dead letters: no policy"
            continue
        policies = body.get("dead_letter_policy", [])
        assert len(policies) == 1, f"{path}: subscription {name} has no dead-letter policy"
        assert policies[0]["max_delivery_attempts"], name
        assert body["expiration_policy"][0]["ttl"] == "", f"{name} must never expire"
    assert found >= 2


def test_dead_letter_iam_for_the_pubsub_service_agent():
    resources = {(t, n): b for _, t, n, b in _all("resource")}
    publisher = resources[("google_pubsub_topic_iam_member", "agent_publishes_dead_letters")]
    subscriber = resources[("google_pubsub_subscription_iam_member", "agent_acknowledges_source")]
    assert publisher["role"] == "roles/pubsub.publisher"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert "gcp-sa-pubsub" in str(load_hcl(MODULES / "pubsub" / "main.tf")["locals"])
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter.name}"


def test_every_table_is_day_partitioned_and_protected_by_default():
    found = 0
    for path, type_name, name, body in _all("resource"):
        if type_name != "google_bigquery_table":
            continue
        found += 1
        partitioning = body.get("time_partitioning", [])
        assert partitioning and partitioning[0]["type"] == "DAY", f"{path}: {name}"
        assert partitioning[0].get("field"), f"{path}: {name} must partition on a column"
        assert body["deletion_protection"] == "${var.deletion_protection}"
    assert found >= 1
    variables = dict(named_blocks(load_hcl(MODULES / "bigquery" / "variables.tf"), "variable"))
    assert variables["deletion_protection"]["default"] is True


def test_the_flex_job_uses_google_beta_drains_and_checks_its_parameters():
    jobs = [
        (path, body)
        for path, type_name, _, body in _all("resource")
        if type_name == "google_dataflow_flex_template_job"
    ]
    assert len(jobs) == 1
    path, job = jobs[0]
    assert job["provider"] == "google-beta"
    assert job["on_delete"] == "${var.on_delete}"
    assert job["parameters"] == "${var.parameters}"
    assert job["enable_streaming_engine"] == "${var.enable_streaming_engine}"
    condition = job["lifecycle"][0]["precondition"][0]["condition"]
    assert "toset(keys(var.parameters)) == toset(var.template_parameter_names)" in condition
    versions = load_hcl(path.parent / "versions.tf")["terraform"][0]["required_providers"][0]
    assert versions["google-beta"]["source"] == "hashicorp/google-beta"
    variables = dict(named_blocks(load_hcl(path.parent / "variables.tf"), "variable"))
    assert variables["on_delete"]["default"] == "drain"
    assert variables["enable_streaming_engine"]["default"] is True
    assert variables["private_ips"]["default"] is True


def test_the_flex_job_exposes_what_the_provider_offers_for_updates():
    (job,) = (
        body
        for _, type_name, _, body in _all("resource")
        if type_name == "google_dataflow_flex_template_job"
    )
    variables = dict(
        named_blocks(load_hcl(MODULES / "dataflow_flex_job" / "variables.tf"), "variable")
    )
    defaults = {
        "transform_name_mapping": ("map(string)", {}),
        "skip_wait_on_job_termination": ("bool", False),
        "launcher_machine_type": ("string", None),
        "autoscaling_algorithm": ("string", None),
    }
    for name, (kind, default) in defaults.items():
        assert job[name] == f"${{var.{name}}}", name  # the provider's argument of that name
        assert (_unwrap(variables[name]["type"]) or variables[name]["type"]) == kind, name
        assert variables[name]["default"] == default, name
    for root in ROOT_DIRS:
        for _name, call in named_blocks(load_hcl(root / "main.tf"), "module"):
            if call["source"].endswith("/dataflow_flex_job"):
                assert "transform_name_mapping" in call, root


def test_examples_pass_the_wiring_parameters_to_the_job():
    for root in ROOT_DIRS:
        for _name, call in named_blocks(load_hcl(root / "main.tf"), "module"):
            if call["source"].endswith("/dataflow_flex_job"):
                assert call["parameters"] == "${module.wiring[each.key].parameters}", root
                assert call["template_parameter_names"] == (
                    "${module.wiring[each.key].parameter_names}"
                ), root


def test_redis_has_auth_and_tls_by_default_and_its_secret_comes_from_the_instance():
    variables = dict(named_blocks(load_hcl(MODULES / "redis" / "variables.tf"), "variable"))
    assert variables["auth_enabled"]["default"] is True
    assert variables["transit_encryption_mode"]["default"] == "SERVER_AUTHENTICATION"
    resources = {
        (t, n): b for t, n, b in blocks(load_hcl(MODULES / "redis" / "main.tf"), "resource")
    }
    version = resources[("google_secret_manager_secret_version", "auth")]
    assert version["secret_data"] == "${google_redis_instance.this.auth_string}"
    assert ("google_secret_manager_secret", "auth") in resources


def test_the_bucket_is_private_uniform_and_versioned():
    body = next(
        b
        for t, _, b in blocks(load_hcl(MODULES / "storage_bucket" / "main.tf"), "resource")
        if t == "google_storage_bucket"
    )
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"
    assert body["versioning"][0]["enabled"] is True
    assert body["force_destroy"] is False


def test_worker_roles_are_scoped_to_resources():
    # Only dataflow.worker (and optionally bigquery.jobUser) may be granted on the project.
    resources = list(blocks(load_hcl(MODULES / "dataflow_worker" / "main.tf"), "resource"))
    project_roles = {b["role"] for t, _, b in resources if t == "google_project_iam_member"}
    assert project_roles == {"roles/dataflow.worker", "roles/bigquery.jobUser"}
    scoped = {
        (t, b["role"]) for t, _, b in resources if t != "google_project_iam_member" and "role" in b
    }
    assert ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber") in scoped
    assert ("google_pubsub_topic_iam_member", "roles/pubsub.publisher") in scoped
    assert ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor") in scoped
    assert (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
    ) in scoped
    assert ("google_storage_bucket_iam_member", "roles/storage.objectAdmin") in scoped
    assert not any(t == "google_service_account_key" for t, _, _ in resources)


def test_kinesis_is_encrypted_and_the_reader_policy_is_scoped():
    document = load_hcl(MODULES / "aws_kinesis" / "main.tf")
    resources = {(t, n): b for t, n, b in blocks(document, "resource")}
    stream = resources[("aws_kinesis_stream", "this")]
    assert stream["encryption_type"] == "KMS"
    assert resources[("aws_kms_key", "stream")]["enable_key_rotation"] is True
    read = {(t, n): b for t, n, b in blocks(document, "data")}[("aws_iam_policy_document", "read")]
    for statement in read["statement"]:
        assert "*" not in str(statement["resources"]), statement
        assert all(not action.endswith("*") for action in statement["actions"]), statement


@pytest.mark.parametrize("directory", MODULE_DIRS + ROOT_DIRS, ids=lambda p: p.name)
def test_versions_are_pinned(directory):
    terraform_block = load_hcl(directory / "versions.tf")["terraform"][0]
    assert terraform_block["required_version"].startswith(">= 1.9, < 2.0")
    for providers in terraform_block.get("required_providers", []):
        for name, spec in providers.items():
            assert re.fullmatch(r"~> \d+\.\d+", spec["version"]), (directory, name)


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda p: p.name)
def test_every_module_has_a_readme_with_an_example(directory):
    readme = directory / "README.md"
    assert readme.is_file(), f"{directory.name} needs a README.md"
    text = readme.read_text(encoding="utf-8")
    calls = rf'```hcl\n.*?source\s*=\s*"[./]*modules/{directory.name}"'
    assert re.search(calls, text, re.S), f"{readme}: add an hcl example that calls the module"
    for name, _ in named_blocks(load_hcl(directory / "variables.tf"), "variable"):
        assert f"`{name}`" in text, f"{readme}: document input {name}"


def test_regexes_stay_within_re2_limits():
    # RE2 (Terraform's regex engine) refuses repetition counts over 1000; can() then hides
    # the error and the validation fails for every value.
    for path in tf_files():
        counts = regex_repeat_counts(path.read_text(encoding="utf-8"))
        assert all(count <= 1000 for count in counts), path


def test_regex_repeat_counts_reads_hcl_literals():
    assert regex_repeat_counts('can(regex("^[a-z]{1,1024}$", x)) && regex("a{3}", y)') == [
        1,
        1024,
        3,
    ]
