"""MLflow's artifact routes: the ``mlflow-artifacts`` proxy, multipart uploads through presigned
URLs, presigned downloads, ``artifacts/list`` and ``get-artifact``. Bytes are streamed both ways;
every path is checked by ``services.paths`` before anything is looked up."""

from __future__ import annotations

import mimetypes
import posixpath
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.blobs import StoredBlob
from modelyard.errors import BadRequest, InvalidParameter, ModelyardError, NotFound, NotSupported
from modelyard.mlflow_api.wire import Context, Message, call, failure, respond
from modelyard.services import artifacts, packages, registry
from modelyard.services.artifacts import Target
from modelyard.services.entities import now_ms
from modelyard.services.paths import join, safe_path
from modelyard.web import routing as _routing  # noqa: F401 - registers {path:anypath}
from modelyard.web.media import served_type, stored_type
from modelyard.web.transfer import BlobResponse, store_stream

ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
UI_PREFIX = "/ajax-api/2.0/mlflow"
STORED = "mlflow-artifacts:/"
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"
MAX_PARTS = 10_000
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")

Page = Callable[[Request], Awaitable[Response]]


def media_type_of(request: Request, path: str) -> str:
    """The declared media type of an upload to the native API (MLflow's routes record the
    type of the file's name, see ``web.media``)."""
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if _MEDIA_TYPE.match(declared) and len(declared) <= 255:
        return declared
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def download_headers(path: str, sha256: str) -> dict[str, str]:
    name = posixpath.basename(path)
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return {
        "content-disposition": f'attachment; filename="{ascii_name}"',
        "x-content-type-options": "nosniff",
        "etag": f'"{sha256}"',
        "accept-ranges": "bytes",
        "cache-control": "private, max-age=0",
    }


def _guarded(page: Callable[[Request, Context], Awaitable[Response]], context_of: Any) -> Page:
    async def route(request: Request) -> Response:
        try:
            return await page(request, context_of(request))
        except ModelyardError as exc:
            return failure(exc)

    return route


async def upload(request: Request, ctx: Context) -> Response:
    target = await call(ctx, artifacts.locate_for_write, ctx.db, ctx.project_id, _path(request))
    assert target.package is not None
    blob = await store_stream(ctx.store, request.stream())
    await _record(ctx, target, target.path, blob, stored_type(target.path))
    return respond({})


async def _record(ctx: Context, target: Target, path: str, blob: StoredBlob, media: str) -> None:
    assert target.package is not None
    try:
        _file, redundant = await call(
            ctx, packages.add_file, ctx.db, target.package.id, path, blob, media
        )
    except BaseException:
        await call(ctx, ctx.store.delete, blob.location)
        raise
    if redundant is not None:
        await call(ctx, ctx.store.delete, redundant)


def _path(request: Request) -> str:
    return str(request.path_params.get("path", ""))


def _missing(path: str) -> NotFound:
    return NotFound(f"No such artifact: '{path[:500]}'")


async def _file_of(ctx: Context, raw: str) -> packages.PackageFile:
    target = await call(ctx, artifacts.locate, ctx.db, ctx.project_id, raw, False)
    if target is None or target.package is None or not target.path:
        raise _missing(raw)
    found = await call(ctx, packages.get_file, ctx.db, target.package.id, target.path)
    if found is None:
        raise _missing(raw)
    return found


def _whole_file(ctx: Context, found: packages.PackageFile) -> Response:
    return BlobResponse(
        ctx.store,
        found.location,
        0,
        found.size,
        headers=download_headers(found.path, found.sha256),
        media_type=served_type(found.path),
    )


async def download(request: Request, ctx: Context) -> Response:
    return _whole_file(ctx, await _file_of(ctx, _path(request)))


async def list_files(request: Request, ctx: Context) -> Response:
    raw = request.query_params.get("path", "")
    target = await call(ctx, artifacts.locate, ctx.db, ctx.project_id, raw)
    if target is None or target.package is None:
        return respond({})
    entries = await call(ctx, packages.list_folder, ctx.db, target.package.id, target.path)
    if not entries:
        return respond({})
    return respond({"files": [entry_json(e.name, e.is_dir, e.size) for e in entries]})


def entry_json(path: str, is_dir: bool, size: int | None) -> dict[str, Any]:
    """One listed file or folder, as MLflow's FileInfo."""
    out: dict[str, Any] = {"path": path, "is_dir": is_dir}
    if size is not None:
        out["file_size"] = size
    return out


