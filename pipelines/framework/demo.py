"""The demo: live per-minute API metrics from the built-in generator, on this machine alone.

``python -m pipelines demo`` runs ``metrics_to_redis`` on a paced generator (5 % of events late
by 1-10 minutes, 1 % malformed) at ten times real speed, so five minutes of one-minute windows
pass in half a minute (the run, with start-up and the last panes, takes about a minute). It
shows a live table of the latest figures, writes every pane and every dead letter to files,
and, when a Redis server answers, keeps the latest row per endpoint and minute in Redis hashes,
publishes each update and the run's balance, and serves the live dashboard
(`pipelines.dashboard`) while it runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipelines.framework.errors import RunFailed
from pipelines.framework.options import OptionError
from transforms.io.endpoint import redact

__all__ = [
    "dashboard_beside",
    "demo_argv",
    "demo_publish",
    "demo_sink",
    "find_redis",
    "redis_or_default",
]

EVENTS = 6_000
RATE = 20  # events per second of event time
SPEED = 10  # seconds of event time per second of wall time
REDIS_CANDIDATES = ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6390/0")


def find_redis() -> str | None:
    """Returns the URL of a Redis server that answers (``$REDIS_URL`` first), or ``None``."""
    try:
        import redis
    except ImportError:
        return None
    candidates = [os.environ["REDIS_URL"]] if os.environ.get("REDIS_URL") else []
    for url in [*candidates, *REDIS_CANDIDATES]:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.3, socket_timeout=0.3).ping()
        except (redis.RedisError, OSError, ValueError):
            continue
        return url
    return None


def redis_or_default() -> str:
    """Returns the URL of a Redis server that answers (see `find_redis`), else the first tried.

    The first tried is ``$REDIS_URL``, or ``redis://127.0.0.1:6379/0``.
    """
    return find_redis() or os.environ.get("REDIS_URL") or REDIS_CANDIDATES[0]


def demo_sink(redis_url: str) -> str:
    """The demo's ``--sink``: the latest row per endpoint and minute in a hash, for a day."""
    return f"{redis_url}?mode=hash&key=metrics:{{endpoint}}:{{window_start}}&ttl=86400"


def demo_publish(redis_url: str) -> str:
    """The demo's ``--publish``: every updated row (and the run's balance) on channel metrics."""
    return f"{redis_url}?mode=publish&key=metrics"


@contextlib.contextmanager
def dashboard_beside(argv: Sequence[str]) -> Iterator[None]:
    """Serves the live dashboard while the demo runs, when the demo publishes to Redis.

    Args:
        argv: the demo's options, as `demo_argv` gives them: with ``--publish`` when a Redis
            server answers; without it nothing is served.
    """
    given = dict(arg.removeprefix("--").split("=", 1) for arg in argv)
    if "publish" not in given:
        yield
        return
    from pipelines.dashboard.server import DEFAULT_PORT, dashboard

    chosen = [f"--sink={given['sink']}", f"--publish={given['publish']}"]
    try:
        server = dashboard([*chosen, f"--port={DEFAULT_PORT}"]).start()
    except RunFailed:  # the port is taken (a dashboard already running?): any free one
        server = dashboard([*chosen, "--port=0"]).start()
    print(f"Live dashboard: {server.url} (open it now: it stops with the demo)", flush=True)
    try:
        yield
    finally:
        server.stop()


def demo_argv(argv: Sequence[str]) -> list[str]:
    """Returns the ``metrics_to_redis`` options of the demo.

    Args:
        argv: ``--output=DIR`` (a new or empty folder; default: a new folder
            ``./demo-output/run-YYYYMMDD-HHMMSS`` for each run), ``--count=N`` (events),
            ``--no-redis`` (do not look for a Redis server).

    Raises:
        OptionError: an unknown argument, or an output folder that is not empty.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    output = Path("demo-output", f"run-{stamp}").resolve()
    count = EVENTS
    use_redis = True
    for arg in argv:
        if arg.startswith("--output="):
            output = Path(arg.split("=", 1)[1]).resolve()
        elif arg.startswith("--count="):
            text = arg.split("=", 1)[1]
            if not text.isdigit() or int(text) < 1:
                raise OptionError(f"demo: --count={text!r}: give a whole number of events >= 1")
            count = int(text)
        elif arg == "--no-redis":
            use_redis = False
        else:
            raise OptionError(
                f"demo: unknown argument {arg!r}; use --output=DIR, --count=N or --no-redis"
            )
    if output.is_file() or (output.is_dir() and any(output.iterdir())):
        raise OptionError(f"demo: --output={output} is not an empty folder: name a new one")
    source = (
        f"generator://events?count={count}&rate={RATE}&speed={SPEED}&live=true"
        "&seed=7&late=0.05&malformed=0.01"
    )
    argv_out = [
        f"--source={source}",
        "--spec=builtin:api_metrics",
        "--schema=builtin:events",
        "--console=true",
        f"--dead_letter=file://{output}/dead_letter",
    ]
    redis_url = find_redis() if use_redis else None
    if redis_url is None:
        print("Redis: none answering (start one, or set REDIS_URL, to see it used).")
        argv_out.append(f"--sink=file://{output}/metrics")
    else:
        print(f"Redis: {redact(redis_url)} (hash metrics:ENDPOINT:WINDOW_START, channel metrics)")
        argv_out += [
            f"--sink={demo_sink(redis_url)}",
            f"--publish={demo_publish(redis_url)}",
            f"--history=file://{output}/metrics",
        ]
    print(
        f"Generating {count:,} events (5% late, 1% malformed) at {SPEED}x speed over "
        f"{count / (RATE * SPEED):.0f} s, then the last windows' panes; per-minute metrics per "
        f"endpoint -> {output}"
    )
    return argv_out
