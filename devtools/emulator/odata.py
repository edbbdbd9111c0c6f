"""A small OData $filter parser and evaluator.

Covers what the responder's queries use: eq ne gt ge lt le, and/or/not, parentheses,
'in', startswith/endswith/contains, string literals with '' escapes, true/false/null,
numbers and unquoted datetime literals. Anything else raises FilterError, which the routes
turn into 400 BadRequest (never 500)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .timefmt import looks_like_dt, parse_dt


class FilterError(ValueError):
    """The filter is malformed or uses an unsupported property or operator."""


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_/@.]*)
    """,
    re.VERBOSE,
)

_COMPARE_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCS = {"startswith", "endswith", "contains"}


@dataclass
class _Tok:
    kind: str
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    pos = 0
    out: list[_Tok] = []
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or ""
        raw = m.group(0)
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "string":
            out.append(_Tok("literal", raw[1:-1].replace("''", "'"), m.start()))
        elif kind == "datetime":
            out.append(_Tok("literal", parse_dt(raw), m.start()))
        elif kind == "guid":
            out.append(_Tok("literal", raw, m.start()))
        elif kind == "number":
            out.append(_Tok("literal", float(raw) if "." in raw else int(raw), m.start()))
        elif kind == "ident":
            low = raw.lower()
            if low in ("true", "false"):
                out.append(_Tok("literal", low == "true", m.start()))
            elif low == "null":
                out.append(_Tok("literal", None, m.start()))
            else:
                out.append(_Tok("ident", raw, m.start()))
        else:
            out.append(_Tok(kind, raw, m.start()))
    return out


# AST nodes are tuples: ("cmp", op, left, right) | ("and", a, b) | ("or", a, b) |
# ("not", a) | ("prop", name) | ("lit", value) | ("func", name, [args]) | ("in", left, [lits])
Node = tuple


class _Parser:
    def __init__(self, text: str, allowed: set[str] | None):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.allowed = {a.lower(): a for a in allowed} if allowed is not None else None

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Unexpected end of filter expression '{self.text}'.")
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.value.lower() == word

    def parse(self) -> Node:
        if not self.toks:
            raise FilterError("The $filter expression is empty.")
        node = self.parse_or()
        if self.peek() is not None:
            tok = self.peek()
            raise FilterError(f"Syntax error at position {tok.pos} in '{self.text}'.")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.is_word("or"):
            self.next()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.is_word("and"):
            self.next()
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.is_word("not"):
            self.next()
            return ("not", self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_operand()
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.value.lower() in _COMPARE_OPS:
            op = self.next().value.lower()
            right = self.parse_operand()
            return ("cmp", op, left, right)
        if tok is not None and tok.kind == "ident" and tok.value.lower() == "in":
            self.next()
            if self.next().kind != "lparen":
                raise FilterError("Expected '(' after 'in'.")
            items: list[Any] = []
            while True:
                lit = self.next()
                if lit.kind != "literal":
                    raise FilterError("Only literals are allowed in an 'in' list.")
                items.append(lit.value)
                sep = self.next()
                if sep.kind == "rparen":
                    break
                if sep.kind != "comma":
                    raise FilterError("Expected ',' or ')' in 'in' list.")
            return ("in", left, items)
        if left[0] in ("func", "bool"):
            return left
        if left[0] == "prop":
            # a bare boolean property, e.g. "accountEnabled"
            return ("cmp", "eq", left, ("lit", True))
        raise FilterError(f"Invalid filter clause near position {self.i} in '{self.text}'.")

    def parse_operand(self) -> Node:
        tok = self.next()
        if tok.kind == "literal":
            return ("lit", tok.value)
        if tok.kind == "lparen":
            node = self.parse_or()
            if self.next().kind != "rparen":
                raise FilterError("Expected ')'.")
            return ("bool", node) if node[0] != "lit" else node
        if tok.kind == "ident":
            name = tok.value
            if name.lower() in _FUNCS and self.peek() is not None and self.peek().kind == "lparen":
                self.next()
                args = [self.parse_operand()]
                while True:
                    sep = self.next()
                    if sep.kind == "rparen":
                        break
                    if sep.kind != "comma":
                        raise FilterError("Expected ',' or ')' in function call.")
                    args.append(self.parse_operand())
                if len(args) != 2:
                    raise FilterError(f"Function '{name}' takes two arguments.")
                return ("func", name.lower(), args)
            if self.allowed is not None:
                canon = self.allowed.get(name.lower())
                if canon is None:
                    raise FilterError(
                        f"Invalid filter clause: property '{name}' is not supported for filtering."
                    )
                name = canon
            return ("prop", name)
        raise FilterError(f"Unexpected token '{tok.value}' at position {tok.pos}.")


def parse_filter(text: str, allowed: Iterable[str] | None = None) -> Node:
    """Parse a $filter expression; allowed limits the property names (case-insensitive)."""
    return _Parser(text, set(allowed) if allowed is not None else None).parse()


def _get(item: dict, name: str) -> Any:
    cur: Any = item
    for part in name.split("/"):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, datetime) and isinstance(b, str) and looks_like_dt(b):
        return a, parse_dt(b)
    if isinstance(b, datetime) and isinstance(a, str) and looks_like_dt(a):
        return parse_dt(a), b
    if isinstance(a, str) and isinstance(b, str):
        return a.lower(), b.lower()
    return a, b


def _compare(op: str, a: Any, b: Any) -> bool:
    a, b = _coerce_pair(a, b)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    try:
        if op == "gt":
            return a > b
        if op == "ge":
            return a >= b
        if op == "lt":
            return a < b
        if op == "le":
            return a <= b
    except TypeError:
        return False
    raise FilterError(f"Unsupported operator {op}")


def _value(node: Node, item: dict) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "prop":
        return _get(item, node[1])
    return evaluate(node, item)


def evaluate(node: Node, item: dict) -> bool:
    """Evaluate a parsed filter against one item (a dict of the resource's JSON)."""
    kind = node[0]
    if kind == "and":
        return evaluate(node[1], item) and evaluate(node[2], item)
    if kind == "or":
        return evaluate(node[1], item) or evaluate(node[2], item)
    if kind == "not":
        return not evaluate(node[1], item)
    if kind == "bool":
        return evaluate(node[1], item)
    if kind == "cmp":
        return _compare(node[1], _value(node[2], item), _value(node[3], item))
    if kind == "in":
        val = _value(node[1], item)
        return any(_compare("eq", val, x) for x in node[2])
    if kind == "func":
        a, b = (_value(x, item) for x in node[2])
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        a, b = a.lower(), b.lower()
        if node[1] == "startswith":
            return a.startswith(b)
        if node[1] == "endswith":
            return a.endswith(b)
        return b in a
    if kind == "prop":
        return bool(_get(item, node[1]))
    if kind == "lit":
        return bool(node[1])
    raise FilterError(f"Cannot evaluate node {kind}")


def compile_filter(
    text: str | None, allowed: Iterable[str] | None = None
) -> Callable[[dict], bool]:
    """Parse once; return a predicate. None/empty filter matches everything."""
    if text is None or not text.strip():
        return lambda _item: True
    node = parse_filter(text, allowed)
    return lambda item: evaluate(node, item)
