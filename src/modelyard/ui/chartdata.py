"""Metric histories for the interactive charts: the JSON a page embeds in a data block (read by
``static/charts.js``), the JSON route a zoomed chart asks for a closer look, and the SVG
drawn from the same points for browsers without JavaScript.

Histories are cut down on the server (``chart_data.chart_data``) to the lowest and highest
point of each pixel column, so a chart of a million steps carries a few thousand points and
still shows every spike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from modelyard.db.engine import Database
from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import chart_data
from modelyard.services.chart_data import ChartData
from modelyard.services.entities import Run
from modelyard.ui import charts
from modelyard.ui.render import prefix

#: pixel columns of a chart on a candidate or compare page, and in the grid of an experiment
PAGE_COLUMNS = 1000
GRID_COLUMNS = 300
#: points per series drawn in the SVG a browser without JavaScript gets
SVG_POINTS = 400


_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))


@dataclass(frozen=True, slots=True)
class Chart:
    """One metric's chart: its data and the candidates' labels and colours."""

    data: ChartData
    labels: dict[str, str]
    colours: dict[str, str]
    starts: dict[str, int]

    @property
    def key(self) -> str:
        return self.data.key

    @property
    def worth_drawing(self) -> bool:
        return any(len(s.values) > 1 for s in self.data.series)


def load_charts(
    db: Database,
    project_id: int,
    runs: Sequence[tuple[str, Run]],
    keys: Sequence[str],
    columns: int,
) -> list[Chart]:
    """A chart per key over the labelled candidates; colours follow the candidates' order."""
    ids = [run.info.run_id for _, run in runs]
    labels = {run.info.run_id: label for label, run in runs}
    colours = {run_id: charts.colour(i) for i, run_id in enumerate(ids)}
    starts = {run.info.run_id: run.info.start_time or 0 for _, run in runs}
    out = []
    for key in keys:
        having = [r.info.run_id for _, r in runs if any(m.key == key for m in r.metrics)]
        if having:
            data = chart_data.chart_data(db, project_id, having, key, columns=columns)
            out.append(Chart(data, labels, colours, starts))
    return out


def series_json(data: ChartData) -> dict[str, Any]:
    return {
        "key": data.key,
        "by": data.by,
        "low": data.low,
        "high": data.high,
        "series": [
            {
                "run": s.run_id,
                "steps": s.steps,
                "times": s.timestamps,
                "values": s.values,
                "sampled": s.sampled,
            }
            for s in data.series
        ],
    }


def chart_json(chart: Chart) -> dict[str, Any]:
    out = series_json(chart.data)
    for item in out["series"]:
        run = item["run"]
        item |= {
            "label": chart.labels.get(run, run),
            "colour": chart.colours.get(run, charts.colour(0)),
            "start": chart.starts.get(run, 0),
        }
    return out


def data_block(request: Request, shown: Sequence[Chart], columns: int) -> Markup:
    """The charts as a JSON data block (never run by the browser; ``<``, ``>`` and ``&``
    escaped so that no value can close the element)."""
    payload = {
        "url": f"{prefix(request)}/ui/charts/data",
        "columns": columns,
        "charts": [chart_json(c) for c in shown],
    }
    text = orjson.dumps(payload).decode()
    for character, escaped in _ESCAPES:
        if character in text:  # a scan is cheaper than a copy of megabytes
            text = text.replace(character, escaped)
    return Markup(  # noqa: S704 - JSON with every <, > and & escaped
        f'<script type="application/json" id="chart-data">{text}</script>'
    )


def _thin(count: int, limit: int) -> Sequence[int]:
    """The indexes of at most ``limit`` of ``count`` points, evenly spread, ends kept."""
    if count <= limit:
        return range(count)
    stride = (count - 1) / (limit - 1)
    return [round(i * stride) for i in range(limit)]


def x_label(data: ChartData) -> str:
    return "step" if data.by == "step" else "seconds since the first value"


def svg(chart: Chart, limit: int = SVG_POINTS) -> Markup:
    """The chart as SVG, for browsers without JavaScript."""
    data = chart.data
    first = min((s.timestamps[0] for s in data.series if s.timestamps), default=0)
    by_run = {series.run_id: series for series in data.series}
    lines: list[charts.Series] = []
    for run_id, label in chart.labels.items():  # every candidate, so colours stay in place
        series = by_run.get(run_id)
        if series is None:
            lines.append((label, []))
            continue
        picked, values = _thin(len(series.values), limit), series.values
        if data.by == "step":
            steps = series.steps
            lines.append((label, [(float(steps[i]), values[i]) for i in picked]))
        else:
            times = series.timestamps
            lines.append((label, [((times[i] - first) / 1000, values[i]) for i in picked]))
    return charts.line_chart(lines, x_label=x_label(data), y_label=data.key, title=data.key)


def _int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise InvalidParameter(f"Invalid {name} {text[:40]!r}: a number.") from None


async def chart_route(request: Request, ctx: Context) -> Response:
    """``?runs=<id>,<id>&key=<metric>[&start=&end=][&columns=]``: the histories as JSON,
    cut down to the range; what a chart asks for when it is zoomed."""
    runs = [r for v in request.query_params.getlist("runs") for r in v.split(",") if r]
    key = request.query_params.get("key", "")
    columns = _int(request, "columns") or PAGE_COLUMNS
    data = await call(
        ctx,
        lambda: chart_data.chart_data(
            ctx.db,
            ctx.project_id,
            runs,
            key,
            start=_int(request, "start"),
            end=_int(request, "end"),
            columns=columns,
        ),
    )
    return Response(
        orjson.dumps(series_json(data)),
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )
