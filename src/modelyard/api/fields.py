"""The native API's value types: each one is a type with its constraints, which validates a
request and describes the value in the OpenAPI document.

Patterns are written in the subset that Rust's regex (what pydantic checks with), Python's
``re`` and ECMA-262 (what JSON Schema means) read alike: ASCII classes and ``\\uXXXX`` escapes,
no ``\\w``, ``\\s`` or ``\\d``, no look-around. A pattern here is never looser than the service
check behind it, so a value the document allows is never refused for its form later.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from modelyard.auth.roles import Role
from modelyard.services import packages, paths
from modelyard.services.access import NAME_RE

MAX_INT64 = 2**63 - 1
MAX_NAME_LENGTH = 256  # services.registry.model_name

# Characters that str.strip() removes, and control characters.
_SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_CONTROL = "\\u0000-\\u001f\\u007f"


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


# Names ------------------------------------------------------------------------------------------

PackageName = Annotated[
    str,
    Field(
        pattern=packages.NAME_PATTERN,
        examples=["weights"],
        description="Letters, digits, '.', '_' and '-', starting with a letter or digit, at "
        "most 255 characters.",
    ),
]
PackageVersion = Annotated[
    str,
    Field(
        pattern=packages.VERSION_PATTERN,
        examples=["1.0.0"],
        description="Letters, digits, '.', '+', '_' and '-', starting with a letter or digit, "
        "at most 128 characters.",
    ),
]

_MODEL_EDGE = f"[^/:{_CONTROL}{_SPACE}]"
_MODEL_INNER = f"[^/:{_CONTROL}]"
ModelName = Annotated[
    str,
    Field(
        pattern=_anchored(
            f"{_MODEL_EDGE}(?:{_MODEL_INNER}{{0,{MAX_NAME_LENGTH - 2}}}{_MODEL_EDGE})?"
        ),
        examples=["churn"],
        description=f"A model name: 1 to {MAX_NAME_LENGTH} visible characters and plain "
        "spaces, without '/' or ':', not starting or ending with a space. Control, format, "
        "private-use, unassigned and default-ignorable code points and spaces other than "
        "U+0020 are refused (400).",
        # the pattern cannot state Unicode categories; the format names the rule
        json_schema_extra={"format": "model-name"},
    ),
]

_ACCESS_NAME = _anchored(NAME_RE.pattern)
ProjectName = Annotated[
    str,
    Field(
        pattern=_ACCESS_NAME,
        examples=["churn"],
        description="1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    ),
]
UserName = ProjectName

# A semver reference as an alias (v1_4_0, v1_4, v1): reserved, never an alias of its own.
_N = "(?:0|[1-9][0-9]*)"
_PRE_ID = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
RESERVED_ALIAS = _anchored(
    f"[Ll][Aa][Tt][Ee][Ss][Tt]|v[0-9]+|v[0-9]+_[0-9]+|v{_N}_{_N}_{_N}(?:-{_PRE_ID}(?:_{_PRE_ID})*)?"
)
_RESERVED = re.compile(RESERVED_ALIAS)


def _not_reserved(alias: str) -> str:
    if _RESERVED.match(alias):
        raise ValueError(
            f"'{alias}' is reserved: 'latest' and v<number> aliases (v3, v1_4, v1_4_0) name "
            "versions."
        )
    return alias


AliasName = Annotated[
    str,
    Field(
        pattern="^[A-Za-z0-9_-]{1,255}$",
        description="1 to 255 letters, digits, '_' and '-'; not 'latest' and not a version "
        "reference such as v3, v1_4 or v1_4_0.",
    ),
    AfterValidator(_not_reserved),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{1,255}$",
            "not": {"pattern": RESERVED_ALIAS},
            "examples": ["production"],
        }
    ),
]

_SEMVER = (
    f"{_N}\\.{_N}\\.{_N}(?:-{_PRE_ID}(?:\\.{_PRE_ID})*)?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?"
)
_SEMVER_RE = re.compile(_SEMVER)
_SEMVER_RULE = "MAJOR.MINOR.PATCH with an optional -prerelease and +build, e.g. 1.4.0 or 2.0.0-rc1."


def _semver(text: str) -> str:
    if not _SEMVER_RE.fullmatch(text):
        raise ValueError(f"Invalid semantic version {text[:100]!r}: expected {_SEMVER_RULE}")
    return text


Semver = Annotated[
    str,
    AfterValidator(_semver),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _anchored(_SEMVER),
            "description": "A semantic version: " + _SEMVER_RULE,
            "examples": ["1.4.0"],
        }
    ),
]

VersionRef = Annotated[
    str,
    Field(
        pattern=_anchored(
            "[1-9][0-9]{0,8}"
            f"|{_SEMVER}"
            "|[\\^~][0-9]{1,9}(?:\\.[0-9]{1,9}){0,2}"
            "|[0-9]{1,9}\\.[0-9]{1,9}(?:\\.[0-9]{1,9})?"
            "|[A-Za-z_-][A-Za-z0-9_-]{0,254}"
        ),
        examples=["3", "1.4.0", "^1.4", "production"],
        description="A version: its number (3, from 1), a semver (1.4.0), a range (^1.4, ~2.0, "
        "1.4) or an alias (production, v1_4_0).",
    ),
]

# Package files ----------------------------------------------------------------------------------

_C = f"[^/\\\\?#%{_CONTROL}]"  # any character of a segment
_NOT_DOT = f"[^/\\\\?#%{_CONTROL}.]"
_NOT_COLON = f"[^/\\\\?#%{_CONTROL}:]"
_NOT_DOT_OR_LETTER = f"[^/\\\\?#%{_CONTROL}.A-Za-z]"
# A segment: not '.' or '..', and not a drive ('C:').
_SEGMENT = (
    f"(?:\\.{_NOT_DOT}{_C}*|\\.\\.{_C}+|{_NOT_DOT_OR_LETTER}{_C}*|[A-Za-z](?:{_NOT_COLON}{_C}*)?)"
)
FILE_PATH_PATTERN = _anchored(f"{_SEGMENT}(?:/{_SEGMENT})*")
FOLDER_PATTERN = _anchored(f"|{_SEGMENT}(?:/{_SEGMENT})*")
_PATH_RULE = (
    "A relative path inside the package, '/' between folders: no empty, '.' or '..' segment, "
    "no leading '/', drive letter, backslash, '?', '#', '%' or control character; at most "
    f"{paths.MAX_PATH_LENGTH} characters."
)


def _checked_path(path: str) -> str:
    return paths.safe_path(path)


FilePath = Annotated[
    str,
    Field(pattern=FILE_PATH_PATTERN, max_length=paths.MAX_PATH_LENGTH, description=_PATH_RULE),
    AfterValidator(_checked_path),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": FILE_PATH_PATTERN,
            "maxLength": paths.MAX_PATH_LENGTH,
            "description": _PATH_RULE,
            "examples": ["model/weights.bin"],
        }
    ),
]


# Identifiers and small values ------------------------------------------------------------------

RunId = Annotated[
    str, Field(pattern="^[0-9a-f]{32}$", description="A candidate's run id: 32 hex digits.")
]
LoggedModelId = Annotated[
    str, Field(pattern="^m-[0-9a-f]{32}$", description="A logged model's id: m-<32 hex digits>.")
]
Sha256 = Annotated[
    str,
    Field(pattern="^[0-9a-f]{64}$", description="A SHA-256: 64 lowercase hexadecimal digits."),
]
Millis = Annotated[int, Field(ge=0, le=MAX_INT64, description="Milliseconds since the epoch.")]
Id = Annotated[int, Field(ge=1, le=MAX_INT64)]

RoleName = Literal["guest", "reporter", "developer", "maintainer", "owner"]
TokenRole = Literal["guest", "reporter", "developer", "maintainer"]
Scope = Literal["read", "write"]
Bump = Literal["major", "minor", "patch"]
assert {r.label for r in Role} == set(get_args(RoleName))


# Points in time ---------------------------------------------------------------------------------

_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = "[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
_DATE_TIME = re.compile(f"^{_DATE}(?:[Tt ]{_TIME})?$")


def _moment(value: object) -> int:
    """Milliseconds since the epoch from a number of ms, an RFC 3339 date or date-time."""
    text = str(value)
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return int(text)
    problem = "use milliseconds since the epoch, a date (2026-11-01) or an RFC 3339 time."
    if not _DATE_TIME.match(text):
        raise ValueError(problem)
    try:
        moment = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


Moment = Annotated[
    int,
    BeforeValidator(_moment),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{1,15}$"},
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
            ],
            "description": "Milliseconds since the epoch, a date (midnight UTC) or an RFC 3339 "
            "date-time.",
        }
    ),
]
