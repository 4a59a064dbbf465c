"""The native registry API under /api/v1/models: models with their cards, versions by number,
semver, range or alias, promotion of a candidate or logged model, alias moves and their
history, and a version's files as one archive with a checksum manifest."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator
from starlette.responses import Response

from modelyard.api.declare import (
    PATH,
    QUERY,
    Args,
    Endpoint,
    Input,
    Link,
    NoBody,
    Out,
    Reply,
    endpoint,
    header,
)
from modelyard.api.fields import (
    FOLDER_PATTERN,
    AliasName,
    Bump,
    FilePath,
    Millis,
    ModelName,
    Moment,
    PackageName,
    PackageVersion,
    RunId,
    Semver,
    Sha256,
    VersionRef,
)
from modelyard.api.packages import (
    DOWNLOAD_REPLIES,
    IF_NONE_MATCH_RULE,
    IF_RANGE_RULE,
    RANGE_RULE,
    PackageFile,
    file_json,
    package_archive,
    serve_file,
)
from modelyard.api.wire import respond
from modelyard.errors import NotFound
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import (
    aliases,
    packages,
    paths,
    promotion,
    registry,
    registry_search,
    uploads,
)
from modelyard.services.registry import ModelVersion as StoredVersion
from modelyard.services.registry import RegisteredModel as StoredModel
from modelyard.web.markdown import render

MODEL = "/models/{name}"
VERSION = MODEL + "/versions/{ref}"
ALIAS = MODEL + "/aliases/{alias}"
MAX_LIMIT = 1000

# Shapes -----------------------------------------------------------------------------------------


class ModelVersion(Out):
    name: str
    version: int = Field(ge=1, description="MLflow's version number.")
    semver: str | None
    status: str
    stage: str
    aliases: list[str]
    description: str
    source: str
    run_id: str | None
    logged_model_id: str | None
    tags: dict[str, str]
    created_at: Millis
    updated_at: Millis


class Model(Out):
    name: str
    aliases: dict[str, int] = Field(description="Alias → version number.")
    tags: dict[str, str]
    latest_version: ModelVersion | None
    created_at: Millis
    updated_at: Millis


class ModelCard(Out):
    markdown: str
    html: str = Field(description="The Markdown rendered with all input escaped.")


class ModelDetail(Model):
    card: ModelCard
    versions: list[ModelVersion] = Field(description="Newest first.")


class ModelList(Out):
    models: list[Model]
    next_offset: int | None = Field(description="The offset of the next page; null on the last.")


class VersionList(Out):
    versions: list[ModelVersion]


class VersionDetail(ModelVersion):
    lineage: dict[str, Any] = Field(
        description="Where the version came from: source, logged model, candidate, experiment, "
        "commit and CI tags."
    )
    files: list[PackageFile]


class AliasOut(Out):
    alias: str
    version: int
    semver: str | None


class AliasEvent(Out):
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: Millis


class AliasHistory(Out):
    alias: str
    events: list[AliasEvent] = Field(description="Oldest first.")
    at: int | None = Field(
        default=None,
        description="The time asked for (with ?at=), in milliseconds since the epoch (negative "
        "before 1970).",
    )
    version_at: int | None = Field(
        default=None, description="Where the alias pointed then (with ?at=); null: nowhere."
    )


def version_json(version: StoredVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "semver": version.semver,
        "status": version.status,
        "stage": version.current_stage,
        "aliases": version.aliases,
        "description": version.description,
        "source": version.source,
        "run_id": version.run_id or None,
        "logged_model_id": version.model_id or None,
        "tags": version.tags,
        "created_at": version.creation_time,
        "updated_at": version.last_updated_time,
    }


def model_json(model: StoredModel) -> dict[str, Any]:
    latest = max(model.latest_versions, key=lambda v: v.version, default=None)
    return {
        "name": model.name,
        "aliases": dict(model.aliases),
        "tags": model.tags,
        "latest_version": None if latest is None else version_json(latest),
        "created_at": model.creation_time,
        "updated_at": model.last_updated_time,
    }


# Requests ---------------------------------------------------------------------------------------

_ORDER_KEYS = "name|timestamp|last_updated_timestamp|creation_timestamp"


def _filter(text: str) -> str:
    registry_search.model_filter(text)
    return text


def _order(keys: list[str]) -> list[str]:
    """The sort keys without empty ones and without a second key on a field already sorted on
    (``timestamp`` is ``last_updated_timestamp``)."""
    seen: set[str] = set()
    out = []
    for key in keys:
        field = key.split(" ")[0].replace("last_updated_timestamp", "timestamp")
        if field and field not in seen:
            seen.add(field)
            out.append(key)
    return out


class ModelSearch(Input):
    filter: Annotated[
        str,
        QUERY,
        AfterValidator(_filter),
        Field(
            json_schema_extra={"format": "model-filter"},
            description="MLflow's filter language over name and tags, plus OR and parentheses: "
            "name = 'churn', name LIKE 'churn%', tags.team = 'ml' OR tags.stage IS NULL. "
            "Values are quoted strings. Empty: every model.",
        ),
    ] = ""
    order_by: Annotated[
        list[
            Annotated[
                str,
                Field(pattern=f"^(?:(?:{_ORDER_KEYS})(?: (?:ASC|DESC|asc|desc))?)?$"),
            ]
        ],
        QUERY,
        Field(
            default_factory=list,
            description="Sort keys, e.g. 'name DESC'; then by name. Empty keys, and keys on a "
            "field already sorted on, are ignored.",
        ),
    ]
    limit: Annotated[int, QUERY, Field(ge=1, le=MAX_LIMIT)] = 100
    offset: Annotated[int, QUERY, Field(ge=0, le=2**62)] = 0


class ModelRef(Input):
    name: Annotated[ModelName, PATH]


class VersionAt(ModelRef):
    ref: Annotated[VersionRef, PATH]


class AliasRef(ModelRef):
    alias: Annotated[AliasName, PATH]


class HistoryQuery(AliasRef):
    at: Annotated[Moment | None, QUERY] = None


class CardIn(Input):
    markdown: str = Field(description="The model card, in Markdown.")


class AnnouncedFile(Input):
    path: FilePath
    sha256: Sha256
    parts: int = Field(
        default=0,
        ge=0,
        le=uploads.MAX_PARTS,
        description="How many parts of a large file wait under .parts/<sha256>/ to be joined.",
    )


def _source(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "string"}}}


class Promotion(Input):
    """Exactly one source: a candidate's folder, a logged model, or an uploaded package."""

    model_config = Input.model_config | {
        "json_schema_extra": {
            "oneOf": [_source("candidate"), _source("logged_model"), _source("package")]
        }
    }

    candidate: RunId | None = None
    path: str = Field(
        default="model",
        pattern=FOLDER_PATTERN,
        max_length=paths.MAX_PATH_LENGTH,
        description="The folder of the candidate's files to promote ('' for all of them).",
    )
    logged_model: str | None = Field(
        default=None,
        pattern="^[A-Za-z0-9_-]{1,100}$",
        description="A logged model's id, m-<32 hex digits>.",
    )
    package: PackageName | None = Field(
        default=None, description="An uploaded package (made through the packages API)."
    )
    package_version: PackageVersion = "1"
    files: list[AnnouncedFile] = Field(
        default_factory=list,
        description="With package: the files the upload holds, each with its sha256.",
    )
    semver: Semver | None = None  # default: the latest one bumped
    bump: Bump = "patch"
    description: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> Promotion:
        given = [s for s in (self.candidate, self.logged_model, self.package) if s is not None]
        if len(given) != 1:
            raise ValueError("Promote exactly one of a candidate, a logged model or a package.")
        return self


