"""When the worker's loop stops waiting for a request and hands it to a thread (``worker.request_ready``)."""

from __future__ import annotations

import io

import pytest

from webhook import worker

CAP = 1000
HEAD = b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(("buffer", "expected"), [
    (b"", None),
    (b"POST /validate HTTP/1.1\r\nHost: x\r\n", None),  # header not finished
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),  # no body
    (HEAD + b"Content-Length: 5\r\n\r\n", None),
    (HEAD + b"Content-Length: 5\r\n\r\nabc", None),
    (HEAD + b"Content-Length: 5\r\n\r\nabcde", True),
    (HEAD + b"content-length: 5\r\n\r\nabcdeGET /next", True),  # pipelined: the rest stays for later
    (HEAD + b"Content-Length: 1001\r\n\r\n", False),  # over the cap: the app refuses it, then close
    (HEAD + b"Content-Length: -1\r\n\r\n", False),  # gunicorn's parser answers 400
    (HEAD + b"Content-Length: x\r\n\r\n", False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", None),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", True),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", True),
    (HEAD + b"Transfer-Encoding: gzip\r\n\r\n", False),  # gunicorn answers 501
    (b"X" * (worker.HEADER_LIMIT + 1), False),  # a header that never ends: gunicorn answers 431
], ids=["empty", "partial-header", "no-body", "no-body-yet", "part-body", "whole", "pipelined", "over-cap",
        "negative-length", "bad-length", "chunked-partial", "chunked-whole", "chunked-empty", "other-coding",
        "endless-header"])
def test_a_request_is_handed_over_only_when_whole(buffer: bytes, expected: bool | None) -> None:
    assert worker.request_ready(bytearray(buffer), CAP) is expected


def test_what_follows_a_served_request_is_taken_back_from_the_parser() -> None:
    class Message:
        body = io.BytesIO(b"unread body")

    class Unreader:
        buf = io.BytesIO(b"GET /next HTTP/1.1\r\n")

    class Parser:
        mesg = Message()
        unreader = Unreader()

    parser = Parser()
    assert worker._leftover(parser) == b"GET /next HTTP/1.1\r\n"
    assert parser.unreader.buf.getvalue() == b"" and Message.body.read() == b""