async def delete(request: Request, ctx: Context) -> Response:
    target = await call(ctx, artifacts.locate, ctx.db, ctx.project_id, _path(request))
    if target is not None and target.package is not None:
        await call(ctx, packages.delete_files, ctx.db, target.package.id, target.path)
    return respond({})


async def _multipart_target(request: Request, ctx: Context) -> tuple[Target, str, Message]:
    safe_path(_path(request))
    if not ctx.store.presigned:
        raise NotSupported(MULTIPART_UNSUPPORTED)
    message = await Message.read(request)
    name = posixpath.basename(message.required("path"))
    folder = _path(request)
    target = await call(ctx, artifacts.locate_for_write, ctx.db, ctx.project_id, join(folder, name))
    return target, safe_path(target.path), message


async def multipart_create(request: Request, ctx: Context) -> Response:
    target, path, message = await _multipart_target(request, ctx)
    assert target.package is not None
    parts = message.int64("num_parts", required=True) or 0
    if not 1 <= parts <= MAX_PARTS:
        raise InvalidParameter(f"num_parts must be between 1 and {MAX_PARTS}, got {parts}.")
    location, storage_id = await call(ctx, ctx.store.start_multipart)
    upload_id = uuid.uuid4().hex
    await call(
        ctx,
        packages.start_upload,
        ctx.db,
        packages.Upload(upload_id, target.package.id, path, location, storage_id, now_ms()),
    )
    credentials = [
        {
            "url": await call(ctx, ctx.store.presign_part, location, storage_id, n),
            "part_number": n,
            "headers": {},
        }
        for n in range(1, parts + 1)
    ]
    return respond({"upload_id": upload_id, "credentials": credentials})


async def multipart_complete(request: Request, ctx: Context) -> Response:
    target, path, message = await _multipart_target(request, ctx)
    assert target.package is not None
    pending = await call(
        ctx, packages.get_upload, ctx.db, message.required("upload_id"), target.package.id, path
    )
    parts: list[tuple[int, str]] = []
    for item in message.objects("parts"):
        number, etag = item.get("part_number"), item.get("etag")
        if not isinstance(number, int | str) or not str(number).isdigit() or not etag:
            raise InvalidParameter("Each part needs a part_number and an etag.")
        parts.append((int(number), str(etag)))
    if not parts:
        raise InvalidParameter("Missing value for required parameter 'parts'.")
    store = ctx.store
    await call(ctx, store.complete_multipart, pending.location, pending.storage_upload_id, parts)
    sha256, size = await call(ctx, store.digest, pending.location)
    blob = StoredBlob(sha256, size, pending.location)
    await _record(ctx, target, path, blob, stored_type(path))
    await call(ctx, packages.finish_upload, ctx.db, pending.id)
    return respond({})


async def multipart_abort(request: Request, ctx: Context) -> Response:
    target, path, message = await _multipart_target(request, ctx)
    assert target.package is not None
    pending = await call(
        ctx, packages.get_upload, ctx.db, message.required("upload_id"), target.package.id, path
    )
    await call(ctx, ctx.store.abort_multipart, pending.location, pending.storage_upload_id)
    await call(ctx, packages.finish_upload, ctx.db, pending.id)
    return respond({})


async def presigned(request: Request, ctx: Context) -> Response:
    safe_path(_path(request))
    if not ctx.store.presigned:
        raise NotSupported("Presigned downloads are not supported by this server's blob store.")
    found = await _file_of(ctx, _path(request))
    url = await call(ctx, ctx.store.presign_get, found.location)
    return respond({"url": url, "headers": {}, "file_size": found.size})


async def run_artifacts_list(request: Request, ctx: Context) -> Response:
    message = await Message.read(request)
    safe_path(message.string("path") or "", allow_root=True)
    run_id = message.required("run_id", alias="run_uuid")
    target = await call(
        ctx, artifacts.run_target, ctx.db, ctx.project_id, run_id, message.string("path") or ""
    )
    out: dict[str, Any] = {"root_uri": target.artifact_uri}
    if target.package is not None:
        entries = await call(ctx, packages.list_folder, ctx.db, target.package.id, target.path)
        out["files"] = [entry_json(join(target.path, e.name), e.is_dir, e.size) for e in entries]
    return respond(out)


async def get_artifact(request: Request, ctx: Context) -> Response:
    message = await Message.read(request)
    raw = message.required("path")
    safe_path(raw)
    run_id = message.required("run_id", alias="run_uuid")
    target = await call(ctx, artifacts.run_target, ctx.db, ctx.project_id, run_id, raw)
    return _whole_file(ctx, await _file_in(ctx, target, raw))


