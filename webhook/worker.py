"""The webhook's gunicorn worker: one event loop owns every socket until its request is complete.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it is readable; the thread
then does the TLS handshake and reads the request on a blocking socket with no timeout. A client that
sends a TLS record header and then one byte every few seconds parks a thread for as long as it likes,
and 2 workers x 8 threads are 16 such connections (issue 14). This worker keeps gunicorn's thread
pool, HTTP parser and WSGI plumbing, and changes who waits:

* the worker's main thread (the loop) accepts, does every TLS handshake non-blocking and buffers each
  request until its header and body are complete, all under deadlines (``handshake_timeout``,
  ``request_timeout``, keep-alive); a connection that misses one is closed;
* only a complete request reaches a thread, which parses it from memory, runs the app, writes the
  response as one TLS record (header and body coalesced) and gives the connection back to the loop;
* a connection costs a file descriptor and a buffer, not a thread (``max_connections`` per worker).
  When full, the connection that has waited longest without a complete request is closed to admit
  the new one: accepting never stops, so the API server's new connections always get in;
* with ``authenticate`` (``--client-ca-file``) a request from a connection that presented no client
  certificate (a kubelet probe) may only be ``GET /healthz``, ``/readyz`` or ``/metrics``; anything
  else, ``/validate`` and ``/mutate`` above all, is answered 403 by the loop and never reaches the app;
* ``GET /healthz`` is answered by the loop itself, never queued behind requests; ``GET /readyz``
  answers 503 from the loop while requests are outstanding and none has finished for
  ``wedge_seconds`` (otherwise the app answers it, checking the certificate).

Everything the loop does to a socket happens on the loop's thread; threads hand connections back
through a deque and a wake-up pipe. gunicorn is imported here and in ``webhook.serve`` only.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import os
import selectors
import socket
import ssl
import time
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gunicorn import http as ghttp
from gunicorn import sock as gsock
from gunicorn.http import wsgi
from gunicorn.workers import base, gthread

HANDSHAKE: Final = "handshake"
READING: Final = "reading"
IDLE: Final = "idle"
BUSY: Final = "busy"
READ_CHUNK: Final = 256 * 1024
HEADER_LIMIT: Final = 64 * 1024  # more than gunicorn's own limits: its parser answers 400/431
ACCEPT_BATCH: Final = 1  # one per wake-up: a worker taking a whole burst would keep it (keep-alive)
DRAIN_SECONDS: Final = 2.0  # after SIGTERM: open connections still answered, each with Connection: close
PROBES: Final = (b"GET /healthz", b"GET /readyz", b"GET /metrics")  # open without a client certificate
UNAUTHENTICATED: Final = (b"driftguard webhook: this endpoint answers only the API server, which presents its "
                          b"webhook client certificate (--client-ca-file); no certificate was presented\n")


@dataclass(frozen=True)
class Limits:
    """The loop's deadlines and caps (from ``Settings``)."""

    handshake_timeout: float = 5.0
    request_timeout: float = 10.0
    keepalive: float = 75.0
    max_connections: int = 4096
    max_body_bytes: int = 3 * 1024 * 1024
    wedge_seconds: float = 5.0
    authenticate: bool = False  # only callers with a verified client certificate reach the app


class _Conn:
    __slots__ = ("buffer", "client", "close_after", "parser", "server", "since", "sock", "state", "verified",
                 "writing")

    def __init__(self, sock: ssl.SSLSocket, client: Any, server: Any, now: float) -> None:
        self.sock, self.client, self.server, self.since = sock, client, server, now
        self.buffer = bytearray()
        self.parser: Any = None
        self.state = HANDSHAKE
        self.close_after = False
        self.writing = False
        self.verified = False