class AliasIn(Input):
    version: Annotated[int, Field(ge=1, le=999_999_999)] | VersionRef = Field(
        description="The version: a number, semver, range or alias."
    )


# Pages ------------------------------------------------------------------------------------------

_NO_MODEL = {404: "No such model."}
_NO_VERSION = {404: "No such model, or no version matches."}
_TO_MODEL = {"name": "$request.path.name"}
_TO_ALIAS = {"name": "$request.path.name", "alias": "$request.path.alias"}


@endpoint(
    "GET",
    "/models",
    "listModels",
    "Search models (MLflow's filter language, plus OR)",
    params=ModelSearch,
    ok=Reply(
        200,
        "The models.",
        ModelList,
        links={
            "first": Link("getModel", {"name": "$response.body#/models/0/name"}),
            "versions": Link("listModelVersions", {"name": "$response.body#/models/0/name"}),
        },
    ),
)
async def list_models(args: Args[ModelSearch, NoBody]) -> Response:
    ctx, query = args.ctx, args.params
    order = _order(query.order_by)
    found = await call(
        ctx, registry_search.find_models, ctx.db, ctx.project_id, query.filter or None, order
    )
    page = found[query.offset : query.offset + query.limit]
    following = query.offset + query.limit
    return respond(
        {
            "models": [model_json(m) for m in page],
            "next_offset": following if following < len(found) else None,
        }
    )


