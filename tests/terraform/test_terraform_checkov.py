"""checkov on terraform/: no finding unless skipped in the code with a written reason.

checkov exits 0 on files it cannot parse (they are only counted in ``parsing_errors``), so the
JSON summary is read instead of the exit code alone.
"""

from __future__ import annotations

import json
import re
import subprocess

from tfcheck import CHECKOV_VERSION, checkov_command, missing_tool, tf_files

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
MIN_REASON = 20  # characters: a sentence, not "ok" or "n/a"


def test_checkov_is_the_pinned_version(checkov_report):
    assert checkov_report["summary"]["checkov_version"] == CHECKOV_VERSION


def test_checkov_parses_every_file(checkov_report):
    assert checkov_report["summary"]["parsing_errors"] == 0, checkov_report.get("stderr", "")[
        -2000:
    ]


def test_checkov_scans_the_resources(checkov_report):
    # An empty or mostly unparsed tree would "pass": make sure the modules were really seen.
    summary = checkov_report["summary"]
    assert summary["resource_count"] >= 30, summary
    assert summary["passed"] >= 40, summary
    scanned = {check["file_path"] for check in checkov_report["results"]["passed_checks"]}
    for module in ("pubsub", "bigquery", "redis", "storage_bucket", "aws_kinesis"):
        assert f"/modules/{module}/main.tf" in scanned, module


def test_checkov_finds_nothing_that_is_not_skipped(checkov_report):
    failed = [
        f"{c['check_id']} {c['check_name']} -- {c['resource']} ({c['file_path']}:"
        f"{c['file_line_range']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert not failed, "checkov findings (fix, or skip in the code with a reason):\n" + "\n".join(
        failed
    )
    assert checkov_report["returncode"] == 0


def test_every_skip_checkov_applied_has_a_reason(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "expected the documented skips (CMK opt-in, KMS key policy)"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.strip()) >= MIN_REASON, (check["check_id"], check["resource"], reason)


def test_every_skip_comment_in_the_code_names_a_check_and_a_reason():
    found = 0
    for path in tf_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            if "checkov:skip" not in line:
                continue
            found += 1
            match = SKIP_COMMENT.search(line)
            assert match, f"{path}: malformed skip comment: {line.strip()}"
            reason = (match.group(2) or "").strip()
            assert len(reason) >= MIN_REASON, f"{path}: skip without a reason: {line.strip()}"
    assert found > 0


def test_checkov_flags_an_insecure_resource(tmp_path):
    # The guard is only worth something if checkov really fails insecure code here, offline.
    command = checkov_command()
    if command is None:
        missing_tool("checkov is not installed (see terraform/README.md)")
    (tmp_path / "main.tf").write_text(
        'resource "google_storage_bucket" "open" {\n  name     = "x-open-bucket"\n'
        '  location = "EU"\n  uniform_bucket_level_access = false\n}\n'
    )
    result = subprocess.run(
        [command, "-d", str(tmp_path), "--framework", "terraform", "--skip-download",
         "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_GCP_29", "CKV_GCP_114"} <= failed
    assert result.returncode == 1


def test_checkov_reports_parse_errors_in_its_summary_not_its_exit_code(tmp_path):
    # Why the summary is read: a file checkov cannot parse is skipped with exit code 0.
    command = checkov_command()
    if command is None:
        missing_tool("checkov is not installed (see terraform/README.md)")
    (tmp_path / "main.tf").write_text('resource "google_storage_bucket" "x" {\n  name =\n')
    result = subprocess.run(
        [command, "-d", str(tmp_path), "--framework", "terraform", "--skip-download",
         "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert json.loads(result.stdout)["summary"]["parsing_errors"] == 1
