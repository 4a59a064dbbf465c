"""``modelyard ci report``'s comparison and Markdown: a merge request's candidates against the
version behind a model's alias, metric by metric, with the params that differ and links to
the web UI. No HTTP here (see ``commands/ci.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

MAX_SHOWN = 10  # candidates in the tables (best first); the compare view has them all
MAX_COMPARED = 49  # candidates in the compare link (the view takes 50 with production)
MAX_PARAMS = 50
MAX_TEXT = 80
_ESCAPE = re.compile(r"([\\`*_\[\]<>|~#!@])")
_METRIC_GOAL = re.compile(r"^(?P<key>.+):(?P<goal>max|min)$")


@dataclass(frozen=True)
class Goal:
    """A metric to compare and which way is better."""

    key: str
    maximize: bool

    @property
    def label(self) -> str:
        return "max" if self.maximize else "min"

    @classmethod
    def parse(cls, text: str) -> Goal:
        found = _METRIC_GOAL.match(text.strip())
        if found is None:
            raise ValueError(f"{text!r} is not NAME:max or NAME:min (e.g. val_acc:max)")
        return cls(found.group("key"), found.group("goal") == "max")


@dataclass
class Candidate:
    run_id: str
    name: str
    experiment: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    start_time: int = 0


@dataclass
class Production:
    """The version behind the alias and the candidate it was promoted from (if any)."""

    label: str  # churn 1.4.2 (version 7)
    run: Candidate | None


@dataclass
class Report:
    merge_request: str
    model: str
    alias: str
    goals: list[Goal]
    candidates: list[Candidate]  # best first (see ``rank``)
    production: Production | None
    experiments: list[str]
    ui: str  # the project's web UI, e.g. https://models.example.com/projects/churn/ui
    missing_production: str = ""  # why there is no production version, when there is none
    repository: str | None = None  # the candidates' ci.repository_url, when it was chosen

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def baseline(self) -> Candidate | None:
        return self.production.run if self.production else None


# comparison -------------------------------------------------------------------------------------


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _sort_value(candidate: Candidate, goal: Goal) -> tuple[int, float]:
    value = candidate.metrics.get(goal.key)
    if value is None or math.isnan(value):
        return (1, 0.0)
    return (0, -value if goal.maximize else value)


def rank(candidates: Sequence[Candidate], goals: Sequence[Goal]) -> list[Candidate]:
    """Best first: by the first goal, then the next ones; a missing or NaN value is last;
    then the earliest started."""
    return sorted(
        candidates,
        key=lambda c: (*[_sort_value(c, g) for g in goals], c.start_time, c.run_id),
    )


def verdict(value: float | None, baseline: float | None, goal: Goal) -> str | None:
    """``better``, ``same``, ``worse``, or None when there is nothing to compare with. A
    candidate without the metric (or NaN) is worse than a production that has it."""
    if not _usable(baseline):
        return None
    if not _usable(value):
        return "worse"
    assert value is not None
    assert baseline is not None
    if value == baseline:
        return "same"
    return "better" if (value > baseline) == goal.maximize else "worse"


def worse(report: Report) -> list[str]:
    """The goals on which the best candidate is worse than production; every goal when the
    merge request has no candidate (nothing has shown it is not worse)."""
    best = report.best
    if best is None:
        return [g.key for g in report.goals]
    baseline = report.baseline
    found = []
    for goal in report.goals:
        prod = baseline.metrics.get(goal.key) if baseline else None
        if verdict(best.metrics.get(goal.key), prod, goal) == "worse":
            found.append(goal.key)
    return found


# Markdown ---------------------------------------------------------------------------------------


def text(value: str) -> str:
    """One line of plain text, shortened, with Markdown's and HTML's characters escaped."""
    flat = " ".join(value.split())
    if len(flat) > MAX_TEXT:
        flat = flat[: MAX_TEXT - 1] + "…"
    return _ESCAPE.sub(r"\\\1", flat)


def code(value: str | None) -> str:
    """A value as a code span (no mention, link or HTML inside), ``-`` when missing."""
    if value is None:
        return "-"
    flat = " ".join(value.split())
    if len(flat) > MAX_TEXT:
        flat = flat[: MAX_TEXT - 1] + "…"
    flat = flat.replace("|", "\\|")
    fence = "`" * (max((len(r) for r in re.findall(r"`+", flat)), default=0) + 1)
    if flat.startswith("`") or flat.endswith("`") or not flat:
        flat = f" {flat} "
    return f"{fence}{flat}{fence}"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return repr(value)
    return f"{value:.6g}"


def delta(value: float | None, baseline: float | None) -> str:
    if not _usable(value) or not _usable(baseline):
        return "-"
    assert value is not None
    assert baseline is not None
    if math.isinf(value) or math.isinf(baseline):
        return "-"
    return f"{value - baseline:+.4g}"


_VERDICT = {"better": "✅ yes", "same": "= same", "worse": "❌ no", None: "-"}


def marker(model: str, alias: str) -> str:
    """The hidden line that finds this report's comment again."""

    def safe(part: str) -> str:
        return quote(part, safe="").replace("-", "%2D")

    return f"<!-- modelyard-ci-report model={safe(model)} alias={safe(alias)} -->"


