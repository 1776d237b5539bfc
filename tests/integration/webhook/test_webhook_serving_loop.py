"""Reviews the worker's loop answers itself, and what it leaves to gunicorn, over real TLS to a real process.

The loop takes the plain form of ``POST /validate`` / ``/mutate`` (``worker.review_head``) and answers it
without a thread; a review whose decision reads the API (a scale's parent) goes to a thread; anything
else (chunked, HTTP/1.0, Expect, a bad Content-Length) goes through gunicorn's parser. On the wire all
of it must look the same to a client: answers in order, one per request, keep-alive kept or not as asked.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.admission import edited, live, review, scale_review
from support.webhook_harness import WebhookProcess, too_large

pytestmark = pytest.mark.integration
Answer = tuple[int, dict[str, str], bytes]


def _body(uid: str, *, deny: bool = False) -> bytes:
    old = live()
    new = edited(old, "spec", "replicas", 9) if deny else edited(old, "metadata", "labels", "owner", "bob")
    return json.dumps(review("UPDATE", old=old, new=new, uid=uid)).encode()


def _post(body: bytes, *, path: str = "/validate?timeout=10s", headers: str = "", version: str = "1.1") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    return (b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % half + body[:half] + b"\r\n"
            + b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")


class Client:
    """One raw TLS connection: bytes out exactly as given, HTTP/1.1 answers parsed back one at a time."""

    def __init__(self, webhook: WebhookProcess) -> None:
        raw = socket.create_connection(("127.0.0.1", webhook.settings.port), timeout=10)
        self.sock = webhook.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.pending += data
        return bool(data)

    def answer(self) -> Answer:
        while b"\r\n\r\n" not in self.pending:
            assert self._more(), f"connection closed before an answer; have {self.pending!r}"
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status, *fields = head.decode().split("\r\n")
        if status.split()[1] == "100":
            return self.answer()  # "100 Continue" before the real answer
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        length = int(headers["content-length"])
        while len(self.pending) < length:
            assert self._more(), "connection closed inside an answer"
        body, self.pending = self.pending[:length], self.pending[length:]
        return int(status.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ssl.SSLError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def webhook(webhook_factory: Callable[..., WebhookProcess]) -> WebhookProcess:
    return webhook_factory(workers=1, threads=2, max_body_bytes=64 * 1024)


@pytest.fixture
def client(webhook: WebhookProcess) -> Any:
    opened = Client(webhook)
    yield opened
    opened.close()


def _verdict(answer: Answer) -> tuple[int, str, bool]:
    status, _, body = answer
    response = json.loads(body)["response"]
    return status, response["uid"], response["allowed"]


def test_pipelined_reviews_and_probes_are_answered_in_order_on_one_connection(client: Client) -> None:
    client.send(_post(_body("a")) + _post(_body("b", deny=True)) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                + _post(json.dumps(scale_review(9)).encode()) + _post(_body("c")))
    assert _verdict(client.answer()) == (200, "a", True)
    assert _verdict(client.answer()) == (200, "b", False)
    assert client.answer()[::2] == (200, b"ok\n")
    status, _, body = client.answer()  # on a thread: its parent must be read (no cluster here: denied)
    assert status == 200 and json.loads(body)["response"]["allowed"] is False
    status, headers, _ = client.answer()
    assert status == 200 and headers["connection"] == "keep-alive" and headers["content-type"] == "application/json"
    client.send(_post(_body("d")))  # still open
    assert _verdict(client.answer()) == (200, "d", True)


def test_a_request_that_arrives_in_pieces_is_answered_once_whole(client: Client) -> None:
    data = _post(_body("split"))
    for piece in (data[:20], data[20:200], data[200:5000], data[5000:]):
        client.send(piece)
        time.sleep(0.05)
    assert _verdict(client.answer()) == (200, "split", True)


def test_connection_close_is_answered_then_closed(client: Client) -> None:
    client.send(_post(_body("last"), headers="Connection: close\r\n"))
    answer = client.answer()
    assert _verdict(answer) == (200, "last", True) and answer[1]["connection"] == "close"
    assert client.closed_by_server()


@pytest.mark.parametrize("request_bytes", [
    pytest.param(_chunked(_body("other")), id="chunked"),
    pytest.param(_post(_body("other"), headers="Expect: 100-continue\r\n"), id="expect-100-continue"),
    pytest.param(_post(_body("other"), path="/validate"), id="no-query"),
    pytest.param(_post(_body("other"), headers="X-Note: café\r\n"), id="non-ascii-header"),
])
def test_what_gunicorn_parses_gets_the_same_answer_as_the_plain_form(client: Client, request_bytes: bytes) -> None:
    client.send(_post(_body("other")))
    plain = client.answer()
    client.send(request_bytes)
    other = client.answer()
    assert (other[0], other[2]) == (plain[0], plain[2])
    client.send(_post(_body("after")))
    assert _verdict(client.answer()) == (200, "after", True)


def test_http_1_0_is_answered_and_closed(client: Client) -> None:
    client.send(_post(_body("old"), version="1.0"))
    assert _verdict(client.answer()) == (200, "old", True)
    assert client.closed_by_server()


@pytest.mark.parametrize(("headers", "status"), [
    ("Content-Length: x\r\n", 400),
    ("Content-Length: 5\r\n", 400),  # two different lengths: gunicorn refuses the request
], ids=["bad-length", "two-lengths"])
def test_a_malformed_request_gets_gunicorns_refusal(client: Client, headers: str, status: int) -> None:
    client.send(_post(_body("bad"), headers=headers))
    assert client.answer()[0] == status


@pytest.mark.parametrize("request_bytes", [
    pytest.param(_post(b"x" * (65 * 1024)), id="content-length"),
    pytest.param(_chunked(b"x" * (65 * 1024)), id="chunked"),
])
def test_an_oversized_review_is_413_naming_the_cap_and_its_setting(client: Client, request_bytes: bytes) -> None:
    client.send(request_bytes)
    status, headers, body = client.answer()
    assert (status, headers["connection"], body) == (413, "close", too_large(64 * 1024))
    assert client.closed_by_server()


@pytest.mark.parametrize("worker_class", ["event", "gthread"])
def test_a_client_still_sending_an_oversized_body_reads_the_whole_413(
    webhook_factory: Callable[..., WebhookProcess], worker_class: str,
) -> None:
    """Refused on its Content-Length while the client is still sending the body: the client, which sends it all
    before it reads (in pieces, as a slow link would), is not reset under its writes and reads the whole 413, and
    then the server closes (what it still read was dropped, not taken as a next request)."""
    webhook = webhook_factory(workers=1, threads=2, max_body_bytes=64 * 1024, worker_class=worker_class)
    client = Client(webhook)
    try:
        body = b"x" * (96 * 1024)
        request = _post(body)
        for start in range(0, len(request), 8 * 1024):
            client.send(request[start:start + 8 * 1024])
            time.sleep(0.02)  # pacing, not a deadline: the server answers after the first piece
        status, headers, answer = client.answer()
        assert (status, headers["connection"], answer) == (413, "close", too_large(64 * 1024))
        assert client.closed_by_server()
    finally:
        client.close()


def test_a_large_review_is_read_over_many_records_and_decided_on_a_thread(
    webhook_factory: Callable[..., WebhookProcess],
) -> None:
    """Over 512 KiB (``worker.DIRECT_INLINE_BYTES``) the decode runs on a thread; the loop still reads it whole."""
    webhook = webhook_factory(workers=1, threads=2)
    old = live()
    new = edited(old, "metadata", "annotations", "padding", "x" * (1024 * 1024))
    body = json.dumps(review("UPDATE", old=old, new=new, uid="large")).encode()
    client = Client(webhook)
    try:
        client.send(_post(body) + _post(_body("small")))
        assert _verdict(client.answer()) == (200, "large", True)
        assert _verdict(client.answer()) == (200, "small", True)
    finally:
        client.close()
