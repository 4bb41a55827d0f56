"""``python -m pipelines dashboard``: a ``metrics_to_redis`` run, live in a browser.

The server (aiohttp) follows the run in Redis with a `Feed` and serves one page, ``/``, that
opens a WebSocket, ``/ws``: on connect the page gets everything the feed holds (a ``snapshot``
event), then every change (see `pipelines.dashboard.feed` for the events). The page draws a
table of the newest rows with their window and pane timing (early, on time, late), a small
chart per metric and group, and the run's balance beside them; it connects again by itself
when the server goes away, and shows whether Redis is up.

Options (``--name=value``): ``--sink`` and ``--publish``, the run's own (Redis in ``hash``
mode, Redis in ``publish`` mode; by default the demo's, on the Redis server the demo finds),
``--host`` (default 127.0.0.1), ``--port`` (default 8765; 0 picks a free one) and ``--rows``
(the most rows kept, default 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from pipelines.dashboard.feed import Event, Feed
from pipelines.framework.demo import demo_publish, demo_sink, redis_or_default
from pipelines.framework.errors import RunFailed
from pipelines.framework.options import OptionError, closest
from transforms.io.base import SinkContext
from transforms.io.endpoint import redact
from transforms.io.redis.sink import RedisSink
from transforms.io.registry import make_sink

__all__ = ["Dashboard", "main"]

DEFAULT_PORT = 8765
QUEUE_SIZE = 1000  # events waiting for a slow browser; past it, it gets one snapshot instead
_FEED: web.AppKey[Feed] = web.AppKey("feed", Feed)


async def _page(request: web.Request) -> web.Response:
    text = resources.files("pipelines.dashboard").joinpath("page.html").read_text()
    return web.Response(text=text, content_type="text/html")


async def _socket(request: web.Request) -> web.WebSocketResponse:
    """Sends the feed's snapshot, then each of its events, until the browser goes away."""
    feed = request.app[_FEED]
    socket = web.WebSocketResponse(heartbeat=10.0)
    await socket.prepare(request)
    queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)

    def push(event: Event) -> None:
        if queue.full():  # the browser cannot keep up: what it missed comes as a snapshot
            while not queue.empty():
                queue.get_nowait()
            event = feed.snapshot()
        queue.put_nowait(event)

    async def send() -> None:
        while True:
            event = await queue.get()
            await socket.send_str(json.dumps(event, allow_nan=False, separators=(",", ":")))

    push(feed.snapshot())
    feed.listeners.add(push)
    sender = asyncio.create_task(send())
    try:
        async for message in socket:  # the page sends nothing; this waits for it to leave
            if message.type == WSMsgType.ERROR:
                break
    finally:
        feed.listeners.discard(push)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    return socket


def _app(feed: Feed) -> web.Application:
    app = web.Application()
    app[_FEED] = feed
    app.router.add_get("/", _page)
    app.router.add_get("/ws", _socket)

    async def follow(app: web.Application) -> Any:
        task = asyncio.create_task(feed.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(follow)
    return app


class Dashboard:
    """The dashboard server of a run, in a thread of its own (`start`, `stop`).

    Args:
        feed: what it serves.
        host: the address to listen on.
        port: the port (0: a free one).
    """

    def __init__(self, feed: Feed, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.feed, self.host, self.port = feed, host, port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(_app(feed), handle_signals=False, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, name="dashboard",
                                        daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8765/``."""
        return f"http://{self.host}:{self.port}/"

    def start(self) -> Dashboard:
        """Listens and serves from its thread; raises `RunFailed` when the port is taken."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            future.result()
        except OSError as error:
            self.stop()
            raise RunFailed(
                f"dashboard: cannot listen on {self.host}:{self.port} ({error.strerror}): "
                "pass --port=N (0 picks a free port)"
            ) from None
        return self

    async def _listen(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Stops serving (open pages say so and try again) and ends the thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()


def _redis_sink(flag: str, uri: str, mode: str) -> RedisSink:
    """Returns the run's ``--sink`` (``mode=hash``) or ``--publish`` (``mode=publish``)."""
    sink = make_sink(uri, SinkContext("metrics_to_redis"))
    if not isinstance(sink, RedisSink) or sink.mode != mode:
        example = (demo_sink if mode == "hash" else demo_publish)("redis://HOST:6379/0")
        raise OptionError(
            f"--{flag}={redact(uri)}: give the run's --{flag}, a Redis URI with mode={mode}, "
            f"e.g. {example}"
        )
    return sink


def _options(argv: Sequence[str]) -> dict[str, str]:
    """Returns the options' values, defaults filled in; raises `OptionError`."""
    values = {"sink": "", "publish": "", "host": "127.0.0.1", "port": str(DEFAULT_PORT)}
    values["rows"] = "500"
    flags = [f"--{name}" for name in values]
    for arg in argv:
        name, equals, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not equals or name not in values:
            raise OptionError(
                f"dashboard: unknown argument {arg!r}{closest(f'--{name}', flags)}; use "
                "--sink=URI, --publish=URI, --host=ADDRESS, --port=N or --rows=N"
            )
        values[name] = value
    for name, low, high in (("port", 0, 65535), ("rows", 1, 100_000)):
        text = values[name]
        if not text.isdigit() or not low <= int(text) <= high:
            raise OptionError(f"dashboard: --{name}={text!r}: give a whole number, {low}-{high}")
    return values


def dashboard(argv: Sequence[str]) -> Dashboard:
    """Returns the dashboard the command line describes (not started).

    Raises:
        OptionError, EndpointError: an unknown option, a URI that is not the run's.
    """
    values = _options(argv)
    if not (values["sink"] and values["publish"]):
        url = redis_or_default()
        values["sink"] = values["sink"] or demo_sink(url)
        values["publish"] = values["publish"] or demo_publish(url)
    feed = Feed(
        _redis_sink("sink", values["sink"], "hash"),
        _redis_sink("publish", values["publish"], "publish"),
        keep=int(values["rows"]),
    )
    return Dashboard(feed, values["host"], int(values["port"]))


def main(argv: Sequence[str]) -> int:
    """``python -m pipelines dashboard [--sink=URI] [--publish=URI] [--host=H] [--port=N]``."""
    server = dashboard(argv).start()
    print(f"Following {server.feed.describe()}")
    print(f"Live dashboard: {server.url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
