"""A TCP forwarder on loopback that a test can cut: a network partition between one
replica and its database, while other replicas still reach it directly."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType


class LoopbackProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``.

    `cut()` resets every forwarded connection and refuses new ones (accepted, then closed
    at once) until `heal()`: to the client it looks like a database that went away.

    Answers (target to client) can also be held back ``delay`` seconds (a slow server),
    or dropped while ``drop_answers`` is set (the request arrives, its answer is lost).
    """

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.delay = 0.0
        self.drop_answers = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> LoopbackProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(5)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                refuse = self._cut
            if refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._next_target(), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, answers),
                                 daemon=True).start()

    def _next_target(self) -> tuple[str, int]:
        return self._target

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.delay:
                    time.sleep(self.delay)
                if answers and self.drop_answers:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._open.discard(sock)
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Drop the connection: shutdown wakes the pump thread blocked in recv, and closing
    with a zero linger time sends an RST, so the peer learns at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class LeastConnectionsProxy(LoopbackProxy):
    """An L4 load balancer on loopback (a Kubernetes Service, an NLB): each new connection
    goes to the backend with the fewest open ones; `add_backend` is a scale-up."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self._backends: dict[int, int] = {target_port: 0}  # port: connections accepted
        self.placed: list[int] = []  # the backend port of each connection, in order

    def add_backend(self, port: int) -> None:
        with self._lock:
            self._backends[port] = 0

    def _next_target(self) -> tuple[str, int]:
        with self._lock:
            open_now = {port: 0 for port in self._backends}
            for sock in self._open:
                with contextlib.suppress(OSError):
                    peer_port = sock.getpeername()[1]
                    if peer_port in open_now:
                        open_now[peer_port] += 1
            port = min(open_now, key=lambda p: (open_now[p], self._backends[p]))
            self._backends[port] += 1
            self.placed.append(port)
        return ("127.0.0.1", port)