# The web UI's routes -------------------------------------------------------------------------

MAX_UI_UPLOAD = 10 * 1024 * 1024


async def upload_artifact(request: Request, ctx: Context) -> Response:
    """MLflow's UI upload: ``?run_uuid=&path=`` and the file as the body (at most 10 MB)."""
    run_id = request.query_params.get("run_uuid")
    if not run_id:
        raise InvalidParameter("Request must specify run_uuid.")
    raw = request.query_params.get("path")
    if not raw:
        raise InvalidParameter("Request must specify path.")
    safe_path(raw)
    body = await _small_body(request, MAX_UI_UPLOAD)
    if not body:
        raise InvalidParameter("Request must specify data.")
    target = await call(ctx, artifacts.run_target_for_write, ctx.db, ctx.project_id, run_id, raw)
    blob = await store_stream(ctx.store, _once(body))
    await _record(ctx, target, target.path, blob, stored_type(target.path))
    return respond({})


async def _small_body(request: Request, limit: int) -> bytes:
    too_large = InvalidParameter("Artifact size is too large. Max size is 10MB.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def logged_model_file(request: Request, ctx: Context) -> Response:
    """One file of a logged model, ``?artifact_file_path=`` inside its artifacts."""
    raw = request.query_params.get("artifact_file_path")
    if not raw:
        raise BadRequest('Request must include the "artifact_file_path" query parameter.')
    safe_path(raw)
    model_id = str(request.path_params["model_id"])
    target = await call(ctx, artifacts.model_target, ctx.db, ctx.project_id, model_id, raw)
    return _whole_file(ctx, await _file_in(ctx, target, raw))


async def model_version_artifact(request: Request, ctx: Context) -> Response:
    """One file of a model version, ``?name=&version=&path=``: the files it serves."""
    message = await Message.read(request)
    raw = message.required("path")
    safe_path(raw)
    uri = await call(
        ctx,
        registry.download_uri,
        ctx.db,
        ctx.project_id,
        message.string("name"),
        message.string("version"),
    )
    if not uri.startswith(STORED):
        raise _missing(raw)
    return _whole_file(ctx, await _file_of(ctx, join(uri.removeprefix(STORED), raw)))


async def _file_in(ctx: Context, target: Target, raw: str) -> packages.PackageFile:
    found = None
    if target.package is not None and target.path:
        found = await call(ctx, packages.get_file, ctx.db, target.package.id, target.path)
    if found is None:
        raise _missing(raw)
    return found


def routes(context_of: Callable[[Request], Context]) -> list[BaseRoute]:
    table: list[tuple[str, str, Callable[[Request, Context], Awaitable[Response]]]] = [
        ("/artifacts/{path:anypath}", "PUT", upload),
        ("/artifacts/{path:anypath}", "GET", download),
        ("/artifacts/{path:anypath}", "DELETE", delete),
        ("/artifacts", "GET", list_files),
        ("/mpu/create/{path:anypath}", "POST", multipart_create),
        ("/mpu/complete/{path:anypath}", "POST", multipart_complete),
        ("/mpu/abort/{path:anypath}", "POST", multipart_abort),
        ("/presigned/{path:anypath}", "GET", presigned),
    ]
    out: list[BaseRoute] = []
    for suffix, method, page in table:
        wrapped = _guarded(page, context_of)
        out.extend(Route(p + suffix, wrapped, methods=[method]) for p in ARTIFACT_PREFIXES)
    listing = _guarded(run_artifacts_list, context_of)
    fetch = _guarded(get_artifact, context_of)
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        out.append(Route(prefix + "/artifacts/list", listing, methods=["GET"]))
        out.append(Route(prefix + "/get-artifact", fetch, methods=["GET"]))
    out.append(Route("/get-artifact", fetch, methods=["GET"]))
    out.append(
        Route(
            "/model-versions/get-artifact",
            _guarded(model_version_artifact, context_of),
            methods=["GET"],
        )
    )
    out.append(
        Route(
            UI_PREFIX + "/upload-artifact", _guarded(upload_artifact, context_of), methods=["POST"]
        )
    )
    out.append(
        Route(
            UI_PREFIX + "/logged-models/{model_id}/artifacts/files",
            _guarded(logged_model_file, context_of),
            methods=["GET"],
        )
    )
    return out
