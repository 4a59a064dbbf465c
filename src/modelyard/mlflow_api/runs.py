"""MLflow run endpoints: lifecycle, logging, search."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, Handler, Message, number
from modelyard.services import run_data, validation
from modelyard.services import runs as service
from modelyard.services.entities import Dataset, DatasetInput, Metric, Run, RunInfo

DEFAULT_SEARCH_RESULTS = 1000


def info_json(info: RunInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_uuid": info.run_id,
        "run_id": info.run_id,
        "experiment_id": str(info.experiment_id),
        "run_name": info.run_name,
        "user_id": info.user_id,
        "status": info.status,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage,
    }
    if info.start_time is not None:
        out["start_time"] = info.start_time
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def metric_json(m: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": m.key,
        "value": number(m.value),
        "timestamp": m.timestamp,
        "step": m.step,
    }
    if m.run_id is not None:
        out["run_id"] = m.run_id
    return out


def _pairs(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def run_json(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if run.metrics:
        data["metrics"] = [metric_json(m) for m in run.metrics]
    if run.params:
        data["params"] = _pairs(run.params)
    if run.tags:
        data["tags"] = _pairs(run.tags)
    inputs: dict[str, Any] = {}
    if run.dataset_inputs:
        inputs["dataset_inputs"] = [
            {"tags": _pairs(i.tags), "dataset": _dataset_json(i.dataset)}
            for i in run.dataset_inputs
        ]
    if run.model_inputs:
        inputs["model_inputs"] = [{"model_id": m} for m in run.model_inputs]
    outputs: dict[str, Any] = {}
    if run.model_outputs:
        outputs["model_outputs"] = [{"model_id": m, "step": s} for m, s in run.model_outputs]
    return {"info": info_json(run.info), "data": data, "inputs": inputs, "outputs": outputs}


def _dataset_json(d: Dataset) -> dict[str, Any]:
    out = {"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source}
    if d.schema:
        out["schema"] = d.schema
    if d.profile:
        out["profile"] = d.profile
    return out


def _run_id(msg: Message) -> str:
    return msg.required("run_id", alias="run_uuid")


def create(ctx: Context, msg: Message) -> dict[str, Any]:
    run = service.create(
        ctx.db,
        ctx.project_id,
        experiment_id=msg.string("experiment_id"),
        user_id=msg.string("user_id"),
        run_name=msg.string("run_name"),
        start_time=msg.int64("start_time"),
        tags=dict(msg.key_values("tags")),
    )
    return {"run": run_json(run)}


def get(ctx: Context, msg: Message) -> dict[str, Any]:
    return {"run": run_json(service.get(ctx.db, ctx.project_id, _run_id(msg)))}


def update(ctx: Context, msg: Message) -> dict[str, Any]:
    info = service.update_info(
        ctx.db,
        ctx.project_id,
        _run_id(msg),
        status=msg.string("status"),
        end_time=msg.int64("end_time"),
        run_name=msg.string("run_name"),
    )
    return {"run_info": info_json(info)}


def delete(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_lifecycle(ctx.db, ctx.project_id, _run_id(msg), service.DELETED)
    return {}


def restore(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_lifecycle(ctx.db, ctx.project_id, _run_id(msg), service.ACTIVE)
    return {}


_INT64 = range(-(2**63), 2**63)
_OPTIONAL = ("model_id", "dataset_name", "dataset_digest")


def _missing(param: str) -> InvalidParameter:
    return InvalidParameter(f"Missing value for required parameter '{param}'.")


def _plain_metric(item: Any) -> Metric | None:
    """The usual point of a batch, exactly four well-typed fields, without the checks' error
    paths; None for anything else, which ``_metric`` then reads (and refuses)."""
    if type(item) is dict and len(item) == 4:
        key, value, timestamp, step = (
            item.get("key"),
            item.get("value"),
            item.get("timestamp"),
            item.get("step"),
        )
        if (
            type(key) is str
            and key
            and type(value) is float
            and type(timestamp) is int
            and type(step) is int
            and timestamp in _INT64
            and step in _INT64
        ):
            return Metric(key, value, timestamp, step)
    return None


def _metric(item: Any, where: str = "") -> Metric:
    """One metric from its JSON object; ``where`` prefixes the field names in errors
    (``metrics[3].`` in a batch). The common all-numbers case takes the short path."""
    if not isinstance(item, dict):
        raise validation.invalid_value(item, where[:-1])
    key = item.get("key")
    if type(key) is not str or not key:
        if key is None or key == "":
            raise _missing(where + "key")
        raise validation.invalid_value(key, where + "key")
    value = item.get("value")
    if type(value) is not float:
        if value is None or value == "":
            raise _missing(where + "value")
        value = validation.metric_value(value, where + "value")
    timestamp = item.get("timestamp")
    if type(timestamp) is not int or timestamp not in _INT64:
        if timestamp is None or timestamp == "":
            raise _missing(where + "timestamp")
        timestamp = validation.int64(timestamp, where + "timestamp")
    step = item.get("step") or 0
    if type(step) is not int or step not in _INT64:
        step = validation.int64(step, where + "step")
    metric = Metric(key, value, timestamp, step)
    if len(item) > 4:
        for field in _OPTIONAL:
            extra = item.get(field)
            if extra is not None and not isinstance(extra, str):
                raise validation.invalid_value(extra, where + field)
        metric.model_id = item.get("model_id") or None
        metric.dataset_name = item.get("dataset_name") or None
        metric.dataset_digest = item.get("dataset_digest") or None
    return metric


# Each handler reads its fields in the order MLflow's server checks them, and all of them
# before anything is looked up: a malformed request is a 400 whatever it names.


def log_metric(ctx: Context, msg: Message) -> dict[str, Any]:
    run_id = _run_id(msg)
    batch = run_data.check_batch([_metric(msg.data)], [], [])
    run_data.log_batch(ctx.db, ctx.project_id, run_id, batch)
    return {}


def log_param(ctx: Context, msg: Message) -> dict[str, Any]:
    run_id = _run_id(msg)
    key = msg.required("key")
    batch = run_data.check_batch([], [(key, msg.string("value") or "")], [])
    run_data.log_batch(ctx.db, ctx.project_id, run_id, batch)
    return {}


def set_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    run_id = _run_id(msg)
    key = msg.required("key")
    batch = run_data.check_batch([], [], [(key, msg.string("value") or "")])
    run_data.log_batch(ctx.db, ctx.project_id, run_id, batch)
    return {}


def delete_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    run_id = _run_id(msg)
    run_data.delete_tag(ctx.db, ctx.project_id, run_id, msg.required("key"))
    return {}


def log_batch(ctx: Context, msg: Message) -> dict[str, Any]:
    if msg.size > validation.MAX_REQUEST_BYTES:
        raise InvalidParameter(
            f"Batched logging API requests must be at most {validation.MAX_REQUEST_BYTES} bytes, "
            f"got a request of {msg.size} bytes."
        )
    run_id = _run_id(msg)
    metrics = [
        _plain_metric(m) or _metric(m, f"metrics[{i}].")
        for i, m in enumerate(msg.objects("metrics"))
    ]
    batch = run_data.check_batch(metrics, msg.key_values("params"), msg.key_values("tags"))
    run_data.log_batch(ctx.db, ctx.project_id, run_id, batch)
    return {}


def log_inputs(ctx: Context, msg: Message) -> dict[str, Any]:
    inputs: list[DatasetInput] = []
    for item in msg.objects("datasets"):
        raw = item.get("dataset")
        if not isinstance(raw, dict):
            raise InvalidParameter("Missing value for required parameter 'datasets.dataset'.")
        fields = {
            f: raw.get(f) for f in ("name", "digest", "source_type", "source", "schema", "profile")
        }
        for field, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise validation.invalid_value(value, f"dataset.{field}")
        dataset = Dataset(**{k: v or "" for k, v in fields.items()})
        tags = dict(Message(item).key_values("tags"))
        inputs.append(DatasetInput(dataset, tags))
    models = [str(m.get("model_id") or "") for m in msg.objects("models")]
    run_data.log_inputs(ctx.db, ctx.project_id, _run_id(msg), inputs, models)
    return {}


def log_outputs(ctx: Context, msg: Message) -> dict[str, Any]:
    models = [
        (str(m.get("model_id") or ""), validation.int64(m.get("step") or 0, "step"))
        for m in msg.objects("models")
    ]
    run_data.log_outputs(ctx.db, ctx.project_id, _run_id(msg), models)
    return {}


def search(ctx: Context, msg: Message) -> dict[str, Any]:
    page = service.search(
        ctx.db,
        ctx.project_id,
        experiment_ids=msg.strings("experiment_ids"),
        filter_string=msg.string("filter"),
        run_view_type=msg.string("run_view_type"),
        max_results=msg.int64("max_results", default=DEFAULT_SEARCH_RESULTS) or 0,
        order_by=msg.strings("order_by"),
        page_token=msg.string("page_token"),
    )
    out: dict[str, Any] = {}
    if page.items:
        out["runs"] = [run_json(r) for r in page.items]
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/runs/create", ("POST",), create),
    ("/runs/get", ("GET",), get),
    ("/runs/update", ("POST",), update),
    ("/runs/delete", ("POST",), delete),
    ("/runs/restore", ("POST",), restore),
    ("/runs/log-metric", ("POST",), log_metric),
    ("/runs/log-parameter", ("POST",), log_param),
    ("/runs/set-tag", ("POST",), set_tag),
    ("/runs/delete-tag", ("POST",), delete_tag),
    ("/runs/log-batch", ("POST",), log_batch),
    ("/runs/log-inputs", ("POST",), log_inputs),
    ("/runs/outputs", ("POST",), log_outputs),
    ("/runs/search", ("POST", "GET"), search),
]
