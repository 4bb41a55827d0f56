"""Importing the suite changes nothing in Beam; the live driver changes it only when asked.

The DirectRunner's evaluator registry and its executor's state sampler are what
`transforms.io.live` changes when enabled: every module of ``transforms`` and ``pipelines`` is
imported in a fresh interpreter, and they must be as Beam made them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apache_beam.runners.direct import executor
from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry

from transforms.io.live import DirectLiveRead, enable_live_direct_runner, live_direct_runner

ROOT = Path(__file__).resolve().parent.parent

# Prints what the registries hold before and after importing every module (but ``__main__``
# scripts, which run a command when imported), and the modules imported.
IMPORT_ALL = """
import importlib, json, pkgutil
from apache_beam.runners.direct import executor
from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry
from apache_beam.runners.worker import statesampler


def state():
    overrides = TransformEvaluatorRegistry._test_evaluators_overrides
    return {
        "evaluator overrides": sorted(f"{key!r}: {value!r}" for key, value in overrides.items()),
        "executor state sampler": repr(executor.statesampler),
        "StateSampler": repr(statesampler.StateSampler),
        "set_current_tracker": repr(statesampler.set_current_tracker),
    }


before = state()
modules = []
for package in ("transforms", "pipelines"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(info.name)
            modules.append(info.name)
print(json.dumps({"before": before, "after": state(), "modules": modules}))
"""


def test_importing_every_module_leaves_the_direct_runner_as_beam_made_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert {
        "transforms.io.live",
        "transforms.io.pubsub.endpoints",
        "pipelines.framework.run",
    } <= set(report["modules"])
    assert report["after"] == report["before"]


def test_live_direct_runner_enables_the_driver_and_restores_beam_after() -> None:
    overrides = TransformEvaluatorRegistry._test_evaluators_overrides
    before, samplers = dict(overrides), executor.statesampler
    with live_direct_runner():
        assert DirectLiveRead in overrides
        assert executor.statesampler is not samplers
        enable_live_direct_runner()  # again: no change
        assert len(overrides) == len(before) + (DirectLiveRead not in before)
    assert overrides == before
    assert executor.statesampler is samplers
