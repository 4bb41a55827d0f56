"""A wheel install works outside the checkout: list, describe and template validate every pipeline.

The wheel is built from a copy of the sources (so the checkout gets no ``build/``) and
installed without dependencies into a folder of its own (``pip install --target``, which builds
the wheel and installs it), then run with this environment's Python from
another folder, with only that install on ``PYTHONPATH``: every file the commands read must
come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("setup.py", "pyproject.toml", "README.md", "transforms", "pipelines")

# Runs in the installed package: every command of the check, in one process.
SCRIPT = """
import contextlib, io, json, sys
import pipelines
from pipelines.framework.cli import main

results = {"module": pipelines.__file__, "codes": {}, "outputs": {}}
commands = [["--help"], ["list"], ["template", "validate"]]
for name in sys.argv[1:]:
    commands += [["describe", name], ["template", "validate", name]]
for argv in commands:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results["codes"][" ".join(argv)] = main(argv)
    results["outputs"][" ".join(argv)] = out.getvalue()
print(json.dumps(results))
"""


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the wheel was installed into (``pip install --target``)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    # pip builds the wheel (setuptools, this environment's) and installs it.
    _pip("install", "--no-deps", "--no-build-isolation", "--no-compile", "--target",
         str(base / "site"), str(source))  # fmt: skip
    assert list((base / "site").glob("beam_streaming_suite-*.dist-info"))
    return base / "site"


def test_the_commands_run_from_the_wheel_for_every_pipeline(installed: Path) -> None:
    elsewhere = installed.parent / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *sorted(CATALOG)],
        capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["module"]).is_relative_to(installed), report["module"]
    assert set(report["codes"].values()) == {0}, report["codes"]
    listed = [line.split()[0] for line in report["outputs"]["list"].splitlines()]
    assert listed == sorted(CATALOG)
    for name in CATALOG:
        assert report["outputs"][f"describe {name}"].startswith(name)
        assert report["outputs"][f"template validate {name}"].strip() == f"valid: {name}"
    assert not (installed / "templates").exists()  # the metadata comes from the declarations
    assert not (installed / "README.md").exists()
    usage = report["outputs"]["--help"]
    assert "template validate" in usage
    assert "services" not in usage and "docs" not in usage  # the maintainers' commands
