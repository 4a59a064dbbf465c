"""Parser for the search filter and order_by grammar.

MLflow's grammar (``ident comparator value`` clauses joined by AND), plus ``OR`` and
parentheses. The parser knows nothing of SQL; :mod:`.compile` turns its tree into queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidParameter

ENTITY_ALIASES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "parameter",
    "params": "parameter",
    "parameter": "parameter",
    "parameters": "parameter",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
VALID_ENTITIES = "['metric', 'parameter', 'tag', 'attribute', 'dataset']"
COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC"}

Value = str | float | tuple[str, ...] | None


@dataclass(frozen=True)
class Ident:
    entity: str
    key: str


@dataclass(frozen=True)
class Comparison:
    ident: Ident
    op: str  # =, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL
    value: Value


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND / OR
    items: tuple[Node, ...]


Node = Comparison | BoolOp


@dataclass(frozen=True)
class OrderKey:
    ident: Ident
    descending: bool


@dataclass(frozen=True)
class _Tok:
    kind: str  # word, bq, str, num, op, lp, rp, comma, dot, end
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<bq>`(?:[^`])*`)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<dot>\.)
  | (?P<word>[A-Za-z_][\w.\-/:]*)
    """,
    re.VERBOSE,
)


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise InvalidParameter(
                f"Invalid filter '{text}': unexpected character {text[pos]!r} at position {pos}."
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _unquote(tok: _Tok) -> str:
    body = tok.text[1:-1]
    if tok.kind == "bq":
        return body
    # One pass, left to right: a doubled quote, or a backslash before the string's own quote or
    # before a backslash, stands for that character; a backslash before anything else is kept.
    escapes = _SINGLE_ESCAPES if tok.text[0] == "'" else _DOUBLE_ESCAPES
    return escapes.sub(lambda m: m.group(0)[-1], body)


_SINGLE_ESCAPES = re.compile(r"''|\\['\\]")
_DOUBLE_ESCAPES = re.compile(r'\\["\\]')


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.upper() in words

    def fail(self, tok: _Tok, expected: str) -> InvalidParameter:
        shown = tok.text if tok.kind != "end" else "end of input"
        return InvalidParameter(
            f"Invalid filter '{self.text}': unexpected token '{shown}' at position {tok.pos}"
            f" (expected {expected})."
        )

    # filter := or_expr
    def parse_filter(self) -> Node:
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "AND, OR or the end of the filter")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.keyword("OR"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def and_expr(self) -> Node:
        items = [self.primary()]
        while self.keyword("AND"):
            self.take()
            items.append(self.primary())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

    def primary(self) -> Node:
        if self.peek().kind == "lp":
            self.take()
            node = self.or_expr()
            if self.peek().kind != "rp":
                raise self.fail(self.peek(), "')'")
            self.take()
            return node
        return self.comparison()

    def ident(self) -> Ident:
        tok = self.take()
        if tok.kind == "bq":
            prefix = _unquote(tok)
            if self.peek().kind != "dot":
                return Ident("attribute", prefix)
            self.take()
            return Ident(_entity(prefix, self.text), self.key_after_dot())
        if tok.kind == "str" and tok.text.startswith('"'):
            return Ident("attribute", _unquote(tok))
        if tok.kind != "word" or tok.text.upper() in _KEYWORDS:
            raise self.fail(tok, "an identifier such as metrics.loss or params.`my param`")
        prefix, dot, rest = tok.text.partition(".")
        if not dot:
            if self.peek().kind == "dot":
                self.take()
                return Ident(_entity(prefix, self.text), self.key_after_dot())
            return Ident("attribute", prefix)
        entity = _entity(prefix, self.text)
        return Ident(entity, rest if rest else self.key_after_dot())

    def key_after_dot(self) -> str:
        tok = self.take()
        if tok.kind == "bq" or (tok.kind == "str" and tok.text.startswith('"')):
            return _unquote(tok)
        if tok.kind == "word":
            return tok.text
        raise self.fail(tok, "a key after '.'")

    def comparison(self) -> Comparison:
        ident = self.ident()
        tok = self.take()
        if tok.kind == "op":
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            return Comparison(ident, op, self.scalar())
        word = tok.text.upper() if tok.kind == "word" else ""
        if word in {"LIKE", "ILIKE"}:
            value = self.scalar()
            if not isinstance(value, str):
                raise InvalidParameter(
                    f"Invalid filter '{self.text}': {word} needs a quoted string pattern."
                )
            return Comparison(ident, word, value)
        if word == "IN":
            return Comparison(ident, "IN", self.value_list())
        if word == "NOT" and self.keyword("IN"):
            self.take()
            return Comparison(ident, "NOT IN", self.value_list())
        if word == "IS":
            negate = self.keyword("NOT")
            if negate:
                self.take()
            null = self.take()
            if not (null.kind == "word" and null.text.upper() == "NULL"):
                raise self.fail(null, "NULL")
            return Comparison(ident, "IS NOT NULL" if negate else "IS NULL", None)
        raise self.fail(tok, "a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS)")

    def scalar(self) -> str | float:
        tok = self.take()
        if tok.kind == "str":
            return _unquote(tok)
        if tok.kind == "num":
            return float(tok.text)
        raise self.fail(tok, "a quoted string or a number")

    def value_list(self) -> tuple[str, ...]:
        if self.take().kind != "lp":
            raise self.fail(self.tokens[self.i - 1], "'(' opening a list of values")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.kind != "str":
                raise self.fail(tok, "a quoted string in the list")
            values.append(_unquote(tok))
            sep = self.take()
            if sep.kind == "rp":
                return tuple(values)
            if sep.kind != "comma":
                raise self.fail(sep, "',' or ')'")


def _entity(prefix: str, text: str) -> str:
    entity = ENTITY_ALIASES.get(prefix.lower())
    if entity is None:
        raise InvalidParameter(
            f"Invalid filter '{text}': invalid entity type '{prefix}'. "
            f"Valid values are {VALID_ENTITIES}"
        )
    return entity


def parse_filter(text: str | None) -> Node | None:
    """Parse a filter string; None or blank means no filter."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse_filter()


def parse_order_by(clauses: list[str]) -> list[OrderKey]:
    """Parse ``"<ident> [ASC|DESC]"`` clauses; duplicate keys are an error."""
    keys: list[OrderKey] = []
    for clause in clauses:
        parser = _Parser(clause)
        ident = parser.ident()
        descending = False
        if parser.keyword("ASC", "DESC"):
            descending = parser.take().text.upper() == "DESC"
        if parser.peek().kind != "end":
            raise InvalidParameter(
                f"Invalid order_by clause '{clause}': unexpected token '{parser.peek().text}'."
            )
        if any(k.ident == ident for k in keys):
            raise InvalidParameter(f"`order_by` contains duplicate fields: '{clause}'")
        keys.append(OrderKey(ident, descending))
    return keys
