"""Importing another tracker's history under /api/v1/imports (maintainers): experiments,
candidates with their run ids, metric points, logged models, registered models and versions
with their numbers. Every call is idempotent and answers what it did: ``imported``,
``updated`` or ``unchanged``; an id that already names something else is a 409.

Artifacts travel through the MLflow artifact routes (``mlflow-artifacts``) once the candidate
or logged model exists.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import struct
import sys
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, Field, WithJsonSchema
from starlette.responses import Response

from modelyard.api.declare import (
    PATH,
    Args,
    Endpoint,
    Input,
    NoParams,
    Out,
    Reply,
    endpoint,
)
from modelyard.api.fields import _SPACE, LoggedModelId, Millis, ModelName, RunId
from modelyard.api.wire import respond
from modelyard.mlflow_api.wire import call
from modelyard.services import import_registry, imports, limits, logged_models, validation
from modelyard.services.entities import Dataset, DatasetInput, Metric

PREFIX = "/imports"
MAX_POINTS = 5000
MAX_ITEMS = 1000
# packed metric points (24 bytes each, 32 in base64): in bodies of at most SERIES_BODY bytes
SERIES_BODY = 4 * 1024 * 1024
MAX_RUNS = 100
# below the 1 MiB body limit, so that a schema the document allows fits in a request
MAX_SCHEMA = 512 * 1024

# Values -----------------------------------------------------------------------------------------

_K = "[A-Za-z0-9_ :-][A-Za-z0-9_. :-]*"
_FIRST = f"(?:{_K}|\\.{_K})"
_LATER = f"(?:{_K}|\\.{_K}|\\.\\.[A-Za-z0-9_. :-]+)"
KEY_PATTERN = f"^{_FIRST}(?:/{_LATER})*$"
Key = Annotated[
    str,
    Field(
        pattern=KEY_PATTERN,
        max_length=validation.MAX_KEY_LENGTH,
        description="A metric, param or tag key: ASCII letters, digits, '_', '-', '.', ' ', ':' "
        "and '/' between non-empty segments that are not '.' or '..' (the first does not start "
        f"with '..'); at most {validation.MAX_KEY_LENGTH} characters.",
    ),
]
# JSON numbers past 2**53 lose digits on the way in: the range stays where a rounded value
# cannot cross its bound.
MAX_STEP = 2**62
Int64 = Annotated[int, Field(ge=-MAX_STEP, le=MAX_STEP)]
Lifecycle = Literal["active", "deleted"]
SourceId = Annotated[
    str,
    Field(pattern="^[0-9]{1,19}$", description="The experiment's id where it comes from."),
]
TargetExperiment = Annotated[
    str, Field(pattern="^[0-9]{1,9}$", description="The experiment's id on this server.")
]


ExperimentName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=validation.MAX_EXPERIMENT_NAME_LENGTH,
        pattern=f"[^{_SPACE}]",
        description="The experiment's name: visible characters and plain spaces, not blank, at "
        "most 500 characters.",
        json_schema_extra={"format": "experiment-name"},
    ),
]


def _pairs(limit: int) -> WithJsonSchema:
    """The JSON Schema of keys (``Key``) to values of at most ``limit`` characters: names that
    break the key rule are refused, so the document says so with ``propertyNames``."""
    return WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_ITEMS,
            "propertyNames": {
                "type": "string",
                "pattern": KEY_PATTERN,
                "maxLength": validation.MAX_KEY_LENGTH,
            },
            "additionalProperties": {"type": "string", "maxLength": limit},
            "description": f"Keys as for a param or tag; values of at most {limit:,} characters.",
        }
    )


_RUN_TAG = validation.MAX_RUN_TAG_VALUE_LENGTH
_EXPERIMENT_TAG = validation.MAX_EXPERIMENT_TAG_VALUE_LENGTH
_PARAM = validation.MAX_PARAM_VALUE_LENGTH
_MODEL_TAG = logged_models.MAX_TAG_VALUE_LENGTH
_ITEMS = Field(max_length=MAX_ITEMS)
RunTags = Annotated[dict[Key, Annotated[str, Field(max_length=_RUN_TAG)]], _ITEMS, _pairs(_RUN_TAG)]
ExperimentTags = Annotated[
    dict[Key, Annotated[str, Field(max_length=_EXPERIMENT_TAG)]], _ITEMS, _pairs(_EXPERIMENT_TAG)
]
Params = Annotated[dict[Key, Annotated[str, Field(max_length=_PARAM)]], _ITEMS, _pairs(_PARAM)]
LoggedModelTags = Annotated[
    dict[Key, Annotated[str, Field(max_length=_MODEL_TAG)]], _ITEMS, _pairs(_MODEL_TAG)
]


def _tags(limit: int) -> Any:
    return Field(
        default_factory=dict,
        max_length=MAX_ITEMS,
        description=f"Values of at most {limit} characters.",
    )


class TagValue:
    REGISTRY = Annotated[str, Field(max_length=100_000)]


# Requests ---------------------------------------------------------------------------------------


class ExperimentRef(Input):
    source_id: Annotated[SourceId, PATH]


class ExperimentIn(Input):
    name: ExperimentName
    lifecycle_stage: Lifecycle = "active"
    creation_time: Millis
    last_update_time: Millis
    tags: ExperimentTags = Field(default_factory=dict)


class RunRef(Input):
    run_id: Annotated[RunId, PATH]


class DatasetIn(Input):
    name: str = Field(min_length=1, max_length=validation.MAX_DATASET_NAME_LENGTH)
    digest: str = Field(min_length=1, max_length=validation.MAX_DATASET_DIGEST_LENGTH)
    source_type: str = Field(min_length=1, max_length=36)
    source: str = Field(min_length=1, max_length=validation.MAX_DATASET_SOURCE_LENGTH)
    schema_: str | None = Field(default=None, alias="schema", max_length=MAX_SCHEMA)
    profile: str | None = Field(default=None, max_length=validation.MAX_DATASET_PROFILE_LENGTH)


class InputIn(Input):
    dataset: DatasetIn
    tags: dict[
        Annotated[str, Field(min_length=1, max_length=validation.MAX_INPUT_TAG_KEY_LENGTH)],
        Annotated[str, Field(max_length=validation.MAX_INPUT_TAG_VALUE_LENGTH)],
    ] = Field(default_factory=dict, max_length=100)


class ModelOutput(Input):
    model_id: LoggedModelId
    step: Int64 = 0


class RunIn(Input):
    experiment_id: TargetExperiment
    name: str = Field(max_length=validation.MAX_RUN_NAME_LENGTH)
    user_id: str = Field(default="", max_length=limits.USER_ID)
    status: Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
    start_time: Millis
    end_time: Millis | None = None
    lifecycle_stage: Lifecycle = "active"
    params: Params = Field(default_factory=dict)
    tags: RunTags = Field(default_factory=dict)
    inputs: list[InputIn] = Field(default_factory=list, max_length=100)
    model_inputs: list[LoggedModelId] = Field(default_factory=list, max_length=100)
    model_outputs: list[ModelOutput] = Field(default_factory=list, max_length=100)


Special = Literal["NaN", "Infinity", "-Infinity"]


class PointIn(Input):
    key: Key
    value: float | Special = Field(description="A number, or NaN, Infinity, -Infinity as text.")
    timestamp: Int64
    step: Int64 = 0
    model_id: LoggedModelId | None = None
    dataset_name: str | None = Field(default=None, max_length=500)
    dataset_digest: str | None = Field(default=None, max_length=64)


class PointsIn(Input):
    points: list[PointIn] = Field(max_length=MAX_POINTS)
    link_only: bool = Field(
        default=False,
        description="The points are a logged model's metrics: link the candidate's points at "
        "the same key, step and time to their model_id; add none.",
    )


_ROW = struct.Struct("<qqd")  # a point: step, timestamp (ms), value
_POINT_CHARS = 32  # 24 bytes in base64: no padding, so any run of 32 characters is a point
PACKED_PATTERN = "^(?:[A-Za-z0-9+/]{32})*$"
_PACKED = re.compile(PACKED_PATTERN)


def _checked_packed(text: str) -> str:
    if not _PACKED.match(text):
        raise ValueError(
            "packed must be standard base64 of 24 bytes a point (32 characters each, no "
            "padding): the step and the timestamp as little-endian signed 64-bit integers, "
            "then the value as a little-endian IEEE 754 double."
        )
    return text


Packed = Annotated[
    str,
    Field(
        max_length=SERIES_BODY,
        description="The points, 24 bytes each, in standard base64 (32 characters a point): "
        "the step and the timestamp (ms) as little-endian signed 64-bit integers, then the "
        "value as a little-endian IEEE 754 double (NaN and infinities as they are).",
        json_schema_extra={"pattern": PACKED_PATTERN, "contentEncoding": "base64"},
    ),
    AfterValidator(_checked_packed),
]


class SeriesIn(Input):
    """One metric's points, packed: exact whatever the value, and a fraction of the size and
    parsing of JSON numbers."""

    key: Key
    packed: Packed

    def count(self) -> int:
        return len(self.packed) // _POINT_CHARS

    def columns(self) -> tuple[list[int], list[int], list[float]]:
        raw = base64.b64decode(self.packed)
        if sys.byteorder != "little":
            rows = list(_ROW.iter_unpack(raw))
            return [r[0] for r in rows], [r[1] for r in rows], [float(r[2]) for r in rows]
        ints, doubles = memoryview(raw).cast("q"), memoryview(raw).cast("d")
        return ints[0::3].tolist(), ints[1::3].tolist(), cast(list[float], doubles[2::3].tolist())


_SERIES_RULE = (
    f"A body of at most {SERIES_BODY:,} bytes (about 130,000 points); points the candidate "
    "has are skipped."
)


class SeriesBody(Input):
    series: list[SeriesIn] = Field(max_length=MAX_ITEMS)


class RunItem(RunIn):
    run_id: RunId
    metrics: list[SeriesIn] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="The candidate's metric points."
    )


class RunsIn(Input):
    runs: list[RunItem] = Field(min_length=1, max_length=MAX_RUNS)


class LoggedModelRef(Input):
    model_id: Annotated[LoggedModelId, PATH]


class LoggedModelIn(Input):
    experiment_id: TargetExperiment
    name: Annotated[
        str,
        Field(
            pattern="^[^/:.%\"']+$",
            max_length=logged_models.MAX_NAME_LENGTH,
            description="Without '/', ':', '.', '%' or quotes.",
        ),
    ]
    model_type: str = Field(default="", max_length=logged_models.MAX_MODEL_TYPE_LENGTH)
    status: Literal[
        "LOGGED_MODEL_READY",
        "LOGGED_MODEL_PENDING",
        "LOGGED_MODEL_UPLOAD_FAILED",
        "LOGGED_MODEL_STATUS_UNSPECIFIED",
    ] = "LOGGED_MODEL_READY"
    source_run_id: RunId | None = None
    creation_time: Millis
    last_updated_time: Millis
    params: Params = Field(default_factory=dict)
    tags: LoggedModelTags = Field(default_factory=dict)


class ModelRef(Input):
    name: Annotated[ModelName, PATH]


RegistryKey = Annotated[str, Field(min_length=1, max_length=250)]


class ModelIn(Input):
    description: str = Field(default="", max_length=limits.MODEL_DESCRIPTION)
    creation_time: Millis
    last_updated_time: Millis
    tags: dict[RegistryKey, TagValue.REGISTRY] = _tags(100_000)


class VersionRef(ModelRef):
    version: Annotated[
        str, PATH, Field(pattern="^[1-9][0-9]{0,8}$", description="MLflow's version number.")
    ]


class VersionIn(Input):
    source: str = Field(min_length=1, max_length=limits.VERSION_URI)
    run_id: RunId | None = None
    model_id: LoggedModelId | None = None
    run_link: str = Field(default="", max_length=limits.VERSION_URI)
    description: str = Field(default="", max_length=limits.VERSION_DESCRIPTION)
    status: Literal["READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"] = "READY"
    stage: Literal["None", "Staging", "Production", "Archived"] = "None"
    creation_time: Millis
    last_updated_time: Millis
    tags: dict[RegistryKey, TagValue.REGISTRY] = _tags(100_000)


# Answers ----------------------------------------------------------------------------------------

Outcome = Literal["imported", "updated", "unchanged"]


class Imported(Out):
    outcome: Outcome


class ExperimentImported(Imported):
    experiment_id: str = Field(description="The experiment's id on this server.")


class PointsImported(Out):
    added: int = Field(description="Points this candidate did not have yet.")


class RunError(Out):
    code: str = Field(description="As in an error answer: RESOURCE_ALREADY_EXISTS, …")
    message: str


class RunOutcome(Out):
    run_id: str
    outcome: Outcome | None = Field(description="What happened; null when refused.")
    added: int = Field(description="Metric points this candidate did not have yet.")
    error: RunError | None = Field(
        default=None, description="Why the candidate was refused (nothing of it was written)."
    )


class RunsImported(Out):
    runs: list[RunOutcome] = Field(description="One per candidate sent, in order.")


class VersionImported(Imported):
    semver: str | None


_NO_EXPERIMENT = {404: "No such experiment on this server."}
_TAKEN = {409: "The id names something else here, or a stored value would change."}

# Pages ------------------------------------------------------------------------------------------


@endpoint(
    "PUT",
    PREFIX + "/experiments/{source_id}",
    "importExperiment",
    "Import an experiment (maintainers)",
    description="Matched by name; created with the source's id when that id is free here.",
    params=ExperimentRef,
    body=ExperimentIn,
    ok=Reply(200, "What happened, and the experiment's id here.", ExperimentImported),
)
async def import_experiment(args: Args[ExperimentRef, ExperimentIn]) -> Response:
    ctx, body = args.ctx, args.body
    item = imports.ExperimentIn(
        source_id=int(args.params.source_id),
        name=body.name,
        lifecycle_stage=body.lifecycle_stage,
        creation_time=body.creation_time,
        last_update_time=body.last_update_time,
        tags=dict(body.tags),
    )
    found, outcome = await call(ctx, imports.import_experiment, ctx.db, ctx.project_id, item)
    return respond({"experiment_id": str(found), "outcome": outcome})


@endpoint(
    "PUT",
    PREFIX + "/runs/{run_id}",
    "importRun",
    "Import a candidate with its run id (maintainers)",
    description="Info, params, tags, dataset inputs and model links; metric points follow "
    "with importRunMetrics.",
    params=RunRef,
    body=RunIn,
    ok=Reply(200, "What happened.", Imported),
    errors={**_NO_EXPERIMENT, **_TAKEN},
)
async def import_run(args: Args[RunRef, RunIn]) -> Response:
    ctx = args.ctx
    item = _run(args.params.run_id, args.body)
    outcome = await call(ctx, imports.import_run, ctx.db, ctx.project_id, item)
    return respond({"outcome": outcome})


def _run(run_id: str, body: RunIn) -> imports.RunIn:
    return imports.RunIn(
        run_id=run_id,
        experiment_id=int(body.experiment_id),
        name=body.name,
        user_id=body.user_id,
        status=body.status,
        start_time=body.start_time,
        end_time=body.end_time,
        lifecycle_stage=body.lifecycle_stage,
        params=dict(body.params),
        tags=dict(body.tags),
        inputs=[
            DatasetInput(
                Dataset(
                    name=i.dataset.name,
                    digest=i.dataset.digest,
                    source_type=i.dataset.source_type,
                    source=i.dataset.source,
                    schema=i.dataset.schema_,
                    profile=i.dataset.profile,
                ),
                dict(i.tags),
            )
            for i in body.inputs
        ],
        model_inputs=list(body.model_inputs),
        model_outputs=[(o.model_id, o.step) for o in body.model_outputs],
    )


_SPECIAL_VALUE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _series(series: list[SeriesIn]) -> list[imports.Series]:
    return [imports.Series(one.key, *one.columns()) for one in series]


@endpoint(
    "POST",
    PREFIX + "/runs",
    "importRuns",
    "Import candidates with their metric points (maintainers)",
    description=f"Up to {MAX_RUNS} candidates a call, each as importRun and its points as "
    f"importRunMetricSeries would (a body of at most {SERIES_BODY:,} bytes), in one "
    "transaction. A candidate that cannot be imported (an unknown experiment, an id taken, a "
    "param that would change) is refused alone: its error is in its answer, nothing of it is "
    "written, and the others are imported.",
    body=RunsIn,
    ok=Reply(200, "What happened to each candidate.", RunsImported),
    max_body=SERIES_BODY,
)
async def import_runs(args: Args[NoParams, RunsIn]) -> Response:
    ctx = args.ctx
    items = [
        imports.RunWithPoints(_run(run.run_id, run), _series(run.metrics)) for run in args.body.runs
    ]
    results = await call(ctx, imports.import_runs, ctx.db, ctx.project_id, items)
    return respond(
        {
            "runs": [
                {"run_id": r.run_id, "outcome": r.outcome, "added": r.added}
                if r.error is None
                else {
                    "run_id": r.run_id,
                    "outcome": None,
                    "added": 0,
                    "error": {"code": r.error.code.value, "message": r.error.message},
                }
                for r in results
            ]
        }
    )


@endpoint(
    "POST",
    PREFIX + "/runs/{run_id}/metric-series",
    "importRunMetricSeries",
    "Import metric points of a candidate, packed (maintainers)",
    description="Each metric's points as 24 bytes each (step, timestamp, value). " + _SERIES_RULE,
    params=RunRef,
    body=SeriesBody,
    ok=Reply(200, "How many points were new.", PointsImported),
    errors={404: "No such candidate."},
    max_body=SERIES_BODY,
)
async def import_run_metric_series(args: Args[RunRef, SeriesBody]) -> Response:
    ctx = args.ctx
    series = _series(args.body.series)
    added = await call(
        ctx, imports.import_series, ctx.db, ctx.project_id, args.params.run_id, series
    )
    return respond({"added": added})


def _value(value: float | str) -> float:
    return _SPECIAL_VALUE[value] if isinstance(value, str) else float(value)


@endpoint(
    "POST",
    PREFIX + "/runs/{run_id}/metrics",
    "importRunMetrics",
    "Import metric points of a candidate (maintainers)",
    description=f"Up to {MAX_POINTS} points a call; points the candidate has are skipped.",
    params=RunRef,
    body=PointsIn,
    ok=Reply(200, "How many points were new.", PointsImported),
    errors={404: "No such candidate."},
)
async def import_run_metrics(args: Args[RunRef, PointsIn]) -> Response:
    ctx = args.ctx
    points = [
        Metric(
            key=p.key,
            value=_value(p.value),
            timestamp=p.timestamp,
            step=p.step,
            model_id=p.model_id,
            dataset_name=p.dataset_name,
            dataset_digest=p.dataset_digest,
        )
        for p in args.body.points
    ]
    added = await call(
        ctx,
        functools.partial(imports.import_points, link_only=args.body.link_only),
        ctx.db,
        ctx.project_id,
        args.params.run_id,
        points,
    )
    return respond({"added": added})


@endpoint(
    "PUT",
    PREFIX + "/logged-models/{model_id}",
    "importLoggedModel",
    "Import a logged model with its id (maintainers)",
    params=LoggedModelRef,
    body=LoggedModelIn,
    ok=Reply(200, "What happened.", Imported),
    errors={404: "No such experiment or source candidate.", **_TAKEN},
)
async def import_logged_model(args: Args[LoggedModelRef, LoggedModelIn]) -> Response:
    ctx, body = args.ctx, args.body
    item = imports.LoggedModelIn(
        model_id=args.params.model_id,
        experiment_id=int(body.experiment_id),
        name=body.name,
        model_type=body.model_type,
        status=body.status,
        source_run_id=body.source_run_id,
        creation_time=body.creation_time,
        last_updated_time=body.last_updated_time,
        params=dict(body.params),
        tags=dict(body.tags),
    )
    outcome = await call(ctx, imports.import_logged_model, ctx.db, ctx.project_id, item)
    return respond({"outcome": outcome})


@endpoint(
    "PUT",
    PREFIX + "/models/{name}",
    "importModel",
    "Import a registered model (maintainers)",
    params=ModelRef,
    body=ModelIn,
    ok=Reply(200, "What happened.", Imported),
)
async def import_model(args: Args[ModelRef, ModelIn]) -> Response:
    ctx, body = args.ctx, args.body
    item = import_registry.ModelIn(
        name=args.params.name,
        description=body.description,
        creation_time=body.creation_time,
        last_updated_time=body.last_updated_time,
        tags=dict(body.tags),
    )
    outcome = await call(ctx, import_registry.import_model, ctx.db, ctx.project_id, item)
    return respond({"outcome": outcome})


@endpoint(
    "PUT",
    PREFIX + "/models/{name}/versions/{version}",
    "importModelVersion",
    "Import a model version with its number (maintainers)",
    description="Its files are frozen from its source when the source is stored here.",
    params=VersionRef,
    body=VersionIn,
    ok=Reply(200, "What happened, and the version's semver.", VersionImported),
    errors={404: "No such model.", **_TAKEN},
)
async def import_model_version(args: Args[VersionRef, VersionIn]) -> Response:
    ctx, body = args.ctx, args.body
    item = import_registry.VersionIn(
        name=args.params.name,
        version=int(args.params.version),
        source=body.source,
        run_id=body.run_id,
        model_id=body.model_id,
        run_link=body.run_link,
        description=body.description,
        status=body.status,
        stage=body.stage,
        creation_time=body.creation_time,
        last_updated_time=body.last_updated_time,
        tags=dict(body.tags),
    )
    outcome, semver = await call(ctx, import_registry.import_version, ctx.db, ctx.project_id, item)
    return respond({"outcome": outcome, "semver": semver})


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    import_experiment,
    import_run,
    import_runs,
    import_run_metrics,
    import_run_metric_series,
    import_logged_model,
    import_model,
    import_model_version,
)
