"""The live dashboard end to end: a real Redis of its own, a live run, a headless Chromium.

``metrics_to_redis --publish`` runs on a paced generator beside ``python -m pipelines
dashboard``; Debian's Chromium (driven by Selenium through Debian's chromium-driver) opens the
page. The page must show rows and the balance and follow them, survive Redis going away and
coming back (a private ``redis-server`` this module starts, stops and starts again on its own
port), show a reloaded page everything at once, and reconnect to a restarted dashboard server.
Hostile rows in Redis (markup in a group name, values no number holds, bytes that are not
UTF-8) are shown as text, and neither the page nor the server stumbles on them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from pipelines.dashboard.balance import balance_channel, pattern
from pipelines.devtools import services
from pipelines.framework.demo import demo_publish, demo_sink
from transforms.io.redis.text import KeyTemplate

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 60.0  # seconds a step may take on a loaded machine before the test fails

# What the page shows, read in the browser.
PAGE_STATE = """
const one = (css) => document.querySelector(css);
const read = one('#balance tr[data-counter="read"] td');
const first = one('#rows tbody tr');
return {
  link: one('#link').dataset.state,
  redis: one('#redis').dataset.state,
  rows: document.querySelectorAll('#rows tbody tr').length,
  charts: document.querySelectorAll('#charts .chart').length,
  newest: first ? first.dataset.window : null,
  read: read ? Number(read.textContent.replace(/,/g, '')) : 0,
  state: one('#run').dataset.state || null,
  reasons: [...document.querySelectorAll('#balance tr.reason')].map((r) => r.dataset.counter),
  timings: [...new Set([...document.querySelectorAll('#rows .timing')].map((t) => t.textContent))],
};
"""


def _missing(what: str) -> None:
    if services.services_required():
        pytest.fail(what, pytrace=False)
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Polls ``check`` until it returns something true; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.2)


def _shown(browser: Any, what: str, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Waits until what the page shows (`PAGE_STATE`) passes ``check``; returns it."""

    def state() -> dict[str, Any] | None:
        shown = dict(browser.execute_script(PAGE_STATE))
        return shown if check(shown) else None

    return _until(what, state)


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port, stopped and started at will."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [str(shutil.which("redis-server")), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _until("the private redis-server to answer", answers)
        client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)
            self._process = None


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server not installed: apt-get install redis-server")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian, driven through Debian's chromium-driver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium not installed: pip install -e '.[test]'")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _missing("chromium not installed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _line(process: subprocess.Popen[str], prefix: str) -> str:
    """Returns the first line of the process's output that starts with ``prefix``."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(prefix):
                found.put(line)
                return

    threading.Thread(target=read, daemon=True).start()
    try:
        return found.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail(f"the dashboard never printed {prefix!r}", pytrace=False)


def _command(*args: str, output: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args],
        stdout=output, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_the_page_follows_a_live_run_through_outages(
    private_redis: PrivateRedis, browser: Any, tmp_path: Path
) -> None:
    url = private_redis.url
    endpoints = (f"--sink={demo_sink(url)}", f"--publish={demo_publish(url)}")
    server = _command("dashboard", *endpoints, "--port=0")
    log = (tmp_path / "run.log").open("w")
    run = _command(
        "run", "metrics_to_redis", *endpoints,
        "--source=generator://events?count=40000&rate=20&speed=30&live=true&seed=3&late=0.05"
        "&malformed=0.02",
        "--spec=builtin:api_metrics", "--schema=builtin:events",
        f"--dead_letter=file://{tmp_path}/dead_letter",
        output=log,
    )  # fmt: skip
    try:
        address = _line(server, "Live dashboard: ").split()[2]
        browser.get(address)
        first = _shown(browser, "rows and the balance", lambda s: s["rows"] and s["read"])
        assert first["link"] == "live" and first["redis"] == "up" and first["state"] == "RUNNING"
        assert first["charts"] > 0
        # The balance and the rows follow the run: more read, newer windows, dead letters by
        # reason, and late panes.
        moved = _shown(
            browser,
            "the page to follow the run",
            lambda s: s["read"] > first["read"] and s["newest"] > first["newest"]
            and s["reasons"] and "LATE" in s["timings"],
        )  # fmt: skip
        assert all(re.fullmatch(r"dead_lettered\.\w+", name) for name in moved["reasons"])

        private_redis.stop()
        away = _shown(browser, "the page to say Redis is down", lambda s: s["redis"] == "down")
        assert away["rows"] >= moved["rows"] and away["read"] >= moved["read"]  # still shown

        private_redis.start()
        back = _shown(
            browser,
            "the page to recover with Redis",
            lambda s: s["redis"] == "up" and s["read"] > away["read"]
            and s["newest"] > away["newest"],
        )  # fmt: skip
        assert back["link"] == "live"

        browser.refresh()  # the browser goes away and comes back: everything at once
        _shown(browser, "the reloaded page", lambda s: s["rows"] and s["read"] >= back["read"])

        _stop(run)
        assert run.returncode == 128 + signal.SIGTERM
        report = (tmp_path / "run.log").read_text()
        read = int(re.search(r"^  read +(\d+)", report, re.M)[1])  # type: ignore[index]
        final = _shown(browser, "the final balance", lambda s: s["state"] == "CANCELLED")
        assert final["read"] == read

        # The server goes away and comes back on its address: the page reconnects and shows
        # what the new server reads, hostile rows written meanwhile included.
        client = redis.Redis.from_url(url)
        _write_hostile_rows(client)
        _stop(server)
        _shown(browser, "the page to lose the server", lambda s: s["link"] == "reconnecting")
        server = _command("dashboard", *endpoints, f"--port={urlparse(address).port}")
        _line(server, "Live dashboard: ")
        again = _shown(
            browser,
            "the page to reconnect to the restarted server",
            lambda s: s["link"] == "live" and s["newest"] == HOSTILE_WINDOW,
        )  # fmt: skip
        assert again["redis"] == "up" and again["read"] == read and again["state"] == "CANCELLED"
        _assert_shown_as_text(browser, HOSTILE_GROUP)
        # Updates flow again; a message that is not UTF-8 nor JSON is ignored.
        client.publish("metrics", b"\xff\xfe<script>")
        later = {"endpoint": "</td><td>cell", "window_start": "2999-01-01T00:05:00Z",
                 "window_end": "2999-01-01T00:06:00Z", "requests": 1}  # fmt: skip
        client.publish("metrics", json.dumps(later))
        _shown(browser, "a row published after the restart",
               lambda s: s["newest"] == later["window_start"] and s["redis"] == "up")  # fmt: skip
        _assert_shown_as_text(browser, later["endpoint"])
        client.close()
    finally:
        _stop(run)
        _stop(server)
        log.close()


HOSTILE_GROUP = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
HOSTILE_WINDOW = "2999-01-01T00:00:00Z"


def _write_hostile_rows(client: redis.Redis) -> None:
    """Row hashes of the demo's key template that no run writes: markup, odd values, bad bytes."""
    client.hset(
        f"metrics:{HOSTILE_GROUP}:{HOSTILE_WINDOW}",
        mapping={"endpoint": HOSTILE_GROUP, "window_start": HOSTILE_WINDOW,
                 "window_end": "<i>end</i>", "requests": "9" * 400, "errors": "NaN",
                 "avg_latency_ms": "1e999", "users": b"\xff\xfe", "timing": "<b>LATE</b>",
                 "pane_index": "-1"},
    )  # fmt: skip
    client.hset(b"metrics:\xff:2998-01-01T00:00:00Z", mapping={b"endpoint": b"\xff\x00"})


def _assert_shown_as_text(browser: Any, group: str) -> None:
    """The row of ``group`` shows it as text: no element made of it, no script of it run."""
    shown = browser.execute_script(
        """
        const cells = [...document.querySelectorAll('#rows tbody td.text')];
        return {
          cells: cells.map((cell) => cell.textContent),
          elements: document.querySelectorAll('#rows img, #rows script, #rows b, #rows i, '
            + '#charts img, #charts script, #rows td td').length,
          pwned: window.pwned === undefined ? null : window.pwned,
        };
        """
    )
    assert group in shown["cells"]
    assert shown["elements"] == 0 and shown["pwned"] is None


def test_patterns_match_every_key_of_a_template_and_nothing_else() -> None:
    template = KeyTemplate.parse("m*[1]:{endpoint}:{window_start}")
    assert pattern(template) == r"m\*\[1\]:*:*"
    assert balance_channel(KeyTemplate.parse("metrics:{endpoint}")) == "metrics:"
    assert pattern(KeyTemplate.parse("metrics")) == "metrics"
