"""Packages through the native API: list, upload, download, archive, publish and delete.

Names, versions and file paths are checked by their declared types before anything is looked
up or written (and again by the services). Bytes are streamed both ways.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.responses import Response

from modelyard.api import archive
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
from modelyard.api.fields import FilePath, Millis, PackageName, PackageVersion, Sha256
from modelyard.api.wire import error, respond
from modelyard.blobs import StoredBlob
from modelyard.errors import Conflict, NotFound
from modelyard.mlflow_api.artifacts import download_headers, media_type_of
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import packages
from modelyard.services.packages import Package as Stored
from modelyard.services.packages import PackageFile as StoredFile
from modelyard.web.media import served_type
from modelyard.web.transfer import BlobResponse, parse_range, store_stream

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"
PACKAGE = "/packages/{name}/{version}"
FILE = PACKAGE + "/files/{path:anypath}"


# Shapes -----------------------------------------------------------------------------------------


class Package(Out):
    name: str
    version: str
    kind: Literal["generic", "candidate", "logged_model", "model_version"] = Field(
        description="generic: made through this API; candidate: a candidate's files, which go "
        "with it; logged_model: an MLflow logged model's files, named by its id; "
        "model_version: a model version's files."
    )
    status: Literal["open", "published"] = Field(
        description="An open package's files may change; a published one is frozen."
    )
    created_at: Millis
    published_at: Millis | None = Field(description="null while the package is open.")
    file_count: int = Field(ge=0)
    size: int = Field(ge=0, description="Bytes.")


class PackageFile(Out):
    path: str = Field(description="Relative path inside the package, '/' between folders.")
    size: int = Field(ge=0)
    sha256: Sha256
    media_type: str = Field(
        description="The Content-Type the file was uploaded with (or guessed from its name)."
    )
    created_at: Millis


class PackageWithFiles(Package):
    files: list[PackageFile]


class PackageList(Out):
    packages: list[Package]


class FileList(Out):
    files: list[PackageFile]


def package_json(package: Stored, file_count: int, size: int) -> dict[str, Any]:
    return {
        "name": package.name,
        "version": package.version,
        "kind": package.kind,
        "status": package.status,
        "created_at": package.created_at,
        "published_at": package.published_at,
        "file_count": file_count,
        "size": size,
    }


def file_json(file: StoredFile) -> dict[str, Any]:
    return {
        "path": file.path,
        "size": file.size,
        "sha256": file.sha256,
        "media_type": file.media_type,
        "created_at": file.created_at,
    }


def _with_files(package: Stored, listed: list[StoredFile]) -> dict[str, Any]:
    return package_json(package, len(listed), sum(f.size for f in listed))


# Parameters -------------------------------------------------------------------------------------


class Listing(Input):
    name: Annotated[str | None, QUERY, Field(description="Only the versions of this package.")] = (
        None
    )
    limit: Annotated[int, QUERY, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    offset: Annotated[int, QUERY, Field(ge=0, le=2**62)] = 0


class PackageRef(Input):
    name: Annotated[PackageName, PATH]
    version: Annotated[PackageVersion, PATH]


class FileRef(PackageRef):
    path: Annotated[FilePath, PATH]


class Upload(FileRef):
    checksum: Annotated[
        Sha256 | None,
        header("X-Checksum-Sha256"),
        Field(description="The body's SHA-256; on a mismatch nothing is stored (400)."),
    ] = None
    sha256: Annotated[
        Sha256 | None,
        QUERY,
        Field(description="The same as X-Checksum-Sha256 (the header wins)."),
    ] = None


RANGE_RULE = (
    "One byte range: bytes=<first>-<last>, bytes=<first>- or bytes=-<suffix length>. Other "
    "forms get the whole file."
)
IF_RANGE_RULE = "An ETag: the Range applies only while the file still has it."
IF_NONE_MATCH_RULE = "ETags (or *) the client holds; a match answers 304."


class Download(FileRef):
    range: Annotated[str | None, header("Range"), Field(description=RANGE_RULE)] = None
    if_range: Annotated[str | None, header("If-Range"), Field(description=IF_RANGE_RULE)] = None
    if_none_match: Annotated[
        str | None, header("If-None-Match"), Field(description=IF_NONE_MATCH_RULE)
    ] = None


_DOWNLOAD_HEADERS = {
    "ETag": "ETag",
    "Content-Disposition": "ContentDisposition",
    "Accept-Ranges": "AcceptRanges",
    "X-Content-Type-Options": "ContentTypeOptions",
    "Content-Length": "ContentLength",
}
_NO_PACKAGE = {404: "No such package version."}
_NO_FILE = {404: "No such package version or file."}
_TO_PACKAGE = {
    "name": "$request.path.name",
    "version": "$request.path.version",
}
_TO_FILE = {**_TO_PACKAGE, "path": "$request.path.path"}


async def _package(ctx: Context, ref: PackageRef) -> Stored:
    return await call(ctx, packages.get, ctx.db, ctx.project_id, ref.name, ref.version)


def _no_file(package: Stored, path: str) -> NotFound:
    return NotFound(
        f"No file '{path[:500]}' in package '{package.name}' version '{package.version}'."
    )


# Pages ------------------------------------------------------------------------------------------


@endpoint(
    "GET",
    "/packages",
    "listPackages",
    "List packages, newest first",
    params=Listing,
    ok=Reply(
        200,
        "The packages.",
        PackageList,
        links={
            "first": Link(
                "getPackage",
                {
                    "name": "$response.body#/packages/0/name",
                    "version": "$response.body#/packages/0/version",
                },
            )
        },
    ),
)
async def list_packages(args: Args[Listing, NoBody]) -> Response:
    ctx, query = args.ctx, args.params
    listing = partial(
        packages.list_packages, name=query.name or None, limit=query.limit, offset=query.offset
    )
    found = await call(ctx, listing, ctx.db, ctx.project_id)
    return respond({"packages": [package_json(p, count, size) for p, count, size in found]})


@endpoint(
    "GET",
    PACKAGE,
    "getPackage",
    "A package version and its files",
    params=PackageRef,
    ok=Reply(200, "The package and its files.", PackageWithFiles),
    errors=_NO_PACKAGE,
)
async def get_package(args: Args[PackageRef, NoBody]) -> Response:
    ctx = args.ctx
    package = await _package(ctx, args.params)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond({**_with_files(package, listed), "files": [file_json(f) for f in listed]})


@endpoint(
    "GET",
    PACKAGE + "/files",
    "listFiles",
    "Every file of a package version, by path",
    params=PackageRef,
    ok=Reply(200, "The files.", FileList),
    errors=_NO_PACKAGE,
)
async def list_files(args: Args[PackageRef, NoBody]) -> Response:
    ctx = args.ctx
    package = await _package(ctx, args.params)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond({"files": [file_json(f) for f in listed]})


@endpoint(
    "PUT",
    FILE,
    "uploadFile",
    "Upload a file",
    description="The request body becomes the file at the path, replacing any file there. The "
    "package version is created (open, kind generic) when it does not exist. The request's "
    "Content-Type is kept as the file's media type.",
    params=Upload,
    raw_body="application/octet-stream",
    ok=Reply(
        201,
        "The stored file.",
        PackageFile,
        links={
            "download": Link("downloadFile", _TO_FILE),
            "delete": Link("deleteFile", _TO_FILE),
            "package": Link("getPackage", _TO_PACKAGE),
            "files": Link("listFiles", _TO_PACKAGE),
            "archive": Link("downloadArchive", _TO_PACKAGE),
            "publish": Link("publishPackage", _TO_PACKAGE),
            "deletePackage": Link("deletePackage", _TO_PACKAGE),
        },
    ),
    errors={
        400: "An invalid name, version, path or checksum, or a body whose SHA-256 is not the "
        "one given (nothing is stored).",
        408: "The body stalled for longer than the server waits (nothing is stored).",
        409: "The package version is published, or the path clashes with a file or folder, or "
        "the name is one the server keeps for its own packages (a run id, a logged model id, "
        "model-<key>).",
        413: "The body is larger than the server accepts, or would take the project over its "
        "storage quota (nothing is stored).",
    },
)
async def upload(args: Args[Upload, NoBody]) -> Response:
    ctx, ref, request = args.ctx, args.params, args.request
    expected = ref.checksum or ref.sha256
    await call(ctx, packages.check_writable, ctx.db, ctx.project_id, ref.name, ref.version)
    blob = await store_stream(ctx.store, request.stream())
    if expected is not None and blob.sha256 != expected:
        await call(ctx, ctx.store.delete, blob.location)
        raise packages.digest_mismatch(ref.path, expected, blob)
    identity = (ref.name, ref.version)
    file = await _record(ctx, identity, ref.path, blob, media_type_of(request, ref.path))
    return respond(file_json(file), 201)


async def _record(
    ctx: Context, identity: tuple[str, str], path: str, blob: StoredBlob, media: str
) -> StoredFile:
    """The file recorded, its package created with it when new (no empty package is left
    behind by an upload that fails)."""
    try:
        file, redundant = await call(
            ctx, packages.store_file, ctx.db, ctx.project_id, *identity, path, blob, media
        )
    except BaseException:
        await call(ctx, ctx.store.delete, blob.location)
        raise
    if redundant is not None:
        await call(ctx, ctx.store.delete, redundant)
    return file


DOWNLOAD_REPLIES = (
    Reply(
        200,
        "The file. Its Content-Type is the file's media type, except that HTML, SVG, XML and "
        "script types are served as application/octet-stream.",
        media="*/*",
        headers=_DOWNLOAD_HEADERS,
    ),
    Reply(
        206,
        "The requested byte range of the file.",
        media="*/*",
        headers={**_DOWNLOAD_HEADERS, "Content-Range": "ContentRange"},
    ),
    Reply(
        304,
        "If-None-Match names the file's ETag: the client's copy is current.",
        media=None,
        headers={"ETag": "ETag"},
    ),
)


@endpoint(
    "GET",
    FILE,
    "downloadFile",
    "Download a file, or a byte range of it",
    params=Download,
    head=True,
    ok=DOWNLOAD_REPLIES,
    errors={**_NO_FILE, 416: "The Range cannot be satisfied."},
)
async def download(args: Args[Download, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    package = await _package(ctx, ref)
    found = await call(ctx, packages.get_file, ctx.db, package.id, ref.path)
    if found is None:
        raise _no_file(package, ref.path)
    return serve_file(ctx, found, ref.range, ref.if_range, ref.if_none_match)


def serve_file(
    ctx: Context,
    found: StoredFile,
    wanted: str | None,
    if_range: str | None,
    if_none_match: str | None,
) -> Response:
    """A file's bytes: whole, a range (``Range``, honouring ``If-Range``) or 304 when the
    client holds them (``If-None-Match``); the ETag is the file's sha256."""
    headers = download_headers(found.path, found.sha256)
    if _matches(if_none_match, found.sha256):
        return Response(status_code=304, headers=headers)
    if wanted and if_range is not None and if_range.strip() != headers["etag"]:
        wanted = None  # the client's copy is stale: send the whole file
    try:
        span = parse_range(wanted, found.size)
    except ValueError:
        return error(
            RANGE_NOT_SATISFIABLE,
            f"Range {wanted!s:.100} cannot be satisfied by a file of {found.size} bytes.",
            416,
            {**headers, "content-range": f"bytes */{found.size}"},
        )
    media = served_type(found.path)
    if span is None:
        return BlobResponse(
            ctx.store, found.location, 0, found.size, headers=headers, media_type=media
        )
    start, end = span
    headers["content-range"] = f"bytes {start}-{end - 1}/{found.size}"
    return BlobResponse(
        ctx.store, found.location, start, end, status_code=206, headers=headers, media_type=media
    )


