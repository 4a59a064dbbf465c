"""Searching registered models and model versions. A project holds few enough of them that
the set is loaded once and filtered, ordered and paged in Python with the shared filter
grammar (which also gives ``OR`` and parentheses here)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from modelyard.db.engine import Database
from modelyard.errors import InvalidParameter
from modelyard.services import registry
from modelyard.services.registry import ModelVersion, RegisteredModel
from modelyard.services.search.evaluate import matches
from modelyard.services.search.grammar import (
    Comparison,
    Ident,
    Node,
    OrderKey,
    parse_filter,
    parse_order_by,
)
from modelyard.services.search.sql import fingerprint

T = TypeVar("T")
MAX_MODELS = 1000
MAX_VERSIONS = 200_000


def _page(
    items: list[T], max_results: int, limit: int, token: str | None, print_: str
) -> tuple[list[T], str | None]:
    if not 1 <= max_results <= limit:
        raise InvalidParameter(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            f"between 1 and {limit}."
        )
    offset = _offset(token, print_)
    page = items[offset : offset + max_results]
    following = offset + max_results
    if following >= len(items):
        return page, None
    return page, _token(following, print_)


def _offset(token: str | None, print_: str) -> int:
    """Where the page a token asks for starts (0 without one)."""
    if not token:
        return 0
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
        offset, bound = int(decoded["offset"]), decoded["query"]
    except (ValueError, KeyError, TypeError):
        raise InvalidParameter("Invalid page token, could not base64-decode") from None
    if bound != print_ or offset < 0:
        raise InvalidParameter("The page token belongs to another filter or order.")
    return offset


def _token(offset: int, print_: str) -> str:
    encoded = json.dumps({"offset": offset, "query": print_}).encode()
    return base64.b64encode(encoded).decode()


def _sorted(items: list[T], keys: list[OrderKey], value: Callable[[T, str], Any]) -> list[T]:
    """Order by ``keys`` (every sortable field is always set): one sort on a composite key
    when only numbers are descending, otherwise stable sorts from the last key to the first."""
    if all(not k.descending or k.ident.key != "name" for k in keys):
        fields = [(k.ident.key, k.descending) for k in keys]
        items.sort(
            key=lambda item: tuple(-value(item, f) if d else value(item, f) for f, d in fields)
        )
        return items
    for key in reversed(keys):
        items.sort(key=partial(_by, value, key.ident.key), reverse=key.descending)
    return items


def _by(value: Callable[[T, str], Any], field: str, item: T) -> Any:
    return value(item, field)


def _check_keys(keys: list[OrderKey], allowed: dict[str, str], what: str) -> list[OrderKey]:
    out = []
    for key in keys:
        name = allowed.get(key.ident.key.lower()) if key.ident.entity == "attribute" else None
        if name is None:
            raise InvalidParameter(
                f"Invalid order_by field '{key.ident.key}' for {what}: use one of "
                f"{', '.join(sorted(set(allowed.values())))}."
            )
        out.append(OrderKey(Ident("attribute", name), key.descending))
    return out


def _model_value(model: RegisteredModel, ident: Ident) -> str | float | None:
    if ident.entity == "tag":
        return model.tags.get(ident.key)
    if ident.entity == "attribute" and ident.key == "name":
        return model.name
    raise InvalidParameter(
        f"Invalid attribute key '{ident.key}' specified. Valid keys are '{{'name'}}'"
        if ident.entity == "attribute"
        else f"Invalid entity type '{ident.entity}' in a registered model filter: use "
        "attribute (name) or tags."
    )


_MODEL_ORDER = {
    "name": "name",
    "timestamp": "last_updated_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
    "creation_timestamp": "creation_timestamp",
}


def _comparisons(node: Node | None) -> list[Comparison]:
    if node is None:
        return []
    if isinstance(node, Comparison):
        return [node]
    return [c for item in node.items for c in _comparisons(item)]


def model_filter(filter_text: str | None) -> Node | None:
    """A registered-model filter, parsed and checked whole (not only where a model makes it
    evaluate a clause): names and tags compared with strings."""
    node = parse_filter(filter_text)
    for comparison in _comparisons(node):
        ident = comparison.ident
        if ident.entity not in ("attribute", "tag") or (
            ident.entity == "attribute" and ident.key != "name"
        ):
            _model_value(RegisteredModel("", 0, 0, ""), ident)  # raises the error
        if isinstance(comparison.value, float | int):
            raise InvalidParameter(
                f"Expected a quoted string, got {comparison.value!r} for '{ident.key}'."
            )
    return node


def find_models(
    db: Database, project_id: int, filter_text: str | None, order_by: list[str]
) -> list[RegisteredModel]:
    """Every model of the project the filter matches, in order."""
    node = model_filter(filter_text)
    keys = _check_keys(parse_order_by(order_by), _MODEL_ORDER, "registered models")
    keys.append(OrderKey(Ident("attribute", "name"), False))
    models = [
        m for m in registry.all_models(db, project_id) if matches(node, partial(_model_value, m))
    ]

    def value(model: RegisteredModel, key: str) -> Any:
        return {
            "name": model.name,
            "last_updated_timestamp": model.last_updated_time,
            "creation_timestamp": model.creation_time,
        }[key]

    return _sorted(models, keys, value)


def search_models(
    db: Database,
    project_id: int,
    filter_text: str | None,
    order_by: list[str],
    max_results: int,
    token: str | None,
) -> tuple[list[RegisteredModel], str | None]:
    ordered = find_models(db, project_id, filter_text, order_by)
    return _page(ordered, max_results, MAX_MODELS, token, fingerprint(filter_text, order_by))


def _version_value(version: ModelVersion, ident: Ident) -> str | float | None:
    if ident.entity == "tag":
        return version.tags.get(ident.key)
    if ident.entity != "attribute":
        raise InvalidParameter(
            f"Invalid entity type '{ident.entity}' in a model version filter: use attribute "
            "(name, run_id, source_path, version_number, semver) or tags."
        )
    key = ident.key.lower()
    attributes: dict[str, str | float | None] = {
        "name": version.name,
        "run_id": version.run_id or None,
        "source_path": version.source,
        "version_number": float(version.version),
        "semver": version.semver,
        "model_id": version.model_id or None,
    }
    if key not in attributes:
        raise InvalidParameter(
            f"Invalid attribute key '{ident.key}' specified. Valid keys are {sorted(attributes)}"
        )
    return attributes[key]


_VERSION_ORDER = {
    "name": "name",
    "version_number": "version_number",
    "creation_timestamp": "creation_timestamp",
    "timestamp": "last_updated_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
}


def _version_order_value(version: ModelVersion, key: str) -> Any:
    if key == "name":
        return version.name
    if key == "version_number":
        return version.version
    if key == "creation_timestamp":
        return version.creation_time
    return version.last_updated_time


def _only_name(node: Node | None) -> str | None:
    """The model name when the whole filter is ``name = '<name>'``."""
    if (
        isinstance(node, Comparison)
        and node.ident.entity == "attribute"
        and node.ident.key.lower() == "name"
        and node.op == "="
        and isinstance(node.value, str)
    ):
        return node.value
    return None


def search_versions(
    db: Database,
    project_id: int,
    filter_text: str | None,
    order_by: list[str],
    max_results: int,
    token: str | None,
) -> tuple[list[ModelVersion], str | None]:
    node = parse_filter(filter_text)
    keys = _check_keys(parse_order_by(order_by), _VERSION_ORDER, "model versions")
    if not keys:
        keys = [OrderKey(Ident("attribute", "last_updated_timestamp"), True)]
    keys += [
        OrderKey(Ident("attribute", "name"), False),
        OrderKey(Ident("attribute", "version_number"), True),
    ]
    name = _only_name(node)
    print_ = fingerprint(filter_text, order_by)
    if name is not None:  # the client's usual `name = '…'`: one model's page, from the database
        if not 1 <= max_results <= MAX_VERSIONS:
            _page([], max_results, MAX_VERSIONS, None, print_)  # raises the error
        offset = _offset(token, print_)
        order = [
            (k.ident.key, k.descending) for k in keys if k.ident.key != "name"
        ]  # one model: its name orders nothing
        page = registry.page_of_versions(db, project_id, name, order, max_results + 1, offset)
        if len(page) <= max_results:
            return page, None
        return page[:max_results], _token(offset + max_results, print_)
    candidates = registry.all_versions(db, project_id)
    found = [v for v in candidates if matches(node, partial(_version_value, v))]
    ordered = _sorted(found, keys, _version_order_value)
    return _page(ordered, max_results, MAX_VERSIONS, token, print_)
