"""Chart versions and the ``targetRevision`` constraints that choose one, as Helm and Argo CD read them
(Masterminds semver): an exact version (``1.2.3``, ``v1.2.3``), a wildcard (``1.2.*``, ``1.x``, ``*``), a
comparison (``>=1.2.0 <2.0.0``, ``!=1.3.0``; ANDed with spaces or commas), a caret or tilde range
(``^1.2`` = ``>=1.2.0 <2.0.0``, ``~1.2.3`` = ``>=1.2.3 <1.3.0``), a hyphen range (``1.2 - 1.4``) and
alternatives separated by ``||``. A pre-release version (``1.3.0-rc.1``) is chosen only by a constraint that
names a pre-release itself, as Helm does. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_VERSION: Final = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")
_PART: Final = re.compile(r"^v?([0-9]+|[xX*])(?:\.([0-9]+|[xX*]))?(?:\.([0-9]+|[xX*]))?(?:-([0-9A-Za-z.-]+))?"
                          r"(?:\+[0-9A-Za-z.-]+)?$")
_COMPARISON: Final = re.compile(r"^(=|!=|>=|=>|<=|=<|>|<|~>|~|\^)?\s*(\S+)$")
ANY: Final = ("", "*", "HEAD", "latest")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    release: int  # 1 for a release, 0 for a pre-release (which sorts before its release)
    pre: tuple[tuple[int, int | str], ...] = ()

    @property
    def prerelease(self) -> bool:
        return self.release == 0


def parse_version(text: str) -> Version | None:
    """``1.2.3``/``v1.2``/``1.3.0-rc.1+build`` as a comparable Version; None when it is no version."""
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    pre = m.group(4) or ""
    return Version(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), 0 if pre else 1, _pre_key(pre))


def _pre_key(pre: str) -> tuple[tuple[int, int | str], ...]:
    # numeric identifiers sort before alphanumeric ones (semver §11); (0, n) < (1, "rc")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()


class ConstraintError(ValueError):
    """A ``targetRevision`` that is no chart version nor a constraint."""


@dataclass(frozen=True, slots=True)
class _Comparison:
    op: str  # one of = != > >= < <= outside
    version: Version
    upper: Version | None = None  # for "outside": not within [version, upper)


@dataclass(frozen=True, slots=True)
class Constraint:
    """Alternatives (``||``), each a conjunction of comparisons."""

    text: str
    alternatives: tuple[tuple[_Comparison, ...], ...]
    allows_pre: tuple[bool, ...]

    def allows(self, version: str | Version) -> bool:
        parsed = parse_version(version) if isinstance(version, str) else version
        if parsed is None:
            return False
        for comparisons, pre in zip(self.alternatives, self.allows_pre, strict=True):
            if parsed.prerelease and not pre:
                continue
            if all(_holds(c, parsed) for c in comparisons):
                return True
        return False


def parse_constraint(text: str) -> Constraint:
    """``targetRevision`` as a Constraint; ConstraintError naming what is wrong."""
    text = text.strip()
    if text in ANY:
        return Constraint(text, ((),), (False,))
    alternatives, pre = [], []
    for written in text.split("||"):
        comparisons: list[_Comparison] = []
        named_pre = False
        alternative = written.strip()
        if not alternative:
            raise ConstraintError(f"{text!r}: an empty alternative around ||")
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
        terms = [f">={hyphen.group(1)}", f"<=~{hyphen.group(2)}"] if hyphen else \
            [t for t in re.split(r"[\s,]+", _join_operators(alternative)) if t]
        for term in terms:
            m = _COMPARISON.match(term)
            if m is None:
                raise ConstraintError(f"{text!r}: {term!r} is no version or comparison")
            op, body = m.group(1) or "", m.group(2)
            if op == "<=" and body.startswith("~"):  # the upper end of a hyphen range: missing parts any
                op, body = "<=~", body[1:]
            part = _PART.match(body)
            if part is None:
                raise ConstraintError(f"{text!r}: {body!r} is not a version (1.2.3, 1.2, 1.x)")
            named_pre = named_pre or bool(part.group(4))
            comparisons += _expand(op, part)
        alternatives.append(tuple(comparisons))
        pre.append(named_pre)
    return Constraint(text, tuple(alternatives), tuple(pre))


def _join_operators(text: str) -> str:
    """``>= 1.2`` → ``>=1.2``: an operator followed by spaces belongs to the version after it."""
    return re.sub(r"(!=|>=|=>|<=|=<|~>|[=<>~^])\s+", r"\1", text)


def _expand(op: str, part: re.Match[str]) -> list[_Comparison]:
    raw = [part.group(1), part.group(2), part.group(3)]
    wild = next((i for i, p in enumerate(raw) if p is None or p in ("x", "X", "*")), 3)
    numbers = [int(p) if i < wild and p is not None else 0 for i, p in enumerate(raw)]
    pre = part.group(4) or ""
    exact = Version(numbers[0], numbers[1], numbers[2], 0 if pre else 1, _pre_key(pre))
    floor = Version(numbers[0], numbers[1], numbers[2], 0, ())  # below every pre-release of it

    def bump(index: int) -> Version:  # the first version past the given part
        if index < 0:
            return Version(1 << 62, 0, 0, 0, ())
        bumped = numbers[:index] + [numbers[index] + 1] + [0] * (2 - index)
        return Version(bumped[0], bumped[1], bumped[2], 0, ())

    explicit_wild = any(p in ("x", "X", "*") for p in raw if p is not None)
    if op in ("", "=") and (wild < 3 and (explicit_wild or op == "")):
        if wild == 0:
            return []
        return [_Comparison(">=", floor), _Comparison("<", bump(wild - 1))]
    if op in ("", "="):
        return [_Comparison("=", exact)]
    if op == "!=":
        if wild < 3:
            return [_Comparison("outside", floor, bump(wild - 1))]
        return [_Comparison("!=", exact)]
    if op in ("~", "~>"):
        return [_Comparison(">=", exact if wild == 3 else floor), _Comparison("<", bump(min(1, wild - 1) if wild
                                                                                        else -1))]
    if op == "^":
        first = next((i for i, n in enumerate(numbers[:wild]) if n != 0), None)
        upper = bump(first) if first is not None else bump(wild - 1) if wild < 3 else bump(2)  # ^0, ^0.0, ^0.0.0
        return [_Comparison(">=", exact if wild == 3 else floor), _Comparison("<", upper)]
    if op == ">":
        return [_Comparison(">=", bump(wild - 1))] if wild < 3 else [_Comparison(">", exact)]
    if op in (">=", "=>"):
        return [_Comparison(">=", exact if wild == 3 else floor)]
    if op == "<":
        return [_Comparison("<", exact if wild == 3 else floor)]
    if op in ("<=", "=<", "<=~"):
        return [_Comparison("<", bump(wild - 1))] if wild < 3 else [_Comparison("<=", exact)]
    raise ConstraintError(f"unknown operator {op!r}")


def _holds(c: _Comparison, v: Version) -> bool:
    if c.op == "=":
        return (v.major, v.minor, v.patch, v.release, v.pre) == (c.version.major, c.version.minor, c.version.patch,
                                                                 c.version.release, c.version.pre)
    if c.op == "!=":
        return not _holds(_Comparison("=", c.version), v)
    if c.op == ">":
        return v > c.version
    if c.op == ">=":
        return v >= c.version
    if c.op == "<":
        return v < c.version
    if c.op == "<=":
        return v <= c.version
    if c.op == "outside" and c.upper is not None:
        return not c.version <= v < c.upper
    return False


def highest(versions: list[str], constraint: Constraint) -> str | None:
    """The highest of ``versions`` the constraint allows (None when it allows none)."""
    allowed = [(parsed, v) for v in versions if (parsed := parse_version(v)) is not None and constraint.allows(parsed)]
    return max(allowed)[1] if allowed else None
