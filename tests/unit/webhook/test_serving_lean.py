"""Which requests the worker's loop answers itself (``worker.review_head``): only the plain form of a review.

Anything else returns None and goes through gunicorn's parser, which answers (or refuses) it as before, so
each case below that is not plain must be None — the loop never guesses.
"""

from __future__ import annotations

import pytest

from webhook import worker

CAP = 1000
BODY = b'{"kind":"AdmissionReview"}'
HEAD = b"POST /validate?timeout=10s HTTP/1.1\r\nHost: 10.0.0.1:8443\r\nContent-Type: application/json\r\n"


def plain(extra: bytes = b"", body: bytes = BODY, head: bytes = HEAD) -> bytes:
    return head + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


BODY_START = len(plain()) - len(BODY)


@pytest.mark.parametrize(("buffer", "path", "content_type", "body", "close"), [
    (plain(), "/validate", "application/json", BODY, False),
    (plain().replace(b"/validate?timeout=10s", b"/mutate"), "/mutate", "application/json", BODY, False),
    (plain() + b"POST /validate HTTP/1.1\r\n", "/validate", "application/json", BODY, False),  # pipelined
    (plain(b"Connection: close\r\n"), "/validate", "application/json", BODY, True),
    (plain(b"connection: Keep-Alive\r\n"), "/validate", "application/json", BODY, False),
    (plain(b"content-type:  application/json; charset=utf-8 \r\n").replace(b"Content-Type: application/json\r\n", b""),
     "/validate", "application/json; charset=utf-8", BODY, False),
    (plain(body=b""), "/validate", "application/json", b"", False),  # the app refuses an empty body (400)
    (plain().replace(b"Content-Type: application/json\r\n", b""), "/validate", "", BODY, False),  # app: 400
], ids=["validate-with-query", "mutate", "pipelined", "connection-close", "keep-alive", "content-type-params",
        "empty-body", "no-content-type"])
def test_the_plain_form_is_taken_by_the_loop(buffer: bytes, path: str, content_type: str, body: bytes,
                                            close: bool) -> None:
    head = worker.review_head(bytearray(buffer), CAP)
    assert head is not None
    assert (head.path, head.content_type, head.length, head.close) == (path, content_type, len(body), close)
    assert buffer[head.body_start:head.body_start + head.length] == body
    assert buffer[:head.body_start].endswith(b"\r\n\r\n")


@pytest.mark.parametrize("buffer", [
    plain()[:BODY_START + 3],  # split read: the body is not all here yet
    plain()[:BODY_START - 2],  # split read: the header is not finished
    HEAD + b"\r\n" + BODY,  # no Content-Length
    plain(b"Content-Length: 26\r\n"),  # two Content-Lengths
    plain().replace(b"Content-Length: 26", b"Content-Length: +26"),
    plain().replace(b"Content-Length: 26", b"Content-Length: 0x1a"),
    plain().replace(b"Content-Length: 26", b"Content-Length: -1"),
    plain(body=b"x" * (CAP + 1)),  # over the cap: the app answers 413 on gunicorn's path
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n1a\r\n" + BODY + b"\r\n0\r\n\r\n",
    plain(b"Transfer-Encoding: chunked\r\n"),  # both: never the loop's call which one wins
    plain(b"Expect: 100-continue\r\n"),
    plain(head=HEAD.replace(b"HTTP/1.1", b"HTTP/1.0")),
    plain(head=HEAD.replace(b"HTTP/1.1", b"HTTP/2.0")),
    plain(head=HEAD.replace(b"POST", b"PUT")),
    plain(head=HEAD.replace(b"/validate?timeout=10s", b"/validatex")),
    plain(head=HEAD.replace(b"/validate?timeout=10s", b"/metrics")),
    plain(head=HEAD.replace(b"/validate?timeout=10s", b"/validate /x")),
    plain(b"Connection: upgrade\r\n"),
    plain(b"X-Long: " + b"a" * worker.FIELD_LIMIT + b"\r\n"),  # header field too long: gunicorn's 431
    plain(head=HEAD.replace(b"?timeout=10s", b"?" + b"a" * worker.REQUEST_LINE_LIMIT)),  # line too long: 414
    plain(b"".join(b"X-%d: y\r\n" % i for i in range(worker.FIELDS_LIMIT))),  # too many fields
    plain(b" folded\r\n"),  # obs-fold
    plain(b"X-Bad: a\x00b\r\n"),  # a control byte
    plain(b"X-Bad: caf\xc3\xa9\r\n"),  # not ASCII
    plain(b"X-Bad: a\nb\r\n"),  # a bare LF
    plain(b"X-Bad: a\rb\r\n"),  # a bare CR
    plain(b"Bad Name: x\r\n"),  # not a token
    plain(b": x\r\n"),  # no name
    plain(b"NoColon\r\n"),
    plain(b"Content-Type: text/plain\r\n"),  # two content types
], ids=["split-body", "split-header", "no-length", "two-lengths", "plus-length", "hex-length", "negative-length",
        "oversize", "chunked", "chunked-and-length", "expect-continue", "http-1.0", "http-2", "put",
        "other-path", "metrics", "space-in-target", "connection-upgrade", "field-too-long", "line-too-long",
        "too-many-fields", "obs-fold", "control-byte", "non-ascii", "bare-lf", "bare-cr", "bad-name",
        "empty-name", "no-colon", "two-content-types"])
def test_anything_else_takes_gunicorns_path(buffer: bytes) -> None:
    assert worker.review_head(bytearray(buffer), CAP) is None
