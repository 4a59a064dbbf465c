"""The web UI: server-rendered pages over the same services as the APIs, under ``/ui`` (and
``/projects/<name>/ui`` for a project), with the home page at ``/`` and static files at
``/static``. Errors become an HTML page with the error's status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from modelyard.errors import ModelyardError, NotFound
from modelyard.mlflow_api.wire import Context
from modelyard.ui import pages
from modelyard.ui.render import error_page

Page = Callable[[Request, Context], Awaitable[Response]]
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"ui.css": "text/css", "ui.js": "text/javascript"}

#: (path, methods, page) of every page
ROUTES: list[tuple[str, tuple[str, ...], Page]] = [
    ("/", ("GET",), pages.home),
    ("/ui/experiments", ("GET",), pages.experiment_list),
]


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"No static file {name!r}.")
    return FileResponse(
        STATIC / name,
        media_type=STATIC_FILES[name],
        headers={"cache-control": "public, max-age=3600"},
    )


def _guarded(
    page: Page, context_of: Callable[[Request], Context]
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        context = context_of(request)
        try:
            return await page(request, context)
        except ModelyardError as exc:
            return error_page(request, exc)

    route.__name__ = page.__name__
    return route


def routes(context_of: Callable[[Request], Context]) -> list[Route]:
    out = [
        Route(path, _guarded(page, context_of), methods=list(methods))
        for path, methods, page in ROUTES
    ]
    out.append(Route("/static/{name}", static, methods=["GET"]))
    return out
