"""Charts drawn on the server as inline SVG: line charts, scatter plots and parallel coordinates.

Every label is escaped and every number formatted here, so the output can be put in a page as
it is. Points that are NaN or infinite are skipped; an axis whose values are all equal (one
point) is widened around them; ranges too wide for ``hi - lo`` to be finite are still scaled.
Colours follow a series' position in its list, so the same candidate keeps its colour across
the charts of a page. Only presentation attributes are used (the CSP forbids inline styles).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#7f7f7f",
)
WIDTH, PLOT_HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
LEGEND_COLUMNS, LEGEND_ROW = 3, 16
LABEL_CHARS = 28
MARKED_POINTS = 60  # series this short get a marker (with a tooltip) on every point
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

Series = tuple[str, Sequence[tuple[float, float]]]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _f(value: float) -> str:
    """A coordinate."""
    return f"{value:.1f}"


def label_number(value: float) -> str:
    """A number as read by people: four significant digits."""
    if value == 0:
        return "0"
    return f"{value:.4g}"


def _text(value: str, limit: int = LABEL_CHARS) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return str(escape(shown))


def _finite(*values: object) -> bool:
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


_PLAIN = frozenset((int, float))


def _finite_point(point: tuple[object, object]) -> bool:
    """``_finite`` for an (x, y) point, quick for plain numbers (a chart has thousands)."""
    x, y = point
    if type(x) in _PLAIN and type(y) in _PLAIN:
        return math.isfinite(x) and math.isfinite(y)  # type: ignore[arg-type]
    return _finite(x, y)


def _finite_sorted(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The finite points in order. Quick when all are plain numbers whose sum is finite (an
    infinity or NaN makes it infinite or NaN; so may an overflow, which only sends it the
    long way)."""
    try:
        xs, ys = zip(*points, strict=True) if points else ((), ())
        if set(map(type, xs)) | set(map(type, ys)) <= _PLAIN and math.isfinite(sum(xs) + sum(ys)):
            return sorted(points)
    except (TypeError, ValueError):
        pass
    return sorted(filter(_finite_point, points))


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    """The range of finite values, widened when empty or a single value."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.05 or 1.0
    return max(lo - pad, -sys.float_info.max), min(hi + pad, sys.float_info.max)


def _padded(bounds: tuple[float, float]) -> tuple[float, float]:
    """The range widened by 5% each side, so that no dot sits on the frame."""
    lo, hi = bounds
    pad = (hi / 2 - lo / 2) / 10
    return max(lo - pad, -sys.float_info.max), min(hi + pad, sys.float_info.max)


def _scale(lo: float, hi: float, start: float, end: float) -> Callable[[float], float]:
    """Maps [lo, hi] onto [start, end], without overflowing on the widest ranges."""
    span = hi - lo
    if math.isfinite(span) and span > 0:
        return lambda v: start + (end - start) * ((v - lo) / span)
    half = hi / 2 - lo / 2
    return lambda v: start + (end - start) * ((v / 2 - lo / 2) / half)


_PAIR = "{:.1f},{:.1f}".format


def _linear(lo: float, hi: float, start: float, end: float) -> tuple[float, float] | None:
    """``_scale`` as (a, b) with v -> a + b * v, when that is finite; otherwise None."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return None
    slope = (end - start) / span
    offset = start - lo * slope
    return (offset, slope) if math.isfinite(offset) and math.isfinite(slope) else None


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values within [lo, hi]."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo * (1 - i / count) + hi * (i / count) for i in range(count + 1)]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if step <= 0 or not math.isfinite(step) or not math.isfinite(lo / step):
        return [lo, hi]
    first = math.ceil(lo / step)
    out: list[float] = []
    for i in range(count * 3):
        value = (first + i) * step
        if value > hi + step * 1e-9:
            break
        value = 0.0 if abs(value) < step * 1e-9 else value
        if not out or value > out[-1]:
            out.append(value)
    return out or [lo, hi]


def tick_labels(values: Sequence[float]) -> list[str]:
    """Labels for ticks: as few significant digits as keep them apart, four at least."""
    labels = [label_number(v) for v in values]
    for digits in range(5, 18):
        if len(set(labels)) == len(labels):
            break
        labels = ["0" if v == 0 else f"{v:.{digits}g}" for v in values]
    return labels


