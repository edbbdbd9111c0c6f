"""Exchange OPATH -Filter parsing ("AuditEnabled -eq $false", "ForwardingSmtpAddress -ne
$null"), so sweeps can be tested against the same filters they send to Exchange Online."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<sq>'(?:[^']|'')*')
  | (?P<dq>"(?:[^"]|"")*")
  | (?P<var>\$(?:true|false|null))
  | (?P<op>-[A-Za-z]+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<word>[^\s()'"]+)
    """,
    re.VERBOSE | re.IGNORECASE,
)

_CMP = {"-eq", "-ne", "-like", "-notlike", "-gt", "-lt", "-ge", "-le"}


class OpathError(ValueError):
    """The -Filter string cannot be parsed."""


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise OpathError(f"Invalid filter syntax at position {pos}: '{text}'")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(0)
        if kind == "ws":
            continue
        if kind == "sq":
            out.append(("lit", raw[1:-1].replace("''", "'")))
        elif kind == "dq":
            out.append(("lit", raw[1:-1].replace('""', '"')))
        elif kind == "var":
            out.append(("lit", {"$true": True, "$false": False, "$null": None}[raw.lower()]))
        elif kind == "op":
            out.append(("op", raw.lower()))
        else:
            out.append((kind, raw))
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        return low
    return v


def _cmp(op: str, actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        if op in ("-eq", "-like"):
            return any(_cmp(op, a, expected) for a in actual)
        if op in ("-ne", "-notlike"):
            return all(_cmp(op, a, expected) for a in actual)
    if actual == "":
        actual = None
    if isinstance(actual, bool) and isinstance(expected, str):
        expected = _norm(expected)
    a, e = _norm(actual), _norm(expected)
    if isinstance(a, str) and a.startswith("smtp:") and isinstance(e, str) and "@" in e:
        a = a[5:]
    if op == "-eq":
        return a == e
    if op == "-ne":
        return a != e
    if op in ("-like", "-notlike"):
        hit = isinstance(a, str) and isinstance(e, str) and fnmatch.fnmatchcase(a, e)
        return hit if op == "-like" else not hit
    if a is None or e is None:
        return False
    try:
        return {"-gt": a > e, "-lt": a < e, "-ge": a >= e, "-le": a <= e}[op]
    except TypeError:
        return False


def compile_opath(text: str | None) -> Callable[[dict], bool]:
    """Return a predicate over an Exchange object dict (property names case-insensitive)."""
    if text is None or not str(text).strip():
        return lambda _o: True
    text = str(text).strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    toks = _tokens(text)
    i = 0

    def peek() -> tuple[str, Any] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, Any]:
        nonlocal i
        if i >= len(toks):
            raise OpathError(f"Unexpected end of filter: '{text}'")
        i += 1
        return toks[i - 1]

    def parse_or() -> Callable[[dict], bool]:
        left = parse_and()
        while peek() == ("op", "-or"):
            take()
            right = parse_and()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def parse_and() -> Callable[[dict], bool]:
        left = parse_not()
        while peek() == ("op", "-and"):
            take()
            right = parse_not()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def parse_not() -> Callable[[dict], bool]:
        if peek() == ("op", "-not"):
            take()
            inner = parse_not()
            return lambda o: not inner(o)
        return parse_atom()

    def parse_atom() -> Callable[[dict], bool]:
        kind, val = take()
        if kind == "lparen":
            inner = parse_or()
            if take()[0] != "rparen":
                raise OpathError("Expected ')'")
            return inner
        if kind != "word":
            raise OpathError(f"Expected a property name, got {val!r}")
        prop = val.lower()
        opk, op = take()
        if opk != "op" or op not in _CMP:
            raise OpathError(f"Unsupported operator {op!r} in filter '{text}'")
        vk, v = take()
        if vk not in ("lit", "word"):
            raise OpathError(f"Expected a value after {op}")

        def pred(o: dict, prop: str = prop, op: str = op, v: Any = v) -> bool:
            actual = next((val for k, val in o.items() if k.lower() == prop), None)
            return _cmp(op, actual, v)

        return pred

    result = parse_or()
    if i != len(toks):
        raise OpathError(f"Unexpected token {toks[i][1]!r} in filter '{text}'")
    return result
