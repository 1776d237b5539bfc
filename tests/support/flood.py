"""A connection flood against a local TLS server: many connections that never finish a handshake.

``Flood(port, connections=1000, mode="trickle")`` opens the connections from one thread and keeps them
open: ``trickle`` sends a TLS record header and then one byte every ``interval`` seconds (the attack
in issue 14), ``idle`` connects and sends nothing. A connection the server closes is opened again, so
the pressure holds until ``stop()`` or ``seconds`` (it stops by itself). Loopback only, bounded in
count and time: it refuses anything but 127.0.0.1, more than 5,000 connections or more than 600 s.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

RECORD_HEADER = b"\x16\x03\x01\x02\x00"  # handshake record, TLS 1.0 framing, 512 bytes to follow
MAX_CONNECTIONS = 5000
MAX_SECONDS = 600.0


class Flood:
    def __init__(self, port: int, connections: int = 1000, *, mode: Literal["trickle", "idle"] = "trickle",
                 interval: float = 2.0, seconds: float = 120.0, host: str = "127.0.0.1") -> None:
        if host != "127.0.0.1":
            raise ValueError("the flood only targets 127.0.0.1")
        if not 0 < connections <= MAX_CONNECTIONS or not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"at most {MAX_CONNECTIONS} connections for at most {MAX_SECONDS:.0f} s")
        self.port, self.connections, self.mode, self.interval, self.seconds = port, connections, mode, interval, seconds
        self.opened = 0  # connections opened so far (reopened ones count again)
        self.reopened = 0
        self.held = 0  # connections open at the last round
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, wait: float = 60.0) -> None:
        """Start, and return once every connection has been opened once."""
        self._thread.start()
        self._ready.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(("127.0.0.1", self.port))
            if self.mode == "trickle":
                sock.sendall(RECORD_HEADER)
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        self.opened += 1
        return sock

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        held: list[socket.socket | None] = []
        try:
            while len(held) < self.connections and not self._stop.is_set() and time.monotonic() < deadline:
                held.append(self._open())
            self._ready.set()
            while not self._stop.wait(self.interval) and time.monotonic() < deadline:
                for i, sock in enumerate(held):
                    if self._stop.is_set():
                        break
                    if sock is not None and self._alive(sock):
                        continue
                    if sock is not None:
                        sock.close()
                    held[i] = self._open()
                    self.reopened += 1
                self.held = sum(1 for sock in held if sock is not None)
        finally:
            self._ready.set()
            for sock in held:
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _alive(self, sock: socket.socket) -> bool:
        """Still open (nothing from the server: it never answers a half record); trickle one byte."""
        try:
            if sock.recv(1024) == b"":
                return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        if self.mode == "trickle":
            try:
                sock.send(b"\x01")
            except BlockingIOError:
                return True
            except OSError:
                return False
        return True