def _svg(height: float, width: float, title: str, body: list[str]) -> Markup:
    # every label in ``body`` was escaped by its builder; numbers are formatted here
    return Markup(  # noqa: S704
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" height="{_f(height)}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _empty(title: str, message: str = "No finite values to plot.") -> Markup:
    body = [
        (
            f'<text x="{WIDTH / 2:.0f}" y="40" text-anchor="middle" fill="#5d6678" {FONT}>'
            f"{escape(message)}</text>"
        )
    ]
    return _svg(70, WIDTH, title, body)


def _axes(
    x_range: tuple[float, float], y_range: tuple[float, float], x_label: str, y_label: str
) -> tuple[list[str], Callable[[float], float], Callable[[float], float]]:
    """Frame, grid, ticks and axis labels; returns them with the x and y scales."""
    right, bottom = WIDTH - RIGHT, TOP + PLOT_HEIGHT
    sx = _scale(*x_range, LEFT, right)
    sy = _scale(*y_range, bottom, TOP)
    out = [
        (
            f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{PLOT_HEIGHT}" '
            'fill="#fff" stroke="#d9dee8"/>'
        )
    ]
    y_ticks = ticks(*y_range)
    for value, label in zip(y_ticks, tick_labels(y_ticks), strict=True):
        y = _f(sy(value))
        out.append(f'<line x1="{LEFT}" x2="{right}" y1="{y}" y2="{y}" stroke="#eef1f7"/>')
        out.append(
            f'<text x="{LEFT - 4}" y="{y}" dy="3" text-anchor="end" fill="#5d6678" {FONT}>'
            f"{label}</text>"
        )
    x_ticks = ticks(*x_range)
    for value, label in zip(x_ticks, tick_labels(x_ticks), strict=True):
        x = _f(sx(value))
        out.append(f'<line x1="{x}" x2="{x}" y1="{bottom}" y2="{bottom + 4}" stroke="#5d6678"/>')
        out.append(
            f'<text x="{x}" y="{bottom + 15}" text-anchor="middle" fill="#5d6678" {FONT}>'
            f"{label}</text>"
        )
    out.append(
        f'<text x="{(LEFT + right) / 2:.0f}" y="{bottom + 32}" text-anchor="middle" '
        f'fill="#1d2330" {FONT}>{_text(x_label, 60)}</text>'
    )
    out.append(
        f'<text x="12" y="{(TOP + bottom) / 2:.0f}" text-anchor="middle" fill="#1d2330" '
        f'transform="rotate(-90 12 {(TOP + bottom) / 2:.0f})" {FONT}>{_text(y_label, 40)}</text>'
    )
    return out, sx, sy


def _legend(entries: list[tuple[int, str]], top: float) -> tuple[list[str], float]:
    """Colour keys in columns below the plot; returns them and their height."""
    out = []
    column_width = (WIDTH - LEFT) / LEGEND_COLUMNS
    for n, (index, label) in enumerate(entries):
        x = LEFT + (n % LEGEND_COLUMNS) * column_width
        y = top + (n // LEGEND_COLUMNS) * LEGEND_ROW
        out.append(
            f'<g class="key"><title>{escape(label)}</title>'
            f'<rect x="{_f(x)}" y="{_f(y)}" width="10" height="10" fill="{colour(index)}"/>'
            f'<text x="{_f(x + 14)}" y="{_f(y + 9)}" fill="#1d2330" {FONT}>{_text(label)}</text>'
            "</g>"
        )
    rows = math.ceil(len(entries) / LEGEND_COLUMNS)
    return out, rows * LEGEND_ROW


def _point(x: float, y: float, fill: str, tip: str) -> str:
    return (
        f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3" fill="{fill}">'
        f"<title>{escape(tip)}</title></circle>"
    )


def line_chart(
    series: Sequence[Series], *, x_label: str = "step", y_label: str = "", title: str = ""
) -> Markup:
    """Several (label, [(x, y)]) series overlaid, each in its own colour, with a legend."""
    clean = [(i, label, _finite_sorted(points)) for i, (label, points) in enumerate(series)]
    clean = [item for item in clean if item[2]]
    name = title or y_label or "chart"
    if not clean:
        return _empty(name)
    xs = [x for _, _, points in clean for x, _ in points]
    ys = [y for _, _, points in clean for _, y in points]
    x_range, y_range = _bounds(xs), _bounds(ys)
    body, sx, sy = _axes(x_range, y_range, x_label, y_label)
    tx = _linear(*x_range, LEFT, WIDTH - RIGHT)
    ty = _linear(*y_range, TOP + PLOT_HEIGHT, TOP)
    for index, label, points in clean:
        fill = colour(index)
        if tx is None or ty is None:
            coords = " ".join([f"{sx(x):.1f},{sy(y):.1f}" for x, y in points])
        else:  # thousands of points: the arithmetic and formatting without a Python call each
            px, py = zip(*points, strict=True)
            coords = " ".join(
                map(
                    _PAIR,
                    map(tx[0].__add__, map(tx[1].__mul__, px)),
                    map(ty[0].__add__, map(ty[1].__mul__, py)),
                )
            )
        body.append(f'<g class="series"><title>{escape(label)}</title>')
        if len(points) > 1:
            body.append(
                f'<polyline points="{coords}" fill="none" stroke="{fill}" stroke-width="1.5"/>'
            )
        if len(points) <= MARKED_POINTS:
            body.extend(
                _point(sx(x), sy(y), fill, f"{label}: {label_number(x)}, {label_number(y)}")
                for x, y in points
            )
        body.append("</g>")
    legend, legend_height = _legend([(i, label) for i, label, _ in clean], TOP + PLOT_HEIGHT + 44)
    body.extend(legend)
    return _svg(TOP + PLOT_HEIGHT + 48 + legend_height, WIDTH, name, body)


def scatter(
    points: Sequence[tuple[str, float, float]], x_label: str, y_label: str, *, title: str = ""
) -> Markup:
    """One dot per (label, x, y), coloured by its position, with a legend."""
    clean = [(i, label, x, y) for i, (label, x, y) in enumerate(points) if _finite(x, y)]
    name = title or f"{y_label} against {x_label}"
    if not clean:
        return _empty(name)
    body, sx, sy = _axes(
        _padded(_bounds([p[2] for p in clean])),
        _padded(_bounds([p[3] for p in clean])),
        x_label,
        y_label,
    )
    body.extend(
        _point(sx(x), sy(y), colour(i), f"{label}: {label_number(x)}, {label_number(y)}")
        for i, label, x, y in clean
    )
    legend, legend_height = _legend(
        [(i, label) for i, label, _, _ in clean], TOP + PLOT_HEIGHT + 44
    )
    body.extend(legend)
    return _svg(TOP + PLOT_HEIGHT + 48 + legend_height, WIDTH, name, body)


def parallel_coordinates(
    axes: Sequence[str], rows: Sequence[tuple[str, Sequence[float | None]]], *, title: str = ""
) -> Markup:
    """One vertical axis per name, each scaled to its own range; one line per row, broken
    where a value is missing."""
    name = title or "parallel coordinates"
    if not axes or not rows:
        return _empty(name)
    spacing, inset, end_room = 110, 20, 70
    width = max(WIDTH, LEFT + inset + spacing * (len(axes) - 1) + end_room)
    top, bottom = TOP + 28, TOP + 28 + PLOT_HEIGHT
    if len(axes) == 1:
        xs = [width / 2]
    else:
        step = (width - LEFT - inset - end_room) / (len(axes) - 1)
        xs = [LEFT + inset + step * i for i in range(len(axes))]
    scales = []
    body = []
    for i, axis in enumerate(axes):
        present = [float(v[i] or 0) for _, v in rows if i < len(v) and _finite(v[i])]
        lo, hi = _bounds(present)
        scales.append(_scale(lo, hi, bottom, top))
        x = _f(xs[i])
        body.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" stroke="#5d6678"/>')
        body.append(
            f'<text x="{x}" y="{TOP + 10}" text-anchor="middle" fill="#1d2330" {FONT}>'
            f"<title>{escape(axis)}</title>{_text(axis, 18)}</text>"
        )
        if present:
            for end, y in zip(tick_labels([hi, lo]), (top, bottom), strict=True):
                body.append(
                    f'<text x="{_f(xs[i] + 4)}" y="{y}" dy="{-3 if y == top else 12}" '
                    f'fill="#5d6678" {FONT}>{end}</text>'
                )
    for index, (label, row) in enumerate(rows):
        fill = colour(index)
        body.append(f'<g class="series"><title>{escape(label)}</title>')
        run: list[str] = []
        for i in range(len(axes)):
            cell = row[i] if i < len(row) else None
            if cell is not None and _finite(cell):
                run.append(f"{_f(xs[i])},{_f(scales[i](cell))}")
                continue
            body.append(_polyline(run, fill))
            run = []
        body.append(_polyline(run, fill))
        body.append("</g>")
    legend, legend_height = _legend([(i, label) for i, (label, _) in enumerate(rows)], bottom + 24)
    body.extend(legend)
    return _svg(bottom + 28 + legend_height, width, name, body)


def _polyline(coords: list[str], fill: str) -> str:
    if not coords:
        return ""
    if len(coords) == 1:
        x, y = coords[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="3" fill="{fill}"/>'
    return (
        f'<polyline points="{" ".join(coords)}" fill="none" stroke="{fill}" '
        'stroke-width="1.5" stroke-opacity="0.85"/>'
    )
