"""An experiment's chart view: a grid of one chart per chosen metric across the candidates the
table shows (its filter and order, up to 100 of them), each history cut down on the server."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, call
from modelyard.services.entities import Page, Run
from modelyard.ui import chartdata
from modelyard.ui.candidates import (
    PAGE_SIZE,
    _experiments,
    _search,
    read_query,
    resolve_columns,
)
from modelyard.ui.render import page, prefix
from modelyard.ui.runs import _labels

MAX_METRICS = 12
#: points per candidate in the SVG a browser without JavaScript gets
GRID_SVG_POINTS = 64  # more than charts.MARKED_POINTS: a line, no markers


async def experiment_charts(request: Request, ctx: Context) -> Response:
    query = read_query(request)
    chosen = await call(ctx, _experiments, ctx, query.experiment_ids)
    error = None
    found: Page[Run] = Page([], None)
    try:
        found = await call(ctx, _search, ctx, query, chosen, PAGE_SIZE, query.page_token)
    except InvalidParameter as exc:
        error = exc.message
    resolve_columns(query, found.items)
    keys = query.metrics[:MAX_METRICS]
    labelled = list(zip(_labels(found.items), found.items, strict=True))
    shown = await call(
        ctx,
        chartdata.load_charts,
        ctx.db,
        ctx.project_id,
        labelled,
        keys,
        chartdata.GRID_COLUMNS,
    )
    here = f"{prefix(request)}/ui/experiments/{query.experiment_ids[0]}"
    return page(
        request,
        "experiment_charts.html",
        status=400 if error else 200,
        experiments=chosen,
        query=query,
        error=error,
        count=len(found.items),
        charts=[(c.key, chartdata.svg(c, GRID_SVG_POINTS)) for c in shown],
        chart_data=chartdata.data_block(request, shown, chartdata.GRID_COLUMNS),
        table_url=f"{here}?{urlencode(query.pairs())}",
        here=f"{here}/charts",
        more=found.next_page_token is not None,
    )