class _Coalesced:
    """The response's socket for gunicorn: header and body go out in one ``sendall`` (one TLS record)."""

    __slots__ = ("_parts", "_sock")

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self._parts.append(data)

    def send(self, data: bytes) -> int:  # "100 Continue": straight out
        self.flush()
        return self._sock.send(data)

    def flush(self) -> None:
        if self._parts:
            data, self._parts = b"".join(self._parts), []
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class WebhookWorker(gthread.ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """See the module docstring. ``limits`` is set on a subclass by ``webhook.serve``."""

    limits = Limits()
    alive: bool

    def init_process(self) -> None:
        self.tpool = futures.ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="request")
        self.poller = selectors.DefaultSelector()
        self._waiting: dict[str, OrderedDict[_Conn, float]] = {
            HANDSHAKE: OrderedDict(), READING: OrderedDict(), IDLE: OrderedDict()}
        self._returned: collections.deque[tuple[_Conn, bool, bytes]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._connections = 0
        self._outstanding = 0
        self._last_finished = time.monotonic()
        self.refused = 0  # handshakes that failed (no or a wrong client certificate, garbage)
        base.Worker.init_process(self)  # ends by calling run()

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            self.poller.register(listener, selectors.EVENT_READ, (self._accept, listener.getsockname()))
        self.poller.register(self._wake_r, selectors.EVENT_READ, (self._take_back, None))
        while self.alive:
            self.notify()
            for key, _ in self.poller.select(self._timeout()):
                callback, argument = key.data
                callback(key.fileobj, argument)
            self._expire(time.monotonic())
            if not self.is_parent_alive():
                break
        self._shutdown()

    def _timeout(self) -> float:
        nearest = 1.0
        now = time.monotonic()
        for waiting in self._waiting.values():
            if waiting:
                nearest = min(nearest, next(iter(waiting.values())) - now)
        return max(0.0, nearest)

    def _expire(self, now: float) -> None:
        for waiting in self._waiting.values():
            while waiting:
                conn, deadline = next(iter(waiting.items()))
                if deadline > now:
                    break
                self._close(conn)

    def _shutdown(self) -> None:
        for listener in self.sockets:
            self.poller.unregister(listener)
            listener.close()
        self._drain(min(DRAIN_SECONDS, self.cfg.graceful_timeout))
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self._outstanding and time.monotonic() < deadline:
            self.poller.select(0.1)
            self._take_back(None, None)
        self.tpool.shutdown(wait=False)
        for waiting in self._waiting.values():
            for conn in list(waiting):
                self._close(conn)
        self.poller.close()

    def _drain(self, seconds: float) -> None:
        """Keep serving the open connections for ``seconds`` after SIGTERM, each request answered with
        ``Connection: close`` (``alive`` is False), so a client that sends its next request on a
        kept-alive connection as we stop gets an answer instead of a closed socket: kube-apiserver
        does not retry an admission POST, so a close under it would fail that write (seen in the
        real-cluster tier when a webhook pod is deleted during a stream of writes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (self._outstanding or any(self._waiting.values())):
            for key, _ in self.poller.select(min(0.1, max(0.0, deadline - time.monotonic()))):
                callback, argument = key.data
                callback(key.fileobj, argument)
            self._expire(time.monotonic())

    # ---------------------------------------------------------------- connections
    def _accept(self, listener: socket.socket, server: Any) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                raw, client = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._evict()  # out of descriptors: make room for the next accept
                    return
                if error.errno == errno.ECONNABORTED:
                    continue
                raise
            if self._connections >= self.limits.max_connections and not self._evict():
                raw.close()
                continue
            self._admit(raw, client, server)

    def _admit(self, raw: socket.socket, client: Any, server: Any) -> None:
        raw.setblocking(False)
        try:
            tls = gsock.ssl_context(self.cfg).wrap_socket(raw, server_side=True, do_handshake_on_connect=False,
                                                          suppress_ragged_eofs=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        now = time.monotonic()
        conn = _Conn(tls, client, server, now)
        self._connections += 1
        self._waiting[HANDSHAKE][conn] = now + self.limits.handshake_timeout
        self.poller.register(tls, selectors.EVENT_READ, (self._on_event, conn))
        self._handshake(conn)

    def _evict(self) -> bool:
        """Close the connection that has waited longest without a complete request (else the oldest idle)."""
        fronts = [next(iter(self._waiting[state])) for state in (HANDSHAKE, READING) if self._waiting[state]]
        if not fronts and self._waiting[IDLE]:
            fronts = [next(iter(self._waiting[IDLE]))]
        if not fronts:
            return False
        self._close(min(fronts, key=lambda conn: conn.since))
        return True

    def _on_event(self, _: Any, conn: _Conn) -> None:
        if conn.state == HANDSHAKE:
            self._handshake(conn)
        else:
            self._read(conn)

    def _handshake(self, conn: _Conn) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, write=False)
            return
        except ssl.SSLWantWriteError:
            self._want(conn, write=True)
            return
        except (ssl.SSLError, OSError) as error:
            self.refused += 1
            self.log.debug("TLS handshake failed from %s: %s", conn.client, error)
            self._close(conn)
            return
        self._want(conn, write=False)
        conn.verified = bool(conn.sock.getpeercert())  # a certificate the client CA verified
        self._wait(conn, READING, self.limits.request_timeout)
        self._read(conn)

    def _want(self, conn: _Conn, *, write: bool) -> None:
        if conn.writing != write:
            conn.writing = write
            self.poller.modify(conn.sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ,
                               (self._on_event, conn))

    def _wait(self, conn: _Conn, state: str, seconds: float) -> None:
        if conn.state in self._waiting:
            self._waiting[conn.state].pop(conn, None)
        conn.state = state
        self._waiting[state][conn] = time.monotonic() + seconds

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (ssl.SSLError, OSError):
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            conn.buffer += data
            if len(conn.buffer) > self.limits.max_body_bytes + HEADER_LIMIT:
                break
        if conn.state == IDLE and conn.buffer:
            self._wait(conn, READING, self.limits.request_timeout)
        self._next_request(conn)

    def _next_request(self, conn: _Conn) -> None:
        if not conn.buffer:
            return
        ready = request_ready(conn.buffer, self.limits.max_body_bytes)
        if ready is None:
            return
        conn.close_after = not ready
        if conn.buffer.startswith((b"GET /healthz ", b"GET /healthz?")):
            self._answer(conn, b"200 OK", b"ok\n")
        elif conn.buffer.startswith((b"GET /readyz ", b"GET /readyz?")) and self._wedged():
            self._answer(conn, b"503 Service Unavailable", self._wedged_message())
        elif self.limits.authenticate and not conn.verified and not conn.buffer.startswith(PROBES):
            self.log.debug("refused a request without a client certificate from %s", conn.client)
            self._answer(conn, b"403 Forbidden", UNAUTHENTICATED, close=True)
        else:
            self._dispatch(conn)

    # ---------------------------------------------------------------- answered by the loop
    def _wedged(self) -> bool:
        return self._outstanding > 0 and time.monotonic() - self._last_finished > self.limits.wedge_seconds

    def _wedged_message(self) -> bytes:
        waited = time.monotonic() - self._last_finished
        return (f"wedged: {self._outstanding} requests outstanding and none finished for {waited:.0f}s "
                f"({self.cfg.threads} threads)\n").encode()

    def _answer(self, conn: _Conn, status: bytes, body: bytes, *, close: bool = False) -> None:
        """A small response written by the loop; the request must have no body unless ``close``."""
        end = conn.buffer.find(b"\r\n\r\n") + 4
        head = bytes(conn.buffer[:end]).lower()
        del conn.buffer[:end]
        keep = (b"\r\nconnection: close" not in head and b" http/1.0\r\n" not in head and not conn.close_after
                and not close and self.alive)
        response = (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\nConnection: " + (b"keep-alive" if keep else b"close")
                    + b"\r\n\r\n" + body)
        try:
            sent = conn.sock.send(response)
        except (ssl.SSLError, OSError):
            sent = 0
        if sent != len(response) or not keep:
            self._close(conn)
            return
        if conn.buffer:
            self._next_request(conn)
        else:
            self._wait(conn, IDLE, self.limits.keepalive)

    # ---------------------------------------------------------------- handed to a thread
    def _dispatch(self, conn: _Conn) -> None:
        if conn.state in self._waiting:
            self._waiting[conn.state].pop(conn, None)
        conn.state = BUSY
        self.poller.unregister(conn.sock)
        conn.writing = False
        conn.sock.settimeout(self.limits.request_timeout)
        if conn.parser is None:
            conn.parser = ghttp.RequestParser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.buffer))
        conn.buffer = bytearray()
        if self._outstanding == 0:
            self._last_finished = time.monotonic()
        self._outstanding += 1
        self.tpool.submit(self._serve, conn)

    def _serve(self, conn: _Conn) -> None:
        keepalive, leftover = False, b""
        try:
            keepalive = bool(self.handle(conn)[0]) and not conn.close_after
            if keepalive:
                leftover = _leftover(conn.parser)
        except BaseException:  # the connection must go back to the loop whatever happened
            keepalive = False
        finally:
            self._returned.append((conn, keepalive, leftover))
            with contextlib.suppress(BlockingIOError):  # full: the loop is already due to wake
                os.write(self._wake_w, b"\0")

    def _take_back(self, _: Any, __: Any) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._returned:
            conn, keepalive, leftover = self._returned.popleft()
            self._outstanding -= 1
            self._last_finished = time.monotonic()
            if not keepalive or not self.alive:
                self._close(conn)
                continue
            try:
                conn.sock.setblocking(False)
                self.poller.register(conn.sock, selectors.EVENT_READ, (self._on_event, conn))
            except (OSError, ValueError):
                self._close(conn)
                continue
            conn.buffer = bytearray(leftover)
            conn.state = BUSY
            if conn.buffer:
                self._wait(conn, READING, self.limits.request_timeout)
            else:
                self._wait(conn, IDLE, self.limits.keepalive)
            if conn.sock.pending():
                self._read(conn)
            else:
                self._next_request(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.state in self._waiting:
            self._waiting[conn.state].pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)  # not registered while BUSY
        with contextlib.suppress(OSError):
            conn.sock.close()
        conn.state = "closed"
        self._connections -= 1

    # ---------------------------------------------------------------- in the thread (gunicorn's, coalesced)
    def handle_request(self, req: Any, conn: _Conn) -> bool:
        environ: dict[str, Any] = {}
        resp = None
        out = _Coalesced(conn.sock)
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, out, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive or conn.close_after:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
                out.flush()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


def request_ready(buffer: bytearray, max_body: int) -> bool | None:
    """Whether ``buffer`` starts with a whole HTTP request: None (wait for more), True (complete), or
    False (hand it over now and close afterwards: a header over the limit, a body over ``max_body``).

    The loop only needs to know when to stop waiting; gunicorn's parser, in the thread, still parses
    and validates the request itself.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return False if len(buffer) > HEADER_LIMIT else None
    head = bytes(buffer[:end]).lower()
    body = len(buffer) - end - 4
    if b"\r\ntransfer-encoding:" in head:
        if b"chunked" not in head.split(b"\r\ntransfer-encoding:", 1)[1].split(b"\r\n", 1)[0]:
            return False  # gunicorn answers 501
        if body > max_body:
            return False
        return True if buffer.find(b"0\r\n\r\n", end + 4) >= 0 else None  # a false hit: the thread reads on
    marker = head.find(b"\r\ncontent-length:")
    if marker < 0:
        return True
    value = head[marker + 17:].split(b"\r\n", 1)[0].strip()
    if not value.isdigit():
        return False  # gunicorn answers 400
    length = int(value)
    if length > max_body:
        return False
    return True if body >= length else None


def _leftover(parser: Any) -> bytes:
    """Bytes after the request just served (a pipelined next request), taken back from gunicorn's parser."""
    message = parser.mesg
    if message is not None:
        while message.body.read(READ_CHUNK):
            pass
    unreader = parser.unreader
    rest: bytes = unreader.buf.getvalue()
    unreader.buf = io.BytesIO()
    return rest


