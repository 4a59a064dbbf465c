"""The ASGI application: ``create_app(settings)`` wires settings, storage and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from modelyard import __version__, api, mlflow_api, ui
from modelyard.auth.gate import (
    PRINCIPAL,
    PROJECT,
    SECURITY_HEADERS,
    Gate,
    allowed_hosts,
    error_body,
    gate_routes,
    is_native,
)
from modelyard.auth.roles import NOBODY
from modelyard.blobs import open_blob_store
from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.mlflow_api import webhooks as mlflow_webhooks
from modelyard.mlflow_api.wire import JSON, Context
from modelyard.services.outbox import Policy
from modelyard.settings import Settings
from modelyard.web import limits, login
from modelyard.web.limits import BodyLimits
from modelyard.webhooks.process import SenderProcess
from modelyard.webhooks.worker import WorkerSettings

logger = logging.getLogger("modelyard")


async def health(_request: Request) -> Response:
    return PlainTextResponse("OK")


async def version(_request: Request) -> Response:
    return PlainTextResponse(__version__)


def _error(request: Request, code: ErrorCode, message: str, status: int | None = None) -> Response:
    """An error in the format of the path's API family (native or MLflow)."""
    path = request.url.path
    if status is None:
        status = api.wire.status_of(code) if is_native(path) else code.http_status
    return Response(error_body(path, code, message), status_code=status, media_type=JSON)


async def not_found(request: Request, _exc: Exception) -> Response:
    return _error(
        request, ErrorCode.ENDPOINT_NOT_FOUND, f"No endpoint {request.method} {request.url.path}"
    )


async def wrong_method(request: Request, _exc: Exception) -> Response:
    """405, with every method the path answers in ``Allow`` (several routes may share it)."""
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path_regex.match(request.scope["path"]):
            allowed.update(route.methods or ())
    response = _error(
        request,
        ErrorCode.ENDPOINT_NOT_FOUND,
        f"Method {request.method} is not allowed on {request.url.path}",
        405,
    )
    response.headers["allow"] = ", ".join(sorted(allowed))
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return await not_found(request, exc)
    if status == 405:
        return await wrong_method(request, exc)
    return _error(request, ErrorCode.BAD_REQUEST, str(getattr(exc, "detail", exc)))


async def domain_error(request: Request, exc: Exception) -> Response:
    """A domain error raised while a response streams (handlers answer the others)."""
    assert isinstance(exc, ModelyardError)
    if exc.code.http_status >= 500:
        logger.error(
            "%s %s failed: %s", request.method, request.url.path, exc.message, exc_info=exc
        )
    return _error(request, exc.code, exc.message)


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    response = _error(request, ErrorCode.INTERNAL_ERROR, "Internal server error.")
    # Starlette answers this outside every middleware, the gate included: add its headers here
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    return response


def worker_settings(settings: Settings) -> WorkerSettings:
    hour_ms = 3600 * 1000
    return WorkerSettings(
        allow_private=settings.webhook_allow_private,
        senders=settings.webhook_senders,
        policy=Policy(
            retry_ms=int(settings.webhook_retry_hours * hour_ms),
            disable_after_ms=int(settings.webhook_disable_after_hours * hour_ms),
            retention_ms=int(settings.webhook_retention_days * 24 * hour_ms),
        ),
    )


def create_app(settings: Settings, *, database: Database | None = None) -> Starlette:
    """Build the application; the database schema is created or checked first."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = database or settings.database()
    ensure_schema(db)
    db.fresh_statistics()  # PostgreSQL after a restore or bulk load: analysed before serving
    store = open_blob_store(settings)
    store.check()
    default_context = Context(db=db, store=store, project_id=DEFAULT_PROJECT_ID)

    def context_of(request: Request) -> Context:
        scope = request.scope
        principal = scope.get(PRINCIPAL)
        project_id = scope.get(PROJECT)
        if principal is None or principal.anonymous:
            if project_id == DEFAULT_PROJECT_ID:
                return default_context
            principal = NOBODY
        client = scope.get("client")
        return Context(
            db=db,
            store=store,
            project_id=project_id if project_id is not None else DEFAULT_PROJECT_ID,
            principal=principal,
            address=client[0] if client else "",
        )

    worker = SenderProcess(db, worker_settings(settings))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        worker.start()
        yield
        worker.stop()
        db.dispose()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        *login.routes(db),
        *mlflow_api.routes(context_of),
        *mlflow_webhooks.routes(mlflow_api.PREFIXES, context_of, settings.webhook_allow_private),
        *api.routes(context_of),
        *ui.routes(context_of),
    ]
    app = Starlette(
        routes=gate_routes(routes, db),
        middleware=[
            # outermost: also closes connections whose body the gate refused unread
            Middleware(BodyLimits, db=db, **limits.middleware_options(settings)),
            Middleware(
                Gate,
                db=db,
                auth=settings.auth,
                hosts=allowed_hosts(settings.host, settings.host_names),
            ),
        ],
        exception_handlers={
            HTTPException: http_error,
            ModelyardError: domain_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.store = store
    return app
