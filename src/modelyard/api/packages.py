"""Packages through the native API: list, upload, download, archive, publish and delete.

Names and versions are checked by ``packages.check_name`` and file paths by
``paths.safe_path`` before anything is looked up or written. Bytes are streamed both ways.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelyard.api import archive
from modelyard.api.wire import error, respond
from modelyard.blobs import StoredBlob
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.mlflow_api.artifacts import download_headers, media_type_of
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import packages
from modelyard.services.packages import Package, PackageFile
from modelyard.services.paths import safe_path
from modelyard.web.transfer import BlobResponse, parse_range, store_stream

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
CHECKSUM_HEADER = "x-checksum-sha256"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ACTIVE_MARKERS = ("html", "xml", "javascript", "ecmascript")
SAFE_MEDIA_TYPE = "application/octet-stream"
RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"


# JSON shapes ------------------------------------------------------------------------------------


def package_json(package: Package, file_count: int, size: int) -> dict[str, Any]:
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


def file_json(file: PackageFile) -> dict[str, Any]:
    return {
        "path": file.path,
        "size": file.size,
        "sha256": file.sha256,
        "media_type": file.media_type,
        "created_at": file.created_at,
    }


def _with_files(package: Package, listed: list[PackageFile]) -> dict[str, Any]:
    return package_json(package, len(listed), sum(f.size for f in listed))


# Request parts ----------------------------------------------------------------------------------


def _identity(request: Request) -> tuple[str, str]:
    name = str(request.path_params["name"])
    version = str(request.path_params["version"])
    packages.check_name(name, version)
    return name, version


def _file_path(request: Request) -> str:
    return safe_path(str(request.path_params.get("path", "")))


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidParameter(
            f"Invalid value {raw[:50]!r} for parameter '{name}': "
            f"expected an integer from {low} to {high}."
        )
    return int(raw)


def _expected_sha256(request: Request) -> str | None:
    raw = request.headers.get(CHECKSUM_HEADER)
    if raw is None:
        raw = request.query_params.get("sha256")
    if raw is None:
        return None
    if not _SHA256.match(raw):
        raise InvalidParameter(
            f"Invalid sha256 {raw[:100]!r}: expected 64 lowercase hexadecimal digits."
        )
    return raw


def served_media_type(stored: str) -> str:
    """The content type a download is served with: never one a browser would run or render
    as a page (HTML, SVG, XML, scripts); those are served as opaque bytes."""
    lowered = stored.lower()
    if any(marker in lowered for marker in _ACTIVE_MARKERS):
        return SAFE_MEDIA_TYPE
    return stored or SAFE_MEDIA_TYPE


async def _package(ctx: Context, request: Request) -> Package:
    name, version = _identity(request)
    return await call(ctx, packages.get, ctx.db, ctx.project_id, name, version)


def _ensure(ctx: Context, name: str, version: str) -> Package:
    with ctx.db.write() as conn:
        return packages.ensure(conn, ctx.project_id, name, version, kind=packages.GENERIC)


def _published(package: Package) -> Conflict:
    return Conflict(
        f"Package '{package.name}' version '{package.version}' is published; its files "
        "cannot change."
    )


def _no_file(package: Package, path: str) -> NotFound:
    return NotFound(
        f"No file '{path[:500]}' in package '{package.name}' version '{package.version}'."
    )


# Pages ------------------------------------------------------------------------------------------


async def list_packages(request: Request, ctx: Context) -> Response:
    name = request.query_params.get("name") or None
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 2**62)
    listing = partial(packages.list_packages, name=name, limit=limit, offset=offset)
    found = await call(ctx, listing, ctx.db, ctx.project_id)
    return respond({"packages": [package_json(p, count, size) for p, count, size in found]})


async def get_package(request: Request, ctx: Context) -> Response:
    package = await _package(ctx, request)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond({**_with_files(package, listed), "files": [file_json(f) for f in listed]})


async def list_files(request: Request, ctx: Context) -> Response:
    package = await _package(ctx, request)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond({"files": [file_json(f) for f in listed]})


async def upload(request: Request, ctx: Context) -> Response:
    name, version = _identity(request)
    path = _file_path(request)
    expected = _expected_sha256(request)
    package = await call(ctx, _ensure, ctx, name, version)
    if package.status == packages.PUBLISHED:
        raise _published(package)
    blob = await store_stream(ctx.store, request.stream())
    if expected is not None and blob.sha256 != expected:
        await call(ctx, ctx.store.delete, blob.location)
        raise packages.digest_mismatch(path, expected, blob)
    file = await _record(ctx, package, path, blob, media_type_of(request, path))
    return respond(file_json(file), 201)


async def _record(
    ctx: Context, package: Package, path: str, blob: StoredBlob, media: str
) -> PackageFile:
    try:
        file, redundant = await call(ctx, packages.add_file, ctx.db, package.id, path, blob, media)
    except BaseException:
        await call(ctx, ctx.store.delete, blob.location)
        raise
    if redundant is not None:
        await call(ctx, ctx.store.delete, redundant)
    return file


async def download(request: Request, ctx: Context) -> Response:
    path = _file_path(request)
    package = await _package(ctx, request)
    found = await call(ctx, packages.get_file, ctx.db, package.id, path)
    if found is None:
        raise _no_file(package, path)
    return serve_file(request, ctx, found)


def serve_file(request: Request, ctx: Context, found: PackageFile) -> Response:
    """A file's bytes: whole, a range (``Range``, honouring ``If-Range``) or 304 when the
    client holds them (``If-None-Match``); the ETag is the file's sha256."""
    headers = download_headers(found.path, found.sha256)
    if _matches(request.headers.get("if-none-match"), found.sha256):
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
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
    media = served_media_type(found.media_type)
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


async def delete_file(request: Request, ctx: Context) -> Response:
    path = _file_path(request)
    package = await _package(ctx, request)
    deleted = await call(ctx, packages.delete_files, ctx.db, package.id, path)
    if deleted == 0:
        raise _no_file(package, path)
    return Response(status_code=204)


async def download_archive(request: Request, ctx: Context) -> Response:
    package = await _package(ctx, request)
    return await package_archive(ctx, package, f"{package.name}-{package.version}")


async def package_archive(ctx: Context, package: Package, root: str) -> Response:
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


async def publish(request: Request, ctx: Context) -> Response:
    package = await _package(ctx, request)
    published = await call(ctx, packages.publish, ctx.db, package)
    listed = await call(ctx, packages.files, ctx.db, package.id)
    return respond(_with_files(published, listed))


async def delete_package(request: Request, ctx: Context) -> Response:
    package = await _package(ctx, request)
    if package.kind in (packages.CANDIDATE, packages.LOGGED_MODEL, packages.MODEL_VERSION):
        owner = {
            packages.CANDIDATE: "candidate",
            packages.LOGGED_MODEL: "logged model",
            packages.MODEL_VERSION: "model version",
        }[package.kind]
        raise Conflict(
            f"Package '{package.name}' version '{package.version}' holds a {owner}'s files; "
            f"it goes with its {owner} and cannot be deleted on its own."
        )
    pending = await call(ctx, packages.delete_package, ctx.db, package)
    if ctx.store.presigned:
        for leftover in pending:
            await _abort(ctx, leftover)
    return Response(status_code=204)


async def _abort(ctx: Context, upload: packages.Upload) -> None:
    try:
        await call(ctx, ctx.store.abort_multipart, upload.location, upload.storage_upload_id)
    except Exception:
        # The rows are gone already; garbage collection aborts what is left open here.
        log.warning("Could not abort the upload at %s", upload.location, exc_info=True)
