"""A TCP proxy in front of a local server that a test can take down and bring back.

While down, the proxy drops every open connection and resets new ones at once, as a server
that is unreachable or restarting does; while up, it forwards bytes both ways.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator


class OutageProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; `down`/`up` toggle it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._marker: bytes | None = None
        self.went_down = threading.Event()  # set at the first outage
        threading.Thread(target=self._accept, daemon=True).start()

    def down_on(self, marker: bytes) -> None:
        """Goes down when a client sends bytes holding ``marker`` (what it sent is lost)."""
        self._marker = marker

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            for source, sink, watch in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, watch), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        try:
            while data := source.recv(65536):
                marker = self._marker
                if watch and marker is not None and marker in data:
                    self._marker = None
                    self.down()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)
        _reset(conn)

    def down(self) -> None:
        """Starts an outage: open connections are reset, new ones refused."""
        self._up.clear()
        self.went_down.set()
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            _reset(conn)

    def up(self) -> None:
        """Ends the outage."""
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.down()
        self._listener.close()


def _reset(conn: socket.socket) -> None:
    """Closes a connection with a reset (RST), as a vanished server does."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()


@contextlib.contextmanager
def outage_proxy(target_host: str, target_port: int) -> Iterator[OutageProxy]:
    """An `OutageProxy`, closed at the end."""
    proxy = OutageProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()