@endpoint(
    "GET",
    MODEL,
    "getModel",
    "A model, its card and its versions",
    params=ModelRef,
    ok=Reply(200, "The model.", ModelDetail),
    errors=_NO_MODEL,
)
async def get_model(args: Args[ModelRef, NoBody]) -> Response:
    ctx = args.ctx
    model = await call(ctx, registry.get_model, ctx.db, ctx.project_id, args.params.name)
    versions = await call(ctx, _versions_of, ctx, model.name)
    return respond(
        {
            **model_json(model),
            "card": {"markdown": model.description, "html": render(model.description)},
            "versions": [version_json(v) for v in versions],
        }
    )


def _versions_of(ctx: Context, name: str) -> list[StoredVersion]:
    found = [v for v in registry.all_versions(ctx.db, ctx.project_id) if v.name == name]
    return sorted(found, key=lambda v: v.version, reverse=True)


@endpoint(
    "PUT",
    MODEL + "/card",
    "putModelCard",
    "Replace the model card (Markdown)",
    params=ModelRef,
    body=CardIn,
    ok=Reply(
        200,
        "The card, with its safe HTML.",
        ModelCard,
        links={"model": Link("getModel", _TO_MODEL)},
    ),
    errors=_NO_MODEL,
)
async def put_card(args: Args[ModelRef, CardIn]) -> Response:
    ctx = args.ctx
    model = await call(
        ctx, registry.update_model, ctx.db, ctx.project_id, args.params.name, args.body.markdown
    )
    return respond({"markdown": model.description, "html": render(model.description)})


@endpoint(
    "GET",
    MODEL + "/versions",
    "listModelVersions",
    "The model's versions, newest first",
    params=ModelRef,
    ok=Reply(200, "The versions.", VersionList),
    errors=_NO_MODEL,
)
async def list_versions(args: Args[ModelRef, NoBody]) -> Response:
    ctx = args.ctx
    model = await call(ctx, registry.get_model, ctx.db, ctx.project_id, args.params.name)
    versions = await call(ctx, _versions_of, ctx, model.name)
    return respond({"versions": [version_json(v) for v in versions]})


