"""Validation rules and limits for names and values, matching MLflow's server."""

from __future__ import annotations

import json
import math
import posixpath
import re

from modelyard.errors import InvalidParameter

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_RUN_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ENTITIES = 1000
MAX_REQUEST_BYTES = 1024 * 1024
MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 36
MAX_DATASET_SOURCE_LENGTH = 65535
MAX_DATASET_SCHEMA_LENGTH = 1_048_575
MAX_DATASET_PROFILE_LENGTH = 16384
MAX_SHOWN_VALUE = 200  # characters of a bad value quoted in an error message
MAX_INPUT_TAG_KEY_LENGTH = 255
MAX_INPUT_TAG_VALUE_LENGTH = 500

_KEY_RE = re.compile(r"^[/\w.\- :]*$")
_RUN_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


def key(value: str, what: str) -> str:
    """A metric, param or tag key: bounded, path-safe, characters from MLflow's set. Errors
    are MLflow's (a metric key is its ``name``, others are ``key``)."""
    if value is None or value == "":
        raise InvalidParameter(f"Missing value for required parameter 'key'. ({what} key)")
    param = "name" if what == "Metric" else "key"
    if not _KEY_RE.match(value):
        raise _bad_key(value, param, _KEY_CHARACTERS)
    normal = posixpath.normpath(value)
    if normal != value or normal == "." or normal.startswith(("..", "/")):
        raise _bad_key(
            value,
            param,
            "Names may be treated as files in certain cases, and must not resolve to other "
            f"names when treated as such. This name would resolve to {normal!r}",
        )
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidParameter(
            f"'{what} {param}' exceeds the maximum length of {MAX_KEY_LENGTH} characters "
            f"(got {len(value)})."
        )
    return value


_KEY_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


def _bad_key(value: str, param: str, why: str) -> InvalidParameter:
    shown = json.dumps(value[:MAX_SHOWN_VALUE])
    return InvalidParameter(f"Invalid value {shown} for parameter '{param}' supplied: {why}")


def truncate(value: str, limit: int) -> str:
    """Values over the limit are cut to it, as MLflow's server does by default."""
    return value if len(value) <= limit else value[:limit]


def bounded(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise InvalidParameter(
            f"{what} '{value[:40]}...' had length {len(value)}, which exceeded length limit "
            f"of {limit}"
        )
    return value


def experiment_name(name: str | None) -> str:
    if name is None or name.strip() == "":
        raise InvalidParameter("Invalid experiment name: ''. Experiment name cannot be empty.")
    return bounded(name, MAX_EXPERIMENT_NAME_LENGTH, "Experiment name")


def run_id(value: str | None, param: str = "run_id") -> str:
    if not value:
        raise InvalidParameter(f"Missing value for required parameter '{param}'.")
    if not _RUN_ID_RE.match(value):
        raise InvalidParameter(f"Invalid run ID: '{value}'")
    return value


def experiment_id(value: str | None, param: str = "experiment_id") -> int:
    if value is None or value == "":
        raise InvalidParameter(f"Missing value for required parameter '{param}'.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Invalid experiment ID: '{value}'") from None
    if number < 0 or number > 2**63 - 1:
        raise InvalidParameter(f"Invalid experiment ID: '{value}'")
    return number


def run_status(value: str) -> str:
    if value not in RUN_STATUSES:
        raise InvalidParameter(
            f"Invalid run status '{value}'. Valid values are {', '.join(RUN_STATUSES)}."
        )
    return value


def metric_value(value: object, param: str = "value") -> float:
    """Numbers, or the strings NaN / Infinity / -Infinity of protobuf JSON."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        # protobuf JSON writes doubles as numbers, or as strings ("NaN", "Infinity", "1.5")
        try:
            return float(value.replace("Infinity", "inf"))
        except ValueError:
            pass
    raise invalid_value(value, param)


def int64(value: object, param: str, *, minimum: int | None = None) -> int:
    """An int64 from JSON: a number, or a decimal string as protobuf JSON allows."""
    if isinstance(value, bool):
        raise invalid_value(value, param)
    number: int
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer() and math.isfinite(value):
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise invalid_value(value, param) from None
    else:
        raise invalid_value(value, param)
    if not -(2**63) <= number < 2**63 or (minimum is not None and number < minimum):
        raise invalid_value(value, param)
    return number


def invalid_value(value: object, param: str) -> InvalidParameter:
    """MLflow's message for a value of the wrong type or form: the value as JSON (strings
    quoted, numbers bare), then its type."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if len(shown) > MAX_SHOWN_VALUE:
        shown = shown[:MAX_SHOWN_VALUE] + "..."
    return InvalidParameter(
        f"Invalid value {shown} for parameter '{param}' supplied: "
        f"Hint: Value was of type '{type(value).__name__}'."
    )
