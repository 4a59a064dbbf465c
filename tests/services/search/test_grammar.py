"""String literals in the filter language: how quotes and backslashes are read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import Comparison, parse_filter


def _value(text: str) -> object:
    node = parse_filter(f"tags.k = {text}")
    assert isinstance(node, Comparison)
    return node.value


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'it''s'", "it's"),
        (r"'it\'s'", "it's"),
        (r"'ends in \\'", "ends in \\"),
        (r"'\\'''", "\\'"),
        (r"'\\\''", "\\'"),
        (r"'b\_a'", r"b\_a"),  # a backslash before anything else stays, for LIKE patterns
        (r"'a\"b'", r"a\"b"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"c:\\dir"', "c:\\dir"),
        ('"it\'s"', "it's"),
    ],
)
def test_escapes_are_read_once_left_to_right(literal: str, value: str) -> None:
    assert _value(literal) == value


@pytest.mark.parametrize("literal", [r"'RW\'", "'open", r'"x\"'])
def test_an_unterminated_string_is_refused(literal: str) -> None:
    with pytest.raises(InvalidParameter, match="Invalid filter"):
        parse_filter(f"tags.k = {literal}")


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))))
def test_any_text_written_with_escapes_reads_back(text: str) -> None:
    written = "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    assert _value(written) == text
    in_list = parse_filter(f"tags.k IN ({written}, 'x')")
    assert isinstance(in_list, Comparison)
    assert in_list.value == (text, "x")
