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
* a connection answered while its client may still be sending (a body over ``--max-body-bytes``) lingers
  before it is closed (``_linger``: write side shut, what still comes dropped, bounded in bytes and time), so
  the client reads the answer instead of a TCP reset;
* a connection costs a file descriptor and a buffer, not a thread (``max_connections`` per worker).
  When full, the connection that has waited longest without a complete request is closed to admit
  the new one: accepting never stops, so the API server's new connections always get in;
* with ``authenticate`` (``--client-ca-file``) a request from a connection that presented no client
  certificate (a kubelet probe) may only be ``GET /healthz``, ``/readyz`` or ``/metrics``; anything
  else, ``/validate`` and ``/mutate`` above all, is answered 403 by the loop and never reaches the app;
* ``GET /healthz`` is answered by the loop itself, never queued behind requests; ``GET /readyz``
  answers 503 from the loop while requests are outstanding and none has finished for
  ``wedge_seconds`` (otherwise the app answers it, checking the certificate).

* ``POST /validate`` and ``/mutate`` in their plain form (HTTP/1.1, one Content-Length, the whole body
  buffered, nothing unusual in the header: ``review_head``) skip gunicorn's parser and WSGI environ and
  are answered by the loop itself through the app's ``direct`` entry (``DIRECT``, in the Flask app's
  extensions): no thread hand-off, no re-parse, the answer written in one TLS record. A review whose
  decision needs an API read (a scale's parent, an Application's Project) comes back from ``direct``
  as work for a thread, so the loop never waits on the network. Anything else takes the gunicorn path.

Everything the loop does to a socket happens on the loop's thread; threads hand connections back
through a deque and a wake-up pipe. gunicorn is imported here and in ``webhook.serve`` only.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import errno
import io
import logging
import os
import re
import selectors
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from gunicorn import http as ghttp
from gunicorn import sock as gsock
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.workers import base, gthread

HANDSHAKE: Final = "handshake"
READING: Final = "reading"
IDLE: Final = "idle"
BUSY: Final = "busy"
WRITING: Final = "writing"  # a loop-written answer the socket did not take at once
LINGERING: Final = "lingering"  # answered and closed for writing; what the client still sends is discarded
LINGER_SECONDS: Final = 1.0  # how long a closing connection whose request was not read whole still reads
READ_CHUNK: Final = 256 * 1024
HEADER_LIMIT: Final = 64 * 1024  # more than gunicorn's own limits: its parser answers 400/431
ACCEPT_BATCH: Final = 1  # one per wake-up: a worker taking a whole burst would keep it (keep-alive)
DRAIN_SECONDS: Final = 2.0  # after SIGTERM: open connections still answered, each with Connection: close
PROBES: Final = (b"GET /healthz", b"GET /readyz", b"GET /metrics")  # open without a client certificate
NOTIFY_SECONDS: Final = 1.0  # the heartbeat (a utime on gunicorn's tmp file) at most this often, not every wake-up
PIPELINE_BATCH: Final = 8  # requests answered from one connection's buffer before the loop looks at the others
DIRECT: Final = "driftguard.direct"  # the app's extension the loop answers reviews with (webhook.app sets it)
DIRECT_INLINE_BYTES: Final = 512 * 1024  # larger reviews are decoded on a thread: the loop stays quick
REQUEST_LINE_LIMIT: Final = 4094  # gunicorn's limit_request_line default: longer takes its path (and its 414)
FIELD_LIMIT: Final = 8190  # gunicorn's limit_request_field_size default
FIELDS_LIMIT: Final = 100  # gunicorn's limit_request_fields default
Answer = tuple[str, str, bytes]  # status line, content type, body
Direct = Callable[[str, str, bytes], "Answer | Callable[[], Answer]"]
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


class ReviewHead(NamedTuple):
    """A plain review request at the start of a buffer (``review_head``)."""

    path: str  # /validate or /mutate, without the query
    content_type: str
    body_start: int
    length: int
    close: bool  # Connection: close