@endpoint(
    "POST",
    MODEL + "/versions",
    "promote",
    "Promote a candidate or logged model into a new version",
    description="Creates the model on first use. The semver is the one given or the latest "
    "bumped (patch by default). The version's files are the source's blobs, published "
    "(immutable).",
    params=ModelRef,
    body=Promotion,
    ok=Reply(
        201,
        "The new version.",
        ModelVersion,
        links={
            "version": Link(
                "getModelVersion", {"name": "$request.path.name", "ref": "$response.body#/version"}
            ),
            "versions": Link("listModelVersions", _TO_MODEL),
            "archive": Link(
                "downloadModelVersion",
                {"name": "$request.path.name", "ref": "$response.body#/version"},
            ),
            "alias": Link("setAlias", _TO_MODEL),
        },
    ),
    errors={
        400: "An invalid body.",
        404: "No such candidate, logged model or package.",
        409: "The semver exists already, the source has no files at that path, or the upload "
        "does not hold the announced files.",
    },
)
async def promote(args: Args[ModelRef, Promotion]) -> Response:
    client = args.request.headers.get("user-agent", "")
    version = await call(args.ctx, _promote, args.ctx, args.params.name, args.body, client)
    return respond(version_json(version), status=201)


def _promote(ctx: Context, name: str, body: Promotion, client: str) -> StoredVersion:
    if body.package is not None:
        staged = uploads.staging(ctx.db, ctx.project_id, body.package, body.package_version)
        for file in body.files:
            if file.parts:
                uploads.assemble(ctx.db, ctx.store, staged, file.path, file.sha256, file.parts)
        return promotion.promote_upload(
            ctx.db,
            ctx.project_id,
            name,
            package=body.package,
            package_version=body.package_version,
            files=[(file.path, file.sha256) for file in body.files],
            uploaded_by=ctx.actor,
            client=client,
            semantic_version=body.semver,
            bump=body.bump,
            description=body.description,
        )
    return promotion.promote(
        ctx.db,
        ctx.project_id,
        name,
        candidate=body.candidate,
        path=body.path,
        logged_model=body.logged_model,
        semantic_version=body.semver,
        bump=body.bump,
        description=body.description,
    )


def _resolved(ctx: Context, name: str, ref: str) -> tuple[StoredVersion, int | None]:
    """The version ``ref`` names and its package (None when it has no files)."""
    version = promotion.resolve_version(ctx.db, ctx.project_id, name, ref)
    package_id = promotion.version_package(ctx.db, ctx.project_id, version.name, version.version)
    return version, package_id


