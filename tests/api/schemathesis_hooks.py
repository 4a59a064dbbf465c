"""What the fuzzer needs to know beyond the OpenAPI document, loaded by schemathesis through
SCHEMATHESIS_HOOKS. Each item is a rule JSON Schema cannot state; none of them hides an answer:

- ``model-filter``: the filter language is a grammar, not a pattern. Valid filters are drawn
  from it (schemathesis treats an unknown format as any string).
- ``model-name``: a model name holds only visible characters, a rule over Unicode categories
  that a pattern cannot state. Valid names are drawn from visible characters (control,
  format, private-use, unassigned, default-ignorable and non-plain spaces left out).
- ``experiment-name``: the same rule for an imported experiment's name ('/' and ':' allowed).
- An upload's checksum must be the body's SHA-256, and a token's ``expires_at`` must lie in the
  future. Where the fuzzer drew a well-formed checksum or time, it is replaced by the right
  one (a malformed one is left alone, so the server is still asked to refuse it).
- The fuzzing token must not revoke itself: the rest of the run would only see 401s.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

import schemathesis
from hypothesis import strategies as st

from modelyard.services import canonical

OWN_TOKEN_ID = int(os.environ.get("MODELYARD_FUZZ_TOKEN_ID", "0"))
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DAY_MS = 86_400_000

# The filter language over a model's name and tags -----------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(
    # a backslash escapes the next character, as in MLflow's filters, so it is written doubled
    lambda s: "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"
)
_key = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_target = st.one_of(st.just("name"), st.just("attributes.name"), _key.map("tags.{}".format))
_clause = st.one_of(
    st.tuples(_target, st.sampled_from(["=", "!=", "<", ">", "LIKE", "ILIKE"]), _text).map(
        " ".join
    ),
    st.tuples(_target, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
    st.tuples(_target, st.lists(_text, min_size=1, max_size=3)).map(
        lambda pair: f"{pair[0]} IN ({', '.join(pair[1])})"
    ),
)
_filter = st.recursive(
    _clause,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" AND ", " OR "]), inner).map("".join),
        inner.map("({})".format),
    ),
    max_leaves=4,
)
schemathesis.openapi.format("model-filter", st.one_of(st.just(""), _filter))


# Model names: visible characters only ----------------------------------------------------------

_NAME_CHAR = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
    exclude_characters="/:",
).filter(canonical.visible)
_model_name = st.one_of(
    _NAME_CHAR,
    st.tuples(
        _NAME_CHAR, st.text(st.one_of(_NAME_CHAR, st.just(" ")), max_size=20), _NAME_CHAR
    ).map("".join),
)
schemathesis.openapi.format("model-name", _model_name)

# Experiment names (imports): visible characters and plain spaces, '/' and ':' allowed
_EXPERIMENT_CHAR = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
).filter(canonical.visible)
schemathesis.openapi.format(
    "experiment-name",
    st.tuples(
        _EXPERIMENT_CHAR, st.text(st.one_of(_EXPERIMENT_CHAR, st.just(" ")), max_size=20)
    ).map("".join),
)


# Checksums and expiry times ---------------------------------------------------------------------


def _body_bytes(body: Any) -> bytes | None:
    if isinstance(body, bytes):
        return body
    data = getattr(body, "data", None)
    return data if isinstance(data, bytes) else None


def _fix_checksum_and_expiry(case: Any) -> None:
    path = case.operation.path
    if case.method.upper() == "PUT" and path.endswith("/files/{path}"):
        data = _body_bytes(case.body)
        digest = hashlib.sha256(data or b"").hexdigest()
        headers = case.headers or {}
        for name in list(headers):
            if name.lower() == "x-checksum-sha256" and _SHA256.match(str(headers[name])):
                headers[name] = digest
        query = case.query or {}
        if _SHA256.match(str(query.get("sha256", ""))):
            query["sha256"] = digest
    body = case.body
    if isinstance(body, dict) and path.endswith("/tokens"):
        at = body.get("expires_at")
        whole = isinstance(at, int | float) and not isinstance(at, bool) and float(at).is_integer()
        if whole and 1 <= at < 2**62:
            body["expires_at"] = max(int(at), int(time.time() * 1000) + DAY_MS)


# The token the run is made with -----------------------------------------------------------------


def _spare_own_token(case: Any) -> None:
    params = case.path_parameters or {}
    if OWN_TOKEN_ID and str(params.get("token_id")) == str(OWN_TOKEN_ID):
        params["token_id"] = OWN_TOKEN_ID + 1_000_000_000  # a token that does not exist


@schemathesis.hook
def before_call(_context: Any, case: Any, _kwargs: dict[str, Any]) -> None:
    """Runs before every request of every phase."""
    _fix_checksum_and_expiry(case)
    _spare_own_token(case)