class _Conn:
    __slots__ = ("buffer", "client", "close_after", "discard", "outbox", "parser", "server", "since", "sock",
                 "state", "unread", "verified", "writing")

    def __init__(self, sock: ssl.SSLSocket, client: Any, server: Any, now: float) -> None:
        self.sock, self.client, self.server, self.since = sock, client, server, now
        self.buffer = bytearray()
        self.parser: Any = None
        self.state = HANDSHAKE
        self.close_after = False
        self.writing = False
        self.verified = False
        self.outbox = b""  # an answer waiting for the socket to take it (state WRITING)
        self.unread = False  # the request was handed over before it was whole: the client may still be sending
        self.discard = 0  # LINGERING: how many more bytes may be read and dropped before closing


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
            HANDSHAKE: OrderedDict(), READING: OrderedDict(), IDLE: OrderedDict(), WRITING: OrderedDict(),
            LINGERING: OrderedDict()}
        self._ready: list[_Conn] = []  # connections with requests left in their buffer (PIPELINE_BATCH)
        self.direct: Direct | None = None
        self._chunk = memoryview(bytearray(READ_CHUNK))  # every recv lands here: no 256 KiB object per read
        self._date = (0, b"")
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
        self.direct = self._direct_entry()
        heartbeat = 0.0
        while self.alive:
            now = time.monotonic()
            if now >= heartbeat:
                self.notify()
                if not self.is_parent_alive():
                    break
                heartbeat = now + NOTIFY_SECONDS
            self._turn(0.0 if self._ready else self._timeout())
        self._shutdown()

    def _turn(self, timeout: float) -> None:
        for key, _ in self.poller.select(timeout):
            callback, argument = key.data
            callback(key.fileobj, argument)
        ready, self._ready = self._ready, []
        for conn in ready:
            if conn.state == READING:
                self._next_request(conn)
        self._expire(time.monotonic())

    def _direct_entry(self) -> Direct | None:
        """The app's review entry, unless gunicorn's access log wants a line per request (its path writes it)."""
        direct = getattr(self.wsgi, "extensions", {}).get(DIRECT)
        if direct is None or self.log.access_log.isEnabledFor(logging.INFO):
            return None
        return direct  # type: ignore[no-any-return]

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
            self._turn(0.0 if self._ready else min(0.1, max(0.0, deadline - time.monotonic())))

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
        """Close a connection that was answered and only lingers, else the one that has waited longest without a
        complete request (else the oldest idle)."""
        if self._waiting[LINGERING]:
            self._close(next(iter(self._waiting[LINGERING])))
            return True
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
        elif conn.state == LINGERING:
            self._discard(conn)
        elif conn.state == WRITING:
            self._flush(conn)
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
        """What the socket holds now. Stops when TLS has nothing decrypted left (``pending``): more bytes in
        the kernel keep the socket readable (level-triggered), so the next turn reads them — one recv per
        request instead of a second one that only raises SSLWantReadError."""
        chunk = self._chunk
        while True:
            try:
                count = conn.sock.recv_into(chunk)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (ssl.SSLError, OSError):
                self._close(conn)
                return
            if not count:
                self._close(conn)
                return
            conn.buffer += chunk[:count]
            if len(conn.buffer) > self.limits.max_body_bytes + HEADER_LIMIT or not conn.sock.pending():
                break
        if conn.state == IDLE and conn.buffer:
            self._wait(conn, READING, self.limits.request_timeout)
        self._next_request(conn)

    def _next_request(self, conn: _Conn) -> None:
        """Answer what ``conn``'s buffer holds: up to ``PIPELINE_BATCH`` requests the loop answers itself
        (the rest on the next turn, so one pipelining client cannot hold the loop), or hand one to a thread."""
        for _ in range(PIPELINE_BATCH):
            if not conn.buffer or conn.state not in (READING, IDLE):
                return
            ready = request_ready(conn.buffer, self.limits.max_body_bytes)
            if ready is None:
                return
            conn.close_after = conn.unread = not ready
            if not self._one_request(conn):
                return
            if not conn.buffer and conn.sock.pending():
                self._read(conn)  # TLS bytes already decrypted: no readiness event will come for them
                return
        if conn.state == READING and conn.buffer:
            self._ready.append(conn)

    def _one_request(self, conn: _Conn) -> bool:
        """Answer or hand over the request at the start of the buffer; True if the loop answered it and the
        connection waits for its next request (READING with a buffer, or IDLE)."""
        buffer = conn.buffer
        if buffer.startswith((b"GET /healthz ", b"GET /readyz ", b"GET /healthz?", b"GET /readyz?")):
            if buffer.startswith((b"GET /healthz ", b"GET /healthz?")):
                return self._answer(conn, b"200 OK", b"ok\n")
            if self._wedged():
                return self._answer(conn, b"503 Service Unavailable", self._wedged_message())
        if self.limits.authenticate and not conn.verified and not buffer.startswith(PROBES):
            self.log.debug("refused a request without a client certificate from %s", conn.client)
            return self._answer(conn, b"403 Forbidden", UNAUTHENTICATED, close=True)
        if self.direct is not None and not conn.close_after and buffer.startswith(b"POST /"):
            head = review_head(buffer, self.limits.max_body_bytes)
            if head is not None:
                return self._review(conn, head, self.direct)
        self._dispatch(conn)
        return False

    # ---------------------------------------------------------------- answered by the loop
    def _wedged(self) -> bool:
        return self._outstanding > 0 and time.monotonic() - self._last_finished > self.limits.wedge_seconds

    def _wedged_message(self) -> bytes:
        waited = time.monotonic() - self._last_finished
        return (f"wedged: {self._outstanding} requests outstanding and none finished for {waited:.0f}s "
                f"({self.cfg.threads} threads)\n").encode()

    def _answer(self, conn: _Conn, status: bytes, body: bytes, *, close: bool = False) -> bool:
        """A small response written by the loop; the request must have no body unless ``close``."""
        end = conn.buffer.find(b"\r\n\r\n") + 4
        head = bytes(conn.buffer[:end]).lower()
        del conn.buffer[:end]
        keep = (b"\r\nconnection: close" not in head and b" http/1.0\r\n" not in head and not conn.close_after
                and not close and self.alive)
        return self._write(conn, self._response(status.decode(), "text/plain", body, keep=keep), keep=keep)

    def _review(self, conn: _Conn, head: ReviewHead, direct: Direct) -> bool:
        """A plain review: the app answers it here, or gives back the part that must run on a thread."""
        end = head.body_start + head.length
        body = bytes(conn.buffer[head.body_start:end])
        del conn.buffer[:end]
        self._count_request()
        keep = not head.close and self.alive and self.cfg.keepalive > 0
        if head.length > DIRECT_INLINE_BYTES:
            self._hand_over(conn, lambda: direct(head.path, head.content_type, body), keep=keep)
            return False
        answer = self._run(lambda: direct(head.path, head.content_type, body))
        if callable(answer):
            self._hand_over(conn, answer, keep=keep)
            return False
        keep = keep and self.alive
        return self._write(conn, self._response(*answer, keep=keep), keep=keep)

    def _run(self, work: Callable[[], Answer | Callable[[], Answer]]) -> Answer | Callable[[], Answer]:
        try:
            return work()
        except Exception:  # fail closed: the API server applies the failurePolicy to a 500
            self.log.exception("webhook request failed")
            return "500 Internal Server Error", "text/plain", b"internal error\n"

    def _count_request(self) -> None:
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def _response(self, status: str, content_type: str, body: bytes, *, keep: bool) -> bytes:
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, email.utils.formatdate(second, usegmt=True).encode())
        return b"".join((b"HTTP/1.1 ", status.encode(), b"\r\nDate: ", self._date[1], b"\r\nContent-Type: ",
                         content_type.encode(), b"\r\nContent-Length: ", str(len(body)).encode(),
                         b"\r\nConnection: keep-alive\r\n\r\n" if keep else b"\r\nConnection: close\r\n\r\n",
                         body))

    def _write(self, conn: _Conn, response: bytes, *, keep: bool) -> bool:
        """Send a loop-made answer; what the socket does not take now waits for it (WRITING)."""
        try:
            sent = conn.sock.send(response)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except (ssl.SSLError, OSError):
            self._close(conn)
            return False
        if sent < len(response):
            conn.outbox = response[sent:]
            conn.close_after = conn.close_after or not keep
            self._wait(conn, WRITING, self.limits.request_timeout)
            self._want(conn, write=True)
            return False
        return self._written(conn, keep=keep)

    def _flush(self, conn: _Conn) -> None:
        keep = not conn.close_after
        response, conn.outbox = conn.outbox, b""
        self._wait(conn, READING, self.limits.request_timeout)
        self._want(conn, write=False)
        if self._write(conn, response, keep=keep):
            self._next_request(conn)

    def _written(self, conn: _Conn, *, keep: bool) -> bool:
        if not keep:
            self._close(conn)
            return False
        if conn.buffer:
            self._wait(conn, READING, self.limits.request_timeout)
        else:
            self._wait(conn, IDLE, self.limits.keepalive)
        return True

    # ---------------------------------------------------------------- handed to a thread
    def _busy(self, conn: _Conn) -> None:
        if conn.state in self._waiting:
            self._waiting[conn.state].pop(conn, None)
        conn.state = BUSY
        self.poller.unregister(conn.sock)
        conn.writing = False
        conn.sock.settimeout(self.limits.request_timeout)
        if self._outstanding == 0:
            self._last_finished = time.monotonic()
        self._outstanding += 1

    def _dispatch(self, conn: _Conn) -> None:
        self._busy(conn)
        if conn.parser is None:
            conn.parser = ghttp.RequestParser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.buffer))
        conn.buffer = bytearray()
        self.tpool.submit(self._serve, conn)

    def _hand_over(self, conn: _Conn, work: Callable[[], Answer | Callable[[], Answer]], *, keep: bool) -> None:
        """A review's answer made on a thread (it reads the API); the buffer's pipelined rest stays for the loop."""
        self._busy(conn)
        self.tpool.submit(self._serve_direct, conn, work, keep)

    def _serve_direct(self, conn: _Conn, work: Callable[[], Answer | Callable[[], Answer]], keep: bool) -> None:
        sent = False
        try:
            answer = self._run(work)
            while callable(answer):
                answer = self._run(answer)
            keep = keep and self.alive
            conn.sock.sendall(self._response(*answer, keep=keep))
            sent = True
        except BaseException:  # the connection must go back to the loop whatever happened
            sent = False
        finally:
            self._returned.append((conn, keep and sent, bytes(conn.buffer)))
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")

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
                if conn.unread:
                    self._linger(conn)
                else:
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

    def _linger(self, conn: _Conn) -> None:
        """Close a connection whose answer was written while the client may still be sending its request (a body
        over --max-body-bytes, a header over the limits) without resetting it: a close with bytes unread makes
        the kernel answer with a TCP reset, which can reach the client before it has read the answer. So the
        write side is shut (the answer, then FIN; the TLS layer is dropped, what comes is not decrypted) and what
        the client still sends is read and dropped, raw, for at most ``LINGER_SECONDS`` (the loop's deadlines)
        and at most twice --max-body-bytes, then closed; at EOF at once."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, (self._on_event, conn))
        except (OSError, ValueError):
            self._close(conn)
            return
        conn.buffer, conn.writing = bytearray(), False
        conn.discard = 2 * self.limits.max_body_bytes
        self._wait(conn, LINGERING, LINGER_SECONDS)

    def _discard(self, conn: _Conn) -> None:
        """One read of what a lingering connection's client still sends, dropped (level-triggered: the next
        turn reads on)."""
        try:
            count = conn.sock.recv_into(self._chunk, min(READ_CHUNK, conn.discard))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            count = 0
        conn.discard -= count
        if not count or conn.discard <= 0:
            self._close(conn)

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


def own_worker_hooks(max_body: int) -> dict[str, Callable[..., None]]:
    """gunicorn's own workers (``gthread``, ``sync``): a request announcing a body over ``max_body`` is answered
    with ``Connection: close`` — kept alive, gunicorn would read the whole body, however large, before the next
    request — and after the answer its connection lingers as the loop's does (``WebhookWorker._linger``), here
    on the request's thread: write side shut, at most twice ``max_body`` bytes read and dropped for at most
    ``LINGER_SECONDS``, then closed."""
    def pre_request(worker: Any, req: Any) -> None:
        worker.log.debug("%s %s", req.method, req.path)  # gunicorn's own pre_request
        reader = getattr(req.body, "reader", None)
        if isinstance(reader, LengthReader) and reader.length > max_body:
            req.must_close = True

    def post_request(worker: Any, req: Any, environ: dict[str, Any], resp: Any) -> None:
        reader = getattr(getattr(req, "body", None), "reader", None)
        if resp is None or not resp.should_close() or not isinstance(reader, LengthReader) or reader.length <= 0:
            return
        sock: Any = environ.get("gunicorn.socket")
        deadline, left = time.monotonic() + LINGER_SECONDS, 2 * max_body
        try:
            sock.shutdown(socket.SHUT_WR)
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                data = sock.recv(min(READ_CHUNK, left))
                if not data:
                    return
                left -= len(data)
        except (OSError, AttributeError):  # the client went, the time is up (TimeoutError), no socket
            return

    return {"pre_request": pre_request, "post_request": post_request}


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




def review_head(buffer: bytearray, max_body: int) -> ReviewHead | None:
    """The plain form of a review request at the start of ``buffer``, whole; None for anything else.

    Plain: ``POST /validate`` or ``/mutate`` (a query allowed), ``HTTP/1.1``, header fields that are
    ``token: visible ASCII``, exactly one Content-Length of digits within ``max_body``, the whole body
    buffered, no Transfer-Encoding, no Expect, Connection only ``keep-alive`` or ``close``, and within
    gunicorn's own line, field and count limits. What is not plain goes through gunicorn's parser, which
    answers it (or refuses it) as it always did: this function only ever narrows what the loop takes.
    One regular expression checks the form (a few µs; a loop over the lines took 16-21 µs), a second
    finds the fields that matter.
    """
    end = buffer.find(b"\r\n\r\n", 0, HEADER_LIMIT)
    if end < 0:
        return None
    head = bytes(buffer[:end])
    form = _PLAIN_HEAD.fullmatch(head)
    if form is None or head.count(b"\r\n") > FIELDS_LIMIT:
        return None
    if len(head) > REQUEST_LINE_LIMIT:  # shorter: every line is within both limits
        line, *fields = head.split(b"\r\n")
        if len(line) > REQUEST_LINE_LIMIT or any(len(field) > FIELD_LIMIT for field in fields):
            return None
    length: int | None = None
    content_type, close = "", False
    for found in _HEAD_FIELDS.finditer(head):
        name, value = found[1].lower(), found[2].strip(b" \t")
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"content-type":
            if content_type:
                return None
            content_type = value.decode()
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if not tokens <= {b"keep-alive", b"close"}:
                return None
            close = b"close" in tokens
        else:  # transfer-encoding, expect
            return None
    if length is None or length > max_body or len(buffer) - end - 4 < length:
        return None
    return ReviewHead(form[1].decode(), content_type, end + 4, length, close)


# The request line and header fields of a plain review: a target of visible ASCII (or tab) without spaces,
# field names that are tokens, values of visible ASCII, space and tab (no control byte, bare CR or LF).
_PLAIN_HEAD: Final = re.compile(rb"POST (/validate|/mutate)(?:\?[\t!-~]*)? HTTP/1\.1"
                                rb"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~]*)*")
_HEAD_FIELDS: Final = re.compile(rb"\r\n(content-length|content-type|connection|transfer-encoding|expect):([\t -~]*)",
                                 re.IGNORECASE)