def _matches(if_none_match: str | None, sha256: str) -> bool:
    if not if_none_match:
        return False
    for item in if_none_match.split(","):
        tag = item.strip()
        if tag == "*" or tag.removeprefix("W/") == f'"{sha256}"':
            return True
    return False


@endpoint(
    "DELETE",
    FILE,
    "deleteFile",
    "Delete a file, or every file under a folder",
    params=FileRef,
    ok=Reply(204, "Deleted.", media=None),
    errors={**_NO_FILE, 409: "The package version is published."},
)
async def delete_file(args: Args[FileRef, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    package = await _package(ctx, ref)
    deleted = await call(ctx, packages.delete_files, ctx.db, package.id, ref.path)
    if deleted == 0:
        raise _no_file(package, ref.path)
    return Response(status_code=204)


@endpoint(
    "GET",
    PACKAGE + "/archive",
    "downloadArchive",
    "The whole version as one tar archive",
    params=PackageRef,
    head=True,
    ok=Reply(
        200,
        "A tar archive (POSIX pax) of every file of the version under the folder "
        "<name>-<version>/, led by <name>-<version>/SHA256SUMS, which lists '<sha256>  <path>' "
        "for each file. Its length is known up front.",
        media=archive.MEDIA_TYPE,
        headers={"Content-Disposition": "ContentDisposition", "Content-Length": "ContentLength"},
    ),
    errors=_NO_PACKAGE,
)
async def download_archive(args: Args[PackageRef, NoBody]) -> Response:
    package = await _package(args.ctx, args.params)
    return await package_archive(args.ctx, package, f"{package.name}-{package.version}")


async def package_archive(ctx: Context, package: Stored, root: str) -> Response:
    """The package's files as one tar under ``root/``, with a SHA256SUMS manifest first."""
    listed = await call(ctx, packages.files, ctx.db, package.id)
    manifest = "".join(f"{f.sha256}  {f.path}\n" for f in listed).encode()
    stamp = (package.published_at or package.created_at) // 1000
    members = [archive.inline_member(f"{root}/SHA256SUMS", manifest, stamp)]
    members.extend(
        archive.member(f"{root}/{f.path}", f.size, f.created_at // 1000, location=f.location)
        for f in listed
    )
    headers = {
        "content-disposition": f'attachment; filename="{root}.tar"',
        "x-content-type-options": "nosniff",
        "cache-control": "private, max-age=0",
    }
    return archive.TarResponse(ctx.store, members, headers=headers)


@endpoint(
    "POST",
    PACKAGE + "/publish",
    "publishPackage",
    "Publish (freeze) a package version",
    description="Its files can no longer change. Publishing twice is harmless.",
    params=PackageRef,
    ok=Reply(200, "The published package.", Package),
    errors={
        **_NO_PACKAGE,
        409: "The package holds a candidate's, logged model's or version's files.",
    },
)
async def publish(args: Args[PackageRef, NoBody]) -> Response:
    ctx = args.ctx
    package = await _package(ctx, args.params)
    published = await call(ctx, packages.publish, ctx.db, package)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond(_with_files(published, listed))


_OWNERS = {
    packages.CANDIDATE: "candidate",
    packages.LOGGED_MODEL: "logged model",
    packages.MODEL_VERSION: "model version",
}


@endpoint(
    "DELETE",
    PACKAGE,
    "deletePackage",
    "Delete a package version",
    description="Its files go; the version is never reused. A package that holds a candidate's, "
    "logged model's or model version's files goes with it and cannot be deleted here (409).",
    params=PackageRef,
    ok=Reply(204, "Deleted.", media=None),
    errors={**_NO_PACKAGE, 409: "The package belongs to a candidate, logged model or version."},
)
async def delete_package(args: Args[PackageRef, NoBody]) -> Response:
    ctx = args.ctx
    package = await _package(ctx, args.params)
    owner = _OWNERS.get(package.kind)
    if owner is not None:
        raise Conflict(
            f"Package '{package.name}' version '{package.version}' holds a {owner}'s files; "
            f"it goes with its {owner} and cannot be deleted on its own."
        )
    pending = await call(ctx, packages.delete_package, ctx.db, package)
    if ctx.store.presigned:
        for leftover in pending:
            await _abort(ctx, leftover)
    return Response(status_code=204)


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    list_packages,
    get_package,
    delete_package,
    list_files,
    upload,
    download,
    delete_file,
    download_archive,
    publish,
)


async def _abort(ctx: Context, upload: packages.Upload) -> None:
    try:
        await call(ctx, ctx.store.abort_multipart, upload.location, upload.storage_upload_id)
    except Exception:
        # The rows are gone already; garbage collection aborts what is left open here.
        log.warning("Could not abort the upload at %s", upload.location, exc_info=True)