def run_url(report: Report, run_id: str) -> str:
    return f"{report.ui}/runs/{quote(run_id, safe='')}"


def compare_url(report: Report) -> str | None:
    ids = [c.run_id for c in report.candidates[:MAX_COMPARED]]
    if report.baseline is not None:
        ids.insert(0, report.baseline.run_id)
    ids = list(dict.fromkeys(ids))
    if len(ids) < 2:
        return None
    return f"{report.ui}/compare?" + urlencode([("runs", i) for i in ids])


def merge_request_url(report: Report) -> str | None:
    """The server's page of this merge request's candidates (it is named by repository)."""
    if not report.repository:
        return None
    query = [("id", report.merge_request), ("repository", report.repository)]
    if report.goals:
        query += [("metric", report.goals[0].key), ("direction", report.goals[0].label)]
    return f"{report.ui}/merge-requests/candidates?" + urlencode(query)


def _link(report: Report, candidate: Candidate) -> str:
    return f"[{text(candidate.name or candidate.run_id)}]({run_url(report, candidate.run_id)})"


def _heading(report: Report) -> list[str]:
    lines = [
        marker(report.model, report.alias),
        (
            f"### Candidates of merge request {text(report.merge_request)} against "
            f"{code(report.model)} @{text(report.alias)}"
        ),
        "",
    ]
    if report.production is None:
        lines.append(report.missing_production)
    elif report.production.run is None:
        lines.append(
            f"Production: {text(report.production.label)}, which no candidate of this "
            "project produced: no values to compare with."
        )
    else:
        run = report.production.run
        lines.append(f"Production: {text(report.production.label)}, from {_link(report, run)}.")
    count = len(report.candidates)
    where = ", ".join(code(e) for e in report.experiments) or "no experiment"
    noun = "candidate" if count == 1 else "candidates"
    lines.append(f"{count} {noun} of this merge request in {where}.")
    return lines


def _metrics_table(report: Report, shown: list[Candidate]) -> list[str]:
    lines = [
        "| Metric | Production | Candidate | Value | Δ | Better? |",
        "| --- | ---: | --- | ---: | ---: | :---: |",
    ]
    baseline = report.baseline
    best = report.best
    for goal in report.goals:
        prod = baseline.metrics.get(goal.key) if baseline else None
        for index, candidate in enumerate(shown):
            value = candidate.metrics.get(goal.key)
            first = index == 0
            name = _link(report, candidate) + (" (best)" if candidate is best else "")
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{code(goal.key)} ({goal.label})" if first else "",
                        number(prod) if first else "",
                        name,
                        number(value),
                        delta(value, prod),
                        _VERDICT[verdict(value, prod, goal)],
                    ]
                )
                + " |"
            )
    return lines


def _params_table(report: Report, shown: list[Candidate]) -> list[str]:
    baseline = report.baseline
    columns: list[tuple[str, dict[str, str]]] = []
    if baseline is not None:
        columns.append(("Production", baseline.params))
    columns.extend((text(c.name or c.run_id), c.params) for c in shown)
    keys = sorted({k for _, params in columns for k in params})
    differ = [k for k in keys if len({params.get(k) for _, params in columns}) > 1]
    if not differ:
        return ["No param differs." if len(columns) > 1 else ""]
    lines = [
        "| Param | " + " | ".join(title for title, _ in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for key in differ[:MAX_PARAMS]:
        cells = [code(params.get(key)) for _, params in columns]
        lines.append(f"| {code(key)} | " + " | ".join(cells) + " |")
    if len(differ) > MAX_PARAMS:
        lines.append("")
        lines.append(f"… and {len(differ) - MAX_PARAMS} more params that differ.")
    return lines


def render(report: Report) -> str:
    """The report as Markdown (GitLab's and GitHub's flavours alike)."""
    lines = _heading(report)
    shown = report.candidates[:MAX_SHOWN]
    if shown:
        lines += ["", *_metrics_table(report, shown)]
        if len(report.candidates) > len(shown):
            lines += ["", f"The {MAX_SHOWN} best of {len(report.candidates)} are shown."]
        params = _params_table(report, shown)
        if any(params):
            lines += ["", "#### Params that differ", "", *params]
    compare = compare_url(report)
    if compare:
        lines += ["", f"[Compare in modelyard]({compare})"]
    everything = merge_request_url(report)
    if everything:
        lines += ["", f"[This merge request's candidates in modelyard]({everything})"]
    failing = worse(report)
    lines.append("")
    if not report.candidates:
        lines.append("**No candidate**: log runs in this merge request's pipeline first.")
    elif report.baseline is None:
        lines.append("**Nothing to compare with**: the tables show the candidates alone.")
    elif failing:
        lines.append("**Worse than production** on " + ", ".join(code(k) for k in failing) + ".")
    else:
        lines.append("**Not worse than production** on any chosen metric.")
    return "\n".join(lines).rstrip() + "\n"
