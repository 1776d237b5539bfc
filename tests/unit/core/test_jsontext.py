"""``jsontext.loads`` answers exactly what ``json.loads`` answers; ``identical`` is strict JSON identity."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import msgspec
import pytest

from driftguard.core import jsontext


def outcome(decode: Any, text: bytes | str) -> tuple[str, Any]:
    """("ok", value with every float written as its bits, dict keys in order) or ("error", exception class)."""
    try:
        value = decode(text)
    except RecursionError:
        return "error", RecursionError
    except ValueError as e:
        return "error", UnicodeDecodeError if isinstance(e, UnicodeDecodeError) else ValueError
    return "ok", exact(value)


def exact(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))  # NaN, -0.0 and infinities compare by their bits
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    assert isinstance(value, dict)
    return ("dict", [(k, exact(v)) for k, v in value.items()])


EDGES = [
    b'{"a":1,"b":2,"a":3}', b"-0", b"-0.0", b"0.1", b"1e5", b"1E400", b"-1e400", b"1.5e-400", b"5e-324",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551616", b"-9223372036854775809",
    b"123456789012345678901234567890", b"123456789012345678901234567890.5", b"1" * 5000, b"NaN", b"Infinity",
    b"-Infinity", b'"\\ud800"', b'"\\udc00x"', b'"\\uD83D\\uDE00"', b'"\\u0000"', b"\xef\xbb\xbf{}",
    '{"a": "é"}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"), '"é"'.encode(), b'"\xff"', b'"a\tb"', b"01",
    b"1.", b".5", b"+1", b"{}x", b'{"a":1}\x00', b"", b" ", b"\t\n {}\r ", b"[1,]", b'{"a":1,}', b"tru",
    b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b'"\\x41"', b'"\\/"', b"null", b"true",
    "[1.0, -0.0, 1e-7]", '{"k": "str input"}', "NaN",
]


@pytest.mark.parametrize("text", EDGES, ids=[repr(t[:24]) for t in EDGES])
def test_loads_answers_what_the_standard_library_answers(text: bytes | str) -> None:
    assert outcome(jsontext.loads, text) == outcome(json.loads, text)


def test_the_edges_include_what_msgspec_refuses() -> None:
    """The fallback is exercised: some edges msgspec refuses are ones the standard library accepts."""
    refused_by_msgspec = [t for t in EDGES if outcome(msgspec.json.decode, t)[0] == "error"]
    accepted_by_stdlib = [t for t in refused_by_msgspec if outcome(json.loads, t)[0] == "ok"]
    assert len(accepted_by_stdlib) >= 5


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.randint(-(10 ** rng.randint(1, 30)), 10 ** rng.randint(1, 30))
    if choice == 2:
        bits = struct.unpack("<d", rng.randbytes(8))[0]
        return bits if math.isfinite(bits) else rng.random()
    if choice in (3, 4, 5):
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFFF)]))
                       for _ in range(rng.randint(0, 8)))
    if choice in (6, 7):
        return {f"k{rng.randint(0, 5)}": random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def number_text(rng: random.Random) -> str:
    mantissa = f"{rng.randint(0, 10 ** rng.randint(1, 25))}"
    if rng.random() < 0.5:
        mantissa += f".{rng.randint(0, 10 ** rng.randint(1, 25))}"
    return ("-" if rng.random() < 0.5 else "") + mantissa + (f"e{rng.randint(-340, 320)}" if rng.random() < 0.5 else "")


def test_loads_matches_on_random_documents_and_numbers() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        # lone surrogates: escaped (\\udXXX, the stdlib reads them) or raw (not UTF-8: both refuse the bytes)
        data = json.dumps(random_value(rng), ensure_ascii=rng.random() < 0.5).encode(errors="surrogatepass")
        assert outcome(jsontext.loads, data) == outcome(json.loads, data), data
    for _ in range(20000):
        text = number_text(rng)
        assert outcome(jsontext.loads, text) == outcome(json.loads, text), text


@pytest.mark.parametrize(("before", "after", "same"), [
    (1, 1, True), (1, True, False), (0, False, False), (1, 1.0, False), (0.0, -0.0, False), (-0.0, -0.0, True),
    ({"a": [1, "x", None]}, {"a": [1, "x", None]}, True), ({"a": [True]}, {"a": [1]}, False),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),  # key order differs: "not identical" only costs a full diff
    (10 ** 30, 10 ** 30, True), (10 ** 30, float(10 ** 30), False), ("1", 1, False), ([], {}, False),
    (math.inf, math.inf, True), (math.inf, -math.inf, False), (float("nan"), float("nan"), False),
    ({1: "not JSON"}, {1: "not JSON"}, True),  # a key no JSON text has: still compared (by marshal)
])
def test_identical_is_strict(before: object, after: object, same: bool) -> None:
    assert jsontext.identical(before, after) is same


@pytest.mark.parametrize("value", [
    {"uid": "u", "allowed": True}, {"message": "déjà vu ✓"}, {"message": "lone \ud800 surrogate"}, [1, 1.5, None, True],
    {"big": 10 ** 30},
])
def test_dumps_writes_json_the_standard_library_reads_back(value: Any) -> None:
    assert json.loads(jsontext.dumps(value)) == value


def test_dumps_reads_back_on_random_values() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        value = random_value(rng)
        assert outcome(json.loads, jsontext.dumps(value)) == outcome(json.loads, json.dumps(value).encode())
