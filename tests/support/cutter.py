"""A TCP relay on 127.0.0.1 in front of PostgreSQL that can cut a connection around a COMMIT, for the tests of an
unknown commit outcome (manifest/postgres.py): ``cut("before")`` drops the client's next COMMIT and closes (the
server never commits), ``cut("after")`` relays it, waits for the server's answer, drops that and closes (the server
committed; the client never hears of it)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Cutter:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode: str | None = None
        self._lock = threading.Lock()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, mode: str) -> None:
        with self._lock:
            self._mode = mode

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            state = {"committing": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _close(self, *socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict[str, bool], upward: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(src, dst)
                return
            with self._lock:
                mode = self._mode
                if upward and mode and b"COMMIT" in data:
                    self._mode = None
                    self.cuts += 1
                    if mode == "before":
                        self._close(src, dst)
                        return
                    state["committing"] = True
                elif not upward and state["committing"] and b"COMMIT\x00" in data:
                    self._close(src, dst)  # the server's answer to COMMIT never reaches the client
                    return
            try:
                dst.sendall(data)
            except OSError:
                self._close(src, dst)
                return
