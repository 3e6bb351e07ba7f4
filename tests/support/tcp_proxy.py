"""A TCP proxy the test owns, between a client process and a server, to inject network faults.

    with TcpProxy(("127.0.0.1", redis_port)) as proxy:   # listens on proxy.port
        proxy.blackhole()   # sockets stay open, no byte moves either way (a partition; TCP would retransmit)
        proxy.forward()     # bytes flow again, what waited included
        proxy.reset()       # every open connection is reset (RST); new ones are accepted and forwarded

One thread per direction per connection; a blackhole stops reading, so what was sent waits in the kernel's
buffers and is delivered after `forward()`, as after a real partition shorter than TCP's retransmit limit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def blackhole(self) -> None:
        self._flowing.clear()

    def forward(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), name="proxy-pipe", daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                self._flowing.wait()
                readable, _, _ = select.select([source], [], [], 0.1)
                if not readable or not self._flowing.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, sink):  # one side gone: close both (the other pipe thread then ends too)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
