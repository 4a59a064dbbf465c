"""``export mlflow``: a project of a modelyard server copied into an MLflow server through
MLflow's REST API on both sides.

MLflow gives every experiment, run and logged model an id of its own, so the export keeps a
mapping file (old id → new id) that it writes after each step; run again with the same file,
it skips what is done and finishes what is not. A run, a logged model or an experiment is
finished only when all of it has arrived: a run left half-copied is completed on the next
attempt (MLflow ignores a metric point, param, tag or dataset it already holds, and files are
overwritten with the same bytes)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard_client import output
from modelyard_client.errors import ClientError, HttpError
from modelyard_client.mlflow_http import Rest, artifact_path
from modelyard_client.progress import Progress

FORMAT = 1
METRICS_PER_BATCH = 1000  # MLflow's log-batch limits
PARAMS_PER_BATCH = 100
TAGS_PER_BATCH = 100
HISTORY_PAGE = 25000
PARENT_TAG = "mlflow.parentRunId"
DELETED = "deleted"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
DEFAULT_EXPERIMENT = "Default"
KINDS = ("experiments", "runs", "logged_models")
NOTE = (
    "MLflow gives experiments, runs and logged models ids of its own: each section maps an id "
    "in the source to its id in the target. Model version numbers are assigned by MLflow in "
    "version order; numbers of deleted versions are skipped the same way where the export "
    "created the model, so they normally match; model_versions maps each old number to the "
    "new one."
)


class Mapping:
    """The mapping file: old id → new id per kind, and what is finished. Saved atomically."""

    def __init__(self, path: Path, source: str, target: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "format": FORMAT,
            "note": NOTE,
            "source": source,
            "target": target,
            **{kind: {} for kind in KINDS},
            "model_versions": {},
            "finished": {kind: [] for kind in KINDS},
        }
        self.finished: dict[str, set[str]] = {kind: set() for kind in KINDS}

    @classmethod
    def open(cls, path: Path, source: str, target: str) -> Mapping:
        mapping = cls(path, source, target)
        if not path.exists():
            return mapping
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read the mapping file {path}: {exc}") from None
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise ClientError(f"{path} is not a mapping file written by `modelyard export`")
        for side, value in (("source", source), ("target", target)):
            if found.get(side) != value:
                raise ClientError(
                    f"{path} maps ids of {side} {found.get(side)}, not {value}: pass another "
                    "--mapping file for this pair of servers"
                )
        for key, value in mapping.data.items():
            found.setdefault(key, value)
        found["note"] = NOTE
        mapping.data = found
        for kind in KINDS:
            mapping.finished[kind] = set(found["finished"].get(kind, []))
        return mapping

    def ids(self, kind: str) -> dict[str, str]:
        table: dict[str, str] = self.data[kind]
        return table

    def versions(self, name: str) -> dict[str, str] | None:
        found: dict[str, str] | None = self.data["model_versions"].get(name)
        return found

    def is_finished(self, kind: str, old: str) -> bool:
        return old in self.finished[kind]

    def finish(self, kind: str, old: str, done: bool = True) -> None:
        if done:
            self.finished[kind].add(old)
        else:
            self.finished[kind].discard(old)
        self.data["finished"][kind] = sorted(self.finished[kind])
        self.save()

    def save(self) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", encoding="utf-8") as out:
            json.dump(self.data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.path)


@dataclass
class Tally:
    """What an export did, per kind: copied now, or found done by an earlier export."""

    exported: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    points: int = 0

    def count(self, kind: str, exported: bool = True) -> None:
        table = self.exported if exported else self.unchanged
        table[kind] = table.get(kind, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "exported": self.exported,
            "unchanged": self.unchanged,
            "metric_points": self.points,
            "files": self.files,
            "bytes": self.bytes,
        }


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Counting:
    """A response body read through, counting the bytes for the progress line."""

    def __init__(self, body: Any, advance: Callable[[int], None]) -> None:
        self.body = body
        self.advance = advance
        self.seen = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.body.read(size)
        self.seen += len(data)
        self.advance(len(data))
        return data


def _pairs(items: Iterable[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [{"key": str(p["key"]), "value": str(p.get("value", ""))} for p in items or []]


def _by_number(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (1 << 62, value)


class Export:
    """One export from ``source`` (a modelyard project) to ``target`` (an MLflow server)."""

    def __init__(
        self, source: Rest, target: Rest, mapping: Mapping, skip_deleted: bool = False
    ) -> None:
        self.source = source
        self.target = target
        self.mapping = mapping
        self.skip_deleted = skip_deleted
        self.tally = Tally()
        self.run_roots: dict[str, str] = {}  # new run id -> its artifact URI in the target
        self.model_roots: dict[str, str] = {}  # new model id -> its artifact URI in the target
        self.model_metrics: dict[str, list[dict[str, Any]]] = {}  # old run id -> model points
        self.created: set[str] = set()  # runs created by this export (not resumed ones)

    # the whole export ---------------------------------------------------------------------------

    def run(self) -> Tally:
        experiments = self._source_experiments()
        runs = self._source_runs(experiments)
        self._experiments(experiments)
        self._reopen(experiments, runs)
        self._create_runs(runs)
        self._logged_models(experiments)
        self._run_data(runs)
        self._close_experiments(experiments)
        self._registry()
        return self.tally

    # experiments --------------------------------------------------------------------------------

    def _source_experiments(self) -> list[dict[str, Any]]:
        found = self.source.pages(
            "POST", "/experiments/search", "experiments", {"max_results": 1000, "view_type": "ALL"}
        )
        kept = [e for e in found if not (self.skip_deleted and e.get("lifecycle_stage") == DELETED)]
        return sorted(kept, key=lambda e: _by_number(str(e["experiment_id"])))

    def _experiments(self, experiments: list[dict[str, Any]]) -> None:
        ids = self.mapping.ids("experiments")
        with Progress("experiments", 0, len(experiments), unit="experiments") as progress:
            for experiment in experiments:
                old = str(experiment["experiment_id"])
                if old in ids:
                    self.tally.count("experiments", exported=False)
                else:
                    ids[old] = self._create_experiment(experiment)
                    self.mapping.save()
                    self.tally.count("experiments")
                progress.file_done()

    def _create_experiment(self, experiment: dict[str, Any]) -> str:
        name = str(experiment["name"])
        tags = _pairs(experiment.get("tags"))
        try:
            created = self.target.post("/experiments/create", {"name": name, "tags": tags})
            return str(created["experiment_id"])
        except HttpError as exc:
            if exc.code != ALREADY_EXISTS or name != DEFAULT_EXPERIMENT:
                if exc.code == ALREADY_EXISTS:
                    raise self._taken(f"an experiment named {name!r}") from None
                raise
        found = self.target.get("/experiments/get-by-name", experiment_name=name)
        new = str(found["experiment"]["experiment_id"])
        for tag in tags:
            self.target.post("/experiments/set-experiment-tag", {"experiment_id": new, **tag})
        return new

    def _taken(self, what: str) -> ClientError:
        return ClientError(
            f"{self.target.label} already holds {what} that {self.mapping.path} does not map: "
            "export into a new MLflow server, or pass the --mapping file of the export that "
            "made it"
        )

    def _reopen(self, experiments: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
        """An experiment deleted in the target by an earlier export is restored while new
        runs go into it."""
        pending = {
            str(r["info"]["experiment_id"])
            for r in runs
            if not self.mapping.is_finished("runs", r["info"]["run_id"])
        }
        for experiment in experiments:
            old = str(experiment["experiment_id"])
            if old in pending and self.mapping.is_finished("experiments", old):
                new = self.mapping.ids("experiments")[old]
                if experiment.get("lifecycle_stage") == DELETED:
                    self.target.post("/experiments/restore", {"experiment_id": new})
                self.mapping.finish("experiments", old, done=False)

    def _close_experiments(self, experiments: list[dict[str, Any]]) -> None:
        for experiment in experiments:
            old = str(experiment["experiment_id"])
            if self.mapping.is_finished("experiments", old):
                continue
            if experiment.get("lifecycle_stage") == DELETED:
                new = self.mapping.ids("experiments")[old]
                self.target.post("/experiments/delete", {"experiment_id": new})
            self.mapping.finish("experiments", old)

    # runs ---------------------------------------------------------------------------------------

    def _source_runs(self, experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        view = "ACTIVE_ONLY" if self.skip_deleted else "ALL"
        runs: list[dict[str, Any]] = []
        for experiment in experiments:
            runs.extend(
                self.source.pages(
                    "POST",
                    "/runs/search",
                    "runs",
                    {
                        "experiment_ids": [str(experiment["experiment_id"])],
                        "run_view_type": view,
                        "max_results": 1000,
                        "order_by": ["attributes.start_time ASC"],
                    },
                )
            )
        return runs

    def _create_runs(self, runs: list[dict[str, Any]]) -> None:
        """Every run gets its id in the target, parents before their children."""
        by_id = {str(r["info"]["run_id"]): r for r in runs}
        ids = self.mapping.ids("runs")
        todo = [r for r in runs if str(r["info"]["run_id"]) not in ids]
        with Progress("runs (create)", 0, len(todo), unit="runs") as progress:

            def ensure(run: dict[str, Any], seen: set[str]) -> None:
                old = str(run["info"]["run_id"])
                if old in ids:
                    return
                parent = self._tag(run, PARENT_TAG)
                if parent and parent in by_id and parent not in seen:
                    ensure(by_id[parent], {*seen, old})
                ids[old] = self._create_run(run, ids.get(parent or ""))
                self.mapping.save()
                progress.file_done()

            for run in todo:
                ensure(run, set())

    @staticmethod
    def _tag(run: dict[str, Any], key: str) -> str | None:
        for tag in run.get("data", {}).get("tags", []):
            if tag.get("key") == key:
                return str(tag.get("value", ""))
        return None

    def _create_run(self, run: dict[str, Any], parent: str | None) -> str:
        info = run["info"]
        experiment = self.mapping.ids("experiments")[str(info["experiment_id"])]
        payload: dict[str, Any] = {
            "experiment_id": experiment,
            "user_id": info.get("user_id", ""),
            "run_name": info.get("run_name", ""),
            "tags": [{"key": PARENT_TAG, "value": parent}] if parent else [],
        }
        if info.get("start_time") is not None:
            payload["start_time"] = info["start_time"]
        created = self.target.post("/runs/create", payload)["run"]["info"]
        self.run_roots[str(created["run_id"])] = str(created.get("artifact_uri", ""))
        self.created.add(str(created["run_id"]))
        return str(created["run_id"])

    def _run_data(self, runs: list[dict[str, Any]]) -> None:
        ids = self.mapping.ids("runs")
        for run in runs:
            old = str(run["info"]["run_id"])
            if self.mapping.is_finished("runs", old):
                self.tally.count("runs", exported=False)
        todo = [r for r in runs if not self.mapping.is_finished("runs", str(r["info"]["run_id"]))]
        with Progress("runs", 0, len(todo), unit="runs") as progress:
            for run in todo:
                old = str(run["info"]["run_id"])
                self._fill_run(run, ids[old], progress)
                if run["info"].get("status") != "RUNNING":  # a running run is synced again
                    self.mapping.finish("runs", old)
                self.tally.count("runs")
                progress.file_done()

    def _fill_run(self, run: dict[str, Any], new: str, progress: Progress) -> None:
        info, data = run["info"], run.get("data", {})
        old = str(info["run_id"])
        held: dict[str, Any] | None = None  # a resumed run: what the target already has
        if new not in self.created:
            held = self.target.get("/runs/get", run_id=new)["run"]
            if held["info"].get("lifecycle_stage") == DELETED:
                self.target.post("/runs/restore", {"run_id": new})
        for params in chunks(_pairs(data.get("params")), PARAMS_PER_BATCH):
            self._batch(new, params=params)
        tags = [t for t in _pairs(data.get("tags")) if t["key"] != PARENT_TAG]
        for batch in chunks(tags, TAGS_PER_BATCH):
            self._batch(new, tags=batch)
        for key in sorted({str(m["key"]) for m in data.get("metrics", [])}):
            for points in chunks(self._history(old, key), METRICS_PER_BATCH):
                self._batch(new, metrics=points)
                self.tally.points += len(points)
        self._inputs(run, new, held)
        models = self.mapping.ids("logged_models")
        linked = [
            {**p, "model_id": models[p["model_id"]]}
            for p in self.model_metrics.get(old, [])
            if p["model_id"] in models
        ]
        for points in chunks(linked, METRICS_PER_BATCH):
            self._batch(new, metrics=points)
        self._copy_files(
            artifact_path(str(info.get("artifact_uri", "")), f"run {old} in the source"),
            artifact_path(self._run_root(new), f"run {new} in the target"),
            progress,
        )
        update: dict[str, Any] = {"run_id": new, "status": info.get("status", "FINISHED")}
        if info.get("end_time") is not None:
            update["end_time"] = info["end_time"]
        self.target.post("/runs/update", update)
        if info.get("lifecycle_stage") == DELETED:
            self.target.post("/runs/delete", {"run_id": new})

    def _batch(self, run_id: str, **entities: list[dict[str, Any]]) -> None:
        self.target.post("/runs/log-batch", {"run_id": run_id, **entities})

    def _history(self, run_id: str, key: str) -> Iterator[dict[str, Any]]:
        query = {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
        for point in self.source.pages("GET", "/metrics/get-history", "metrics", query):
            yield {
                "key": key,
                "value": point.get("value", 0),
                "timestamp": point.get("timestamp", 0),
                "step": point.get("step", 0),
            }

    def _inputs(self, run: dict[str, Any], new: str, found: dict[str, Any] | None) -> None:
        inputs, outputs = run.get("inputs", {}), run.get("outputs", {})
        models = self.mapping.ids("logged_models")
        held: set[tuple[str, Any]] = set()  # links a resumed run already has (MLflow repeats them)
        if found is not None:
            held |= {("in", m["model_id"]) for m in found.get("inputs", {}).get("model_inputs", [])}
            held |= {
                ("out", (m["model_id"], int(m.get("step", 0))))
                for m in found.get("outputs", {}).get("model_outputs", [])
            }
        datasets = [
            {"tags": _pairs(i.get("tags")), "dataset": i["dataset"]}
            for i in inputs.get("dataset_inputs", [])
        ]
        used = [
            {"model_id": models[m["model_id"]]}
            for m in inputs.get("model_inputs", [])
            if m.get("model_id") in models and ("in", models[m["model_id"]]) not in held
        ]
        if datasets or used:
            payload: dict[str, Any] = {"run_id": new, "datasets": datasets}
            if used:
                payload["models"] = used
            self.target.post("/runs/log-inputs", payload)
        made = [
            {"model_id": models[m["model_id"]], "step": m.get("step", 0)}
            for m in outputs.get("model_outputs", [])
            if m.get("model_id") in models
            and ("out", (models[m["model_id"]], int(m.get("step", 0)))) not in held
        ]
        if made:
            self.target.post("/runs/outputs", {"run_id": new, "models": made})

    def _run_root(self, new: str) -> str:
        if new not in self.run_roots:
            found = self.target.get("/runs/get", run_id=new)
            self.run_roots[new] = str(found["run"]["info"].get("artifact_uri", ""))
        return self.run_roots[new]

    # files --------------------------------------------------------------------------------------

    def _copy_files(self, source_root: str, target_root: str, progress: Progress) -> None:
        for path, size in self.source.list_files(source_root):
            body, length = self.source.open_file(f"{source_root}/{path}")
            expected = size if length is None else length
            reader = Counting(body, progress.advance)
            self.target.put_file(f"{target_root}/{path}", reader, expected)  # type: ignore[arg-type]
            if reader.seen != expected:
                raise ClientError(
                    f"{source_root}/{path} changed while it was copied ({reader.seen} bytes "
                    f"read, {expected} announced); run the export again"
                )
            self.tally.files += 1
            self.tally.bytes += expected

    # logged models ------------------------------------------------------------------------------

    def _logged_models(self, experiments: list[dict[str, Any]]) -> None:
        found: list[dict[str, Any]] = []
        for experiment in experiments:
            query = {"experiment_ids": [str(experiment["experiment_id"])], "max_results": 100}
            found.extend(self.source.pages("POST", "/logged-models/search", "models", query))
        ids = self.mapping.ids("logged_models")
        for model in found:
            for point in model.get("data", {}).get("metrics", []):
                old_run = point.get("run_id") or model["info"].get("source_run_id")
                if old_run:
                    self.model_metrics.setdefault(str(old_run), []).append(
                        self._model_point(point, model)
                    )
        todo = []
        for model in found:
            if self.mapping.is_finished("logged_models", str(model["info"]["model_id"])):
                self.tally.count("logged_models", exported=False)
            else:
                todo.append(model)
        with Progress("logged models", 0, len(todo), unit="models") as progress:
            for model in todo:
                old = str(model["info"]["model_id"])
                if old not in ids:
                    ids[old] = self._create_model(model)
                    self.mapping.save()
                new = ids[old]
                info = model["info"]
                self._copy_files(
                    artifact_path(str(info.get("artifact_uri", "")), f"model {old}"),
                    artifact_path(self._model_root(new), f"model {new} in the target"),
                    progress,
                )
                status = info.get("status")
                if status in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"):
                    self.target.call(
                        "PATCH", f"/logged-models/{new}", {"model_id": new, "status": status}
                    )
                self.mapping.finish("logged_models", old)
                self.tally.count("logged_models")
                progress.file_done()

    def _model_point(self, point: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
        out = {
            "key": point["key"],
            "value": point.get("value", 0),
            "timestamp": point.get("timestamp", 0),
            "step": point.get("step", 0),
            "model_id": str(model["info"]["model_id"]),  # replaced once the model is mapped
        }
        for name in ("dataset_name", "dataset_digest"):
            if point.get(name):
                out[name] = point[name]
        return out

    def _create_model(self, model: dict[str, Any]) -> str:
        info, data = model["info"], model.get("data", {})
        experiment = self.mapping.ids("experiments")[str(info["experiment_id"])]
        payload: dict[str, Any] = {
            "experiment_id": experiment,
            "name": info.get("name", ""),
            "params": _pairs(data.get("params")),
            "tags": _pairs(info.get("tags")),
        }
        if info.get("model_type"):
            payload["model_type"] = info["model_type"]
        source_run = self.mapping.ids("runs").get(str(info.get("source_run_id") or ""))
        if source_run:
            payload["source_run_id"] = source_run
        created = self.target.post("/logged-models", payload)["model"]["info"]
        new = str(created["model_id"])
        self.model_roots[new] = str(created.get("artifact_uri", ""))
        return new

    def _model_root(self, new: str) -> str:
        if new not in self.model_roots:
            found = self.target.get(f"/logged-models/{new}")
            self.model_roots[new] = str(found["model"]["info"].get("artifact_uri", ""))
        return self.model_roots[new]

    # registry -----------------------------------------------------------------------------------

    def _registry(self) -> None:
        models = list(
            self.source.pages(
                "GET", "/registered-models/search", "registered_models", {"max_results": 1000}
            )
        )
        with Progress("registered models", 0, len(models), unit="models") as progress:
            for model in models:
                self._registered_model(model)
                progress.file_done()

    def _registered_model(self, model: dict[str, Any]) -> None:
        name = str(model["name"])
        mapped = self.mapping.versions(name)
        description = str(model.get("description") or "")
        tags = _pairs(model.get("tags"))
        fresh = mapped is None
        if mapped is None:
            try:
                self.target.post(
                    "/registered-models/create",
                    {"name": name, "description": description, "tags": tags},
                )
            except HttpError as exc:
                if exc.code == ALREADY_EXISTS:
                    raise self._taken(f"a registered model named {name!r}") from None
                raise
            mapped = {}
            self.mapping.data["model_versions"][name] = mapped
            self.mapping.save()
            self.tally.count("registered_models")
        else:
            self.target.call(
                "PATCH", "/registered-models/update", {"name": name, "description": description}
            )
            for tag in tags:
                self.target.post("/registered-models/set-tag", {"name": name, **tag})
            self.tally.count("registered_models", exported=False)
        versions = self.source.pages(
            "GET",
            "/model-versions/search",
            "model_versions",
            {"filter": "name = '{}'".format(name.replace("'", "\\'")), "max_results": 10000},
        )
        for version in sorted(versions, key=lambda v: _by_number(str(v["version"]))):
            if str(version["version"]) in mapped:
                self._sync_version(version, mapped[str(version["version"])])
                self.tally.count("model_versions", exported=False)
                continue
            mapped[str(version["version"])] = self._version(version, fresh)
            self.mapping.save()
            self.tally.count("model_versions")
        wanted = {
            str(a["alias"]): mapped[str(a.get("version"))]
            for a in model.get("aliases", [])
            if str(a.get("version")) in mapped
        }
        if not fresh:  # an alias removed at the source since the last export goes too
            current = self.target.get("/registered-models/get", name=name)["registered_model"]
            for alias in current.get("aliases", []):
                if str(alias["alias"]) not in wanted:
                    self.target.call(
                        "DELETE",
                        "/registered-models/alias",
                        {"name": name, "alias": alias["alias"]},
                    )
        for alias, number in wanted.items():
            self.target.post(
                "/registered-models/alias", {"name": name, "alias": alias, "version": number}
            )

    def _sync_version(self, version: dict[str, Any], number: str) -> None:
        """A version exported before: its stage and description as the source has them now."""
        name = str(version["name"])
        found = self.target.get("/model-versions/get", name=name, version=number)["model_version"]
        description = str(version.get("description") or "")
        if str(found.get("description") or "") != description:
            self.target.call(
                "PATCH",
                "/model-versions/update",
                {"name": name, "version": number, "description": description},
            )
        stage = str(version.get("current_stage") or "None")
        if str(found.get("current_stage") or "None") != stage:
            self._stage(name, number, stage)

    def _version(self, version: dict[str, Any], fresh: bool) -> str:
        """Create the version; in a model this export made, the numbers of deleted versions
        are used up (created and deleted again) so that the numbers stay the same."""
        name = str(version["name"])
        payload: dict[str, Any] = {
            "name": name,
            "source": self._source_uri(str(version.get("source") or "")),
            "description": str(version.get("description") or ""),
            "tags": _pairs(version.get("tags")),
        }
        run = self.mapping.ids("runs").get(str(version.get("run_id") or ""))
        if run:
            payload["run_id"] = run
        if version.get("run_link"):
            payload["run_link"] = version["run_link"]
        model_id = self.mapping.ids("logged_models").get(str(version.get("model_id") or ""))
        if model_id:
            payload["model_id"] = model_id
        wanted = int(version["version"]) if str(version["version"]).isdigit() else 0
        while True:
            created = self.target.post("/model-versions/create", payload)["model_version"]
            number = str(created["version"])
            if not (fresh and int(number) < wanted):
                break
            self.target.call("DELETE", "/model-versions/delete", {"name": name, "version": number})
        stage = str(version.get("current_stage") or "None")
        if stage != "None":
            self._stage(name, number, stage)
        return number

    def _stage(self, name: str, number: str, stage: str) -> None:
        self.target.post(
            "/model-versions/transition-stage",
            {"name": name, "version": number, "stage": stage, "archive_existing_versions": False},
        )

    def _source_uri(self, source: str) -> str:
        """A version's source, pointing at the target's copy of its run or logged model."""
        runs, models = self.mapping.ids("runs"), self.mapping.ids("logged_models")
        if source.startswith("models:/"):
            rest = source[len("models:/") :]
            head, sep, tail = rest.partition("/")
            if head in models:
                return f"models:/{models[head]}{sep}{tail}"
        if source.startswith("runs:/"):
            head, sep, tail = source[len("runs:/") :].partition("/")
            if head in runs:
                return f"runs:/{runs[head]}{sep}{tail}"
        if source.startswith("mlflow-artifacts:"):
            parts = artifact_path(source, "a version's source").split("/")
            if len(parts) >= 3 and parts[1] in runs and parts[2] == "artifacts":
                rest = "/".join(parts[3:])
                return f"{self._run_root(runs[parts[1]])}/{rest}".rstrip("/")
            if len(parts) >= 4 and parts[1] == "models" and parts[2] in models:
                rest = "/".join(parts[4:])
                return f"{self._model_root(models[parts[2]])}/{rest}".rstrip("/")
        return source


def summary(tally: Tally) -> str:
    kinds = ("experiments", "runs", "logged_models", "registered_models", "model_versions")
    made = ", ".join(f"{tally.exported.get(k, 0)} {k.replace('_', ' ')}" for k in kinds)
    kept = sum(tally.unchanged.values())
    return (
        f"exported {made}; {tally.points:,} metric points, {tally.files} files "
        f"({output.size(tally.bytes)}); {kept} already in the target"
    )
