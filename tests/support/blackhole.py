"""A TCP port on loopback that can turn into a black hole: it accepts connections and
never answers, as a Redis or a PostgreSQL does when its host hangs.

    with Relay(("127.0.0.1", 6379)) as relay:   # forwards to the real Redis ...
        relay.freeze()                            # ... until it stops answering
        relay.thaw()                              # ... and answers again
    with Relay() as hole:                         # no target: a black hole from the start
        hole.url("redis")                         # redis://127.0.0.1:PORT

Bytes sent to a frozen relay are read and dropped, so the client's writes succeed and
it waits for an answer that never comes. `connections` counts every connection
accepted: a client that stops calling a dead service stops adding to it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"


class Relay:
    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self.connections = 0
        self._frozen = target is None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server((LOOPBACK, 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True, name=f"relay-{self.port}")]

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://{LOOPBACK}:{self.port}{path}"

    def freeze(self) -> None:
        """From now on nothing gets through, on open connections and new ones alike."""
        self._frozen = True

    def thaw(self) -> None:
        """The service is back: the connections it dropped bytes on are closed (their
        clients reconnect), and new connections are forwarded again."""
        with self._lock:
            stale, self._sockets = self._sockets, []
        for sock in stale:
            _shut(sock)
        self._frozen = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was shut at close()
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(client)
                frozen = self._frozen
            if frozen or self.target is None:
                self._pump(client, None)
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets.append(upstream)
            self._pump(client, upstream)
            self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket | None) -> None:
        def run() -> None:
            while True:
                try:
                    data = source.recv(65536)
                    if not data:
                        break
                    if sink is not None and not self._frozen:
                        sink.sendall(data)
                except OSError:
                    break
            if sink is not None and not self._frozen:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=run, daemon=True)
        self._threads.append(thread)
        thread.start()

    def __enter__(self) -> Self:
        self._threads[0].start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept() or recv(); close() alone does not.
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(timeout=5)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
