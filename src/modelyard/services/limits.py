"""Caps on the free text a client can store, checked in one place with one error.

Where MLflow defines a limit (tag and param values, names, dataset fields) the services use
MLflow's (``services.validation``); the caps here are for text MLflow leaves unbounded. Each is
counted in characters and documented in docs/configuration.md ("Limits").
"""

from __future__ import annotations

from modelyard.errors import InvalidParameter

#: a model's description, which is also its model card (Markdown)
MODEL_DESCRIPTION = 256 * 1024
#: a model version's description
VERSION_DESCRIPTION = 64 * 1024
#: a model version's source and run link (a URI; file paths are at most 1,000 characters)
VERSION_URI = 4096
#: a candidate's user id (MLflow's own column holds 256)
USER_ID = 256
#: a short human name: webhooks, labels
SHORT_NAME = 256


def text(value: str | None, limit: int, what: str) -> str:
    """``value`` ("" for None), or a 400 naming the field and both lengths when it is longer
    than ``limit`` characters. Nothing is truncated."""
    if value is None:
        return ""
    if len(value) > limit:
        raise InvalidParameter(
            f"{what} is {len(value):,} characters long; the limit is {limit:,} characters."
        )
    return value