@endpoint(
    "GET",
    VERSION,
    "getModelVersion",
    "A version with its lineage and files (size, sha256)",
    params=VersionAt,
    ok=Reply(200, "The version.", VersionDetail),
    errors=_NO_VERSION,
)
async def get_version(args: Args[VersionAt, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    version, package_id = await call(ctx, _resolved, ctx, ref.name, ref.ref)
    lineage = await call(ctx, promotion.lineage, ctx.db, ctx.project_id, version)
    files = [] if package_id is None else await call(ctx, packages.files, ctx.db, package_id)
    return respond(
        {**version_json(version), "lineage": lineage, "files": [file_json(f) for f in files]}
    )


@endpoint(
    "GET",
    VERSION + "/archive",
    "downloadModelVersion",
    "The version's files as one tar with a SHA256SUMS manifest",
    params=VersionAt,
    head=True,
    ok=Reply(
        200,
        "A tar archive (POSIX pax) of the version's files under <name>-<semver>/, led by its "
        "SHA256SUMS.",
        media="application/x-tar",
        headers={"Content-Disposition": "ContentDisposition", "Content-Length": "ContentLength"},
    ),
    errors={404: "No such model or version, or the version has no files."},
)
async def version_archive(args: Args[VersionAt, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    version, package_id = await call(ctx, _resolved, ctx, ref.name, ref.ref)
    if package_id is None:
        raise NotFound(f"Version {version.version} of {version.name} has no files.")
    package = await call(ctx, packages.get_by_id, ctx.db, package_id)
    root = f"{version.name}-{version.semver or version.version}".replace(" ", "_")
    return await package_archive(ctx, package, root)


class VersionFileRef(VersionAt):
    path: Annotated[FilePath, PATH]
    range: Annotated[str | None, header("Range"), Field(description=RANGE_RULE)] = None
    if_range: Annotated[str | None, header("If-Range"), Field(description=IF_RANGE_RULE)] = None
    if_none_match: Annotated[
        str | None, header("If-None-Match"), Field(description=IF_NONE_MATCH_RULE)
    ] = None


@endpoint(
    "GET",
    VERSION + "/files/{path:anypath}",
    "downloadModelVersionFile",
    "One file of the version; ranged requests resume a download",
    description="The ETag is the file's sha256. Range (one range) answers 206 with "
    "Content-Range; If-Range with a stale ETag gets the whole file; If-None-Match with the "
    "current ETag answers 304.",
    params=VersionFileRef,
    head=True,
    ok=DOWNLOAD_REPLIES,
    errors={404: "No such model, version or file.", 416: "The Range cannot be satisfied."},
)
async def version_file(args: Args[VersionFileRef, NoBody]) -> Response:
    """One file of a version, with ranged requests: what ``modelyard models pull`` fetches."""
    ctx, ref = args.ctx, args.params
    version, package_id = await call(ctx, _resolved, ctx, ref.name, ref.ref)
    found = (
        None
        if package_id is None
        else await call(ctx, packages.get_file, ctx.db, package_id, ref.path)
    )
    if found is None:
        raise NotFound(
            f"No file '{ref.path[:500]}' in version {version.version} of {version.name}."
        )
    return serve_file(ctx, found, ref.range, ref.if_range, ref.if_none_match)


@endpoint(
    "PUT",
    ALIAS,
    "setAlias",
    "Point an alias at a version (the move is recorded)",
    params=AliasRef,
    body=AliasIn,
    ok=Reply(
        200,
        "Where the alias now points.",
        AliasOut,
        links={
            "history": Link("aliasHistory", _TO_ALIAS),
            "delete": Link("deleteAlias", _TO_ALIAS),
        },
    ),
    errors=_NO_VERSION,
)
async def set_alias(args: Args[AliasRef, AliasIn]) -> Response:
    ctx, ref = args.ctx, args.params
    wanted = str(args.body.version)
    version = await call(ctx, promotion.resolve_version, ctx.db, ctx.project_id, ref.name, wanted)
    await call(
        ctx,
        aliases.set_alias,
        ctx.db,
        ctx.project_id,
        ref.name,
        ref.alias,
        str(version.version),
        ctx.actor,
    )
    return respond({"alias": ref.alias, "version": version.version, "semver": version.semver})


@endpoint(
    "DELETE",
    ALIAS,
    "deleteAlias",
    "Remove an alias (recorded)",
    params=AliasRef,
    ok=Reply(204, "Removed.", media=None),
    errors={404: "No such model or alias."},
)
async def delete_alias(args: Args[AliasRef, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    await call(ctx, aliases.delete_alias, ctx.db, ctx.project_id, ref.name, ref.alias, ctx.actor)
    return Response(status_code=204)


@endpoint(
    "GET",
    ALIAS + "/history",
    "aliasHistory",
    "Every move of an alias; with ?at=, where it pointed at that time",
    params=HistoryQuery,
    ok=Reply(200, "The moves, oldest first.", AliasHistory),
    errors=_NO_MODEL,
)
async def alias_history(args: Args[HistoryQuery, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    events = await call(ctx, aliases.alias_history, ctx.db, ctx.project_id, ref.name, ref.alias)
    out: dict[str, Any] = {"alias": ref.alias, "events": events}
    if ref.at is not None:
        before = [e for e in events if e["at"] <= ref.at]
        out["at"] = ref.at
        out["version_at"] = before[-1]["to_version"] if before else None
    return respond(out)


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    list_models,
    get_model,
    put_card,
    list_versions,
    promote,
    get_version,
    version_archive,
    version_file,
    set_alias,
    delete_alias,
    alias_history,
)
