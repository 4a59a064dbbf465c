"""One canonical form per kind of name, so that two names a reader cannot tell apart never
name two different things.

A name is stored as given and compared through its *key*, kept next to it under a unique
index:

- models, aliases, projects and packages: NFKC with case folding (``Churn`` = ``churn``,
  full-width ``fw`` (U+FF46 U+FF57) = ``fw``, NFD ``café`` = NFC ``café``, the ligature
  U+FB01 = ``fi``);
- experiments: NFKC only, so ``Demo`` and ``demo`` stay two experiments as in MLflow, but the
  two spellings of ``café`` are one.

New names may hold no invisible character at all: control and format characters (zero-width
spaces and joiners, bidirectional overrides, the byte-order mark), other default-ignorable
code points (variation selectors, Hangul fillers), unassigned or private-use code points,
line separators and spaces other than the plain space. Lookups go through the key too, so a
client finds a model by the exact name it created and by any spelling with the same key.
"""

from __future__ import annotations

import unicodedata

from modelyard.errors import InvalidParameter

#: the largest key, in UTF-8 bytes (a key is indexed; NFKC may lengthen a name)
MAX_KEY_BYTES = 2000

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Unicode's Default_Ignorable_Code_Point ranges outside the categories above, and the blank
# Braille pattern, which renders as nothing
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _ignorable(char: str) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    if category in _REFUSED_CATEGORIES or (category == "Zs" and char != " "):
        return True
    return _ignorable(char)


def visible(char: str) -> bool:
    """Whether a new name may hold ``char``."""
    return not _invisible(char)


def check_visible(value: str, what: str) -> str:
    """``value`` itself, or a 400 naming the first invisible or control character in it."""
    if value.isascii() and value.isprintable():
        return value
    for char in value:
        if _invisible(char):
            name = unicodedata.name(char, "an unnamed character")
            raise InvalidParameter(
                f"Invalid {what} {value[:300]!r}: it contains U+{ord(char):04X} ({name}), an "
                "invisible, control or spacing character other than the plain space; names "
                "may only hold visible characters and plain spaces."
            )
    return value


def _bounded(key: str, value: str, what: str) -> str:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidParameter(
            f"Invalid {what} {value[:100]!r}…: once normalised it takes more than "
            f"{MAX_KEY_BYTES} bytes."
        )
    return key


def _stripped(value: str) -> str:
    return "".join(c for c in value if not _ignorable(c) and unicodedata.category(c) != "Cf")


def folded_key(value: str, what: str = "name") -> str:
    """The key of a model, alias, project or package name: NFKC, case folded, with
    default-ignorable characters (which new names cannot hold) left out."""
    if value.isascii():
        return _bounded(value.lower(), value, what)
    key = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", _stripped(value)).casefold())
    return _bounded(key, value, what)


def normalized_key(value: str, what: str = "name") -> str:
    """The key of an experiment name: NFKC, case kept, default-ignorables left out."""
    if value.isascii():
        return _bounded(value, value, what)
    return _bounded(unicodedata.normalize("NFKC", _stripped(value)), value, what)
