"""``modelyard models …``: models, versions, promotion, aliases, and the transfers of a
version's files (pull, verify, upload; see ``commands/transfer.py``)."""

from __future__ import annotations

from typing import Any

import click

from modelyard_client import output
from modelyard_client.http import Http, seg
from modelyard_client.session import connection_options, http, json_option, project_option

PAGE = 1000


@click.group()
@connection_options
def models() -> None:
    """Models and their versions: list, promote, resolve semver ranges, move aliases, pull,
    verify and upload a version's files."""


def all_models(client: Http) -> list[dict[str, Any]]:
    """Every model, page after page (an offset or a page token leads to the next)."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": PAGE}
    while True:
        page = client.call("GET", "/models", query=query)
        found.extend(page.get("models", []))
        if page.get("next_offset") is not None:
            query = {"limit": PAGE, "offset": page["next_offset"]}
        elif page.get("next_page_token"):
            query = {"limit": PAGE, "page_token": page["next_page_token"]}
        else:
            return found


def describe(version: dict[str, Any], ref: str | None = None) -> str:
    """``churn 1.4.2 (version 7)``, with how ``ref`` led there."""
    text = f"{version['name']} {version.get('semver') or '-'} (version {version['version']})"
    return text + resolved_via(version, ref)


def resolved_via(version: dict[str, Any], ref: str | None) -> str:
    if ref is None or ref == str(version["version"]) or ref == version.get("semver"):
        return ""
    if ref in version.get("aliases", []):
        return f" via alias {ref}"
    return f" via {ref}"


def _aliases(version: dict[str, Any]) -> str:
    return " ".join(f"@{a}" for a in version.get("aliases", []))


@models.command("list")
@project_option
@json_option
@connection_options
def list_models(project: str | None, as_json: bool) -> None:
    """Every model with its latest version and aliases."""
    found = all_models(http(project))
    if as_json:
        output.emit_json({"models": found})
        return
    rows = []
    for model in found:
        latest = model.get("latest_version") or {}
        aliases = " ".join(f"@{a}={v}" for a, v in sorted(model.get("aliases", {}).items()))
        rows.append(
            [
                model["name"],
                latest.get("version"),
                latest.get("semver"),
                aliases,
                output.when(model.get("updated_at")),
            ]
        )
    output.table(["MODEL", "LATEST", "SEMVER", "ALIASES", "UPDATED"], rows)


@models.command("versions")
@click.argument("name")
@project_option
@json_option
@connection_options
def versions(name: str, project: str | None, as_json: bool) -> None:
    """The versions of a model, newest first, with where each came from."""
    found = http(project).call("GET", f"/models/{seg(name)}/versions")["versions"]
    if as_json:
        output.emit_json({"versions": found})
        return
    rows = [
        [
            v["version"],
            v.get("semver"),
            _aliases(v),
            v.get("status"),
            v.get("run_id"),
            v.get("logged_model_id"),
            output.when(v.get("created_at")),
        ]
        for v in found
    ]
    headers = ["VERSION", "SEMVER", "ALIASES", "STATUS", "CANDIDATE", "LOGGED MODEL", "CREATED"]
    output.table(headers, rows)


@models.command("resolve")
@click.argument("name")
@click.argument("ref")
@project_option
@json_option
@connection_options
def resolve(name: str, ref: str, project: str | None, as_json: bool) -> None:
    """The version REF names: a number, a semver (1.4.0), a range (^1.4, ~2.0) or an
    alias."""
    version = http(project).call("GET", f"/models/{seg(name)}/versions/{seg(ref)}")
    if as_json:
        output.emit_json(version)
        return
    click.echo(describe(version, ref) + (f"  {_aliases(version)}" if version["aliases"] else ""))


@models.command("promote")
@click.argument("name")
@click.option("--candidate", help="Run id of the candidate to promote.")
@click.option(
    "--path", default="model", show_default=True, help="Folder of the candidate's artifacts."
)
@click.option("--logged-model", help="Id (m-…) of the logged model to promote instead.")
@click.option("--semver", "semantic_version", help="The version's semver (default: a bump).")
@click.option(
    "--bump", type=click.Choice(["major", "minor", "patch"]), default="patch", show_default=True
)
@click.option("--description", default="")
@project_option
@json_option
@connection_options
def promote(
    name: str,
    candidate: str | None,
    path: str,
    logged_model: str | None,
    semantic_version: str | None,
    bump: str,
    description: str,
    project: str | None,
    as_json: bool,
) -> None:
    """Promote a candidate (or logged model) into a new version of NAME."""
    if bool(candidate) == bool(logged_model):
        raise click.UsageError("Give exactly one of --candidate or --logged-model.")
    payload = {
        "candidate": candidate,
        "path": path,
        "logged_model": logged_model,
        "semver": semantic_version,
        "bump": bump,
        "description": description,
    }
    body = {k: v for k, v in payload.items() if v is not None}
    version = http(project).call("POST", f"/models/{seg(name)}/versions", payload=body)
    if as_json:
        output.emit_json(version)
        return
    click.echo(f"promoted: {describe(version)}")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("ref")
@project_option
@json_option
@connection_options
def alias(name: str, alias: str, ref: str, project: str | None, as_json: bool) -> None:
    """Point ALIAS of NAME at the version REF names (the move is recorded)."""
    moved = http(project).call(
        "PUT", f"/models/{seg(name)}/aliases/{seg(alias)}", payload={"version": ref}
    )
    if as_json:
        output.emit_json(moved)
        return
    click.echo(
        f"@{moved['alias']} -> {name} {moved.get('semver') or '-'} (version {moved['version']})"
    )


@models.command("history")
@click.argument("name")
@click.argument("alias")
@project_option
@json_option
@connection_options
def history(name: str, alias: str, project: str | None, as_json: bool) -> None:
    """Every move of ALIAS: when, who, from which version to which."""
    found = http(project).call("GET", f"/models/{seg(name)}/aliases/{seg(alias)}/history")
    if as_json:
        output.emit_json(found)
        return
    rows = [
        [output.when(e["at"]), e.get("actor"), e.get("from_version"), e.get("to_version")]
        for e in found["events"]
    ]
    output.table(["WHEN (UTC)", "BY", "FROM", "TO"], rows)


from modelyard_client.commands import transfer  # noqa: E402 - registers on the group above

transfer.register(models)
