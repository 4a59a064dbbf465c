"""Moving an MLflow history into a modelyard project: experiments, runs with their ids, every
metric point, datasets, artifacts (streamed and checksummed), logged models, registered models
with their version numbers, and aliases.

The source is anything with the reading methods of ``mlflow_rest.MlflowRest`` (a live server,
or MLflow's stores read directly). The target is written only through its public HTTP API:
the native ``/api/v1/imports`` calls, which are idempotent, and the MLflow artifact routes.
Running the import again brings only what is new or changed; an interrupted import continues
where it stopped, since everything it wrote before is found ``unchanged``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from modelyard_client import output
from modelyard_client.errors import ClientError, HttpError
from modelyard_client.http import Http, file_path, seg
from modelyard_client.mlflow_rest import Json, pairs

# steps, timestamps and values (floats, NaN and infinities included)
Columns = tuple[list[int], list[int], list[float]]

MAX_BODY = 800_000  # bytes of linked points per request (the server takes up to 1 MiB)
POINT_BYTES = 110  # a point's JSON without its key and optional fields, at most
MAX_POINTS = 5000
# Metric points travel in columns: up to SERIES_POINTS a call (the server takes 50,000 in
# 4 MiB; a point is at most 63 bytes). A run with at most SMALL_RUN points goes with others,
# up to RUNS_PER_CALL runs and SERIES_POINTS points (RUNS_BODY bytes) a call.
SERIES_POINTS = 25_000
SMALL_RUN = 2_000
RUNS_PER_CALL = 100
RUNS_BODY = 3_000_000
ENTITIES = (
    "experiments",
    "runs",
    "metric points",
    "logged models",
    "files",
    "models",
    "versions",
    "aliases",
)
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_SOURCE_EXPERIMENT = re.compile(r"^mlflow-artifacts:/+(\d+)/(.*)$")
LOGGED_MODEL_STATUS = {
    "LOGGED_MODEL_READY": "LOGGED_MODEL_READY",
    "READY": "LOGGED_MODEL_READY",
    "LOGGED_MODEL_PENDING": "LOGGED_MODEL_PENDING",
    "PENDING": "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_UPLOAD_FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}


class Source(Protocol):
    """What the importer reads; ``MlflowRest`` and the store readers have it."""

    def experiments(self) -> Iterator[Json]: ...
    def runs(self, experiment_id: str) -> Iterator[Json]: ...
    def history(self, run_id: str, key: str) -> Iterator[list[Json]]: ...
    # optional: ``history_columns(run_id, key, page) -> Iterator[Columns]``, the same points
    # in columns (without a dictionary per point), ``page`` points at a time
    def run_files(self, run_id: str) -> Iterator[tuple[str, int]]: ...
    def open_run_file(self, run_id: str, path: str) -> BinaryIO: ...
    def logged_models(self, experiment_ids: list[str]) -> Iterator[Json]: ...
    def model_files(self, model: Json) -> Iterator[tuple[str, int]]: ...
    def open_model_file(self, model: Json, path: str) -> BinaryIO: ...
    def registered_models(self) -> Iterator[Json]: ...
    def versions(self, name: str) -> list[Json]: ...


@dataclass
class Tally:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    def add(self, outcome: str, count: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + count)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A run waiting to be sent with others: as read, its JSON, its number of points."""

    run: Json
    encoded: str
    points: int


@dataclass
class Report:
    tallies: dict[str, Tally] = field(default_factory=lambda: {e: Tally() for e in ENTITIES})
    bytes_sent: int = 0
    failures: list[str] = field(default_factory=list)
    experiment_ids: dict[str, str] = field(default_factory=dict)  # source id -> target id

    def count(self, entity: str, outcome: str, n: int = 1) -> None:
        self.tallies[entity].add(outcome, n)

    def fail(self, entity: str, what: str, why: str) -> None:
        self.tallies[entity].failed += 1
        self.failures.append(f"{entity[:-1] if entity.endswith('s') else entity} {what}: {why}")

    def as_json(self) -> dict[str, Any]:
        return {
            "entities": {k: vars(t) for k, t in self.tallies.items()},
            "bytes": self.bytes_sent,
            "failures": self.failures,
            "experiment_ids": self.experiment_ids,
        }


class Status:
    """One line on a terminal: what is being imported and how far it got."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.enabled = output.is_terminal()
        self.shown = ""

    def show(self, doing: str) -> None:
        if not self.enabled:
            return
        t = self.report.tallies
        done = {e: sum(vars(t[e]).values()) for e in ENTITIES}
        line = (
            f"\rimport: {done['experiments']} experiments, {done['runs']} runs, "
            f"{t['metric points'].imported:,} new points, {done['files']} files "
            f"({output.size(self.report.bytes_sent)}), {done['versions']} versions — {doing}"
        )
        import sys

        sys.stderr.write(line[:200] + "\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            import sys

            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


class Hashing:
    """A readable body that hashes what it passes on and counts it."""

    def __init__(self, raw: BinaryIO, report: Report) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self.report = report

    def read(self, amount: int = -1) -> bytes:
        chunk = self.raw.read(amount)
        self.digest.update(chunk)
        self.size += len(chunk)
        self.report.bytes_sent += len(chunk)
        return chunk


class Importer:
    def __init__(self, source: Source, target: Http, *, skip_deleted: bool = False) -> None:
        self.source = source
        self.target = target
        self.skip_deleted = skip_deleted
        self.report = Report()
        self.status = Status(self.report)
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="points")
        self.batch: list[Waiting] = []  # runs waiting to be sent
        self.batch_points = 0
        self.batch_bytes = 0
        self.sent: tuple[list[Waiting], Future[list[Json] | None]] | None = None

    # the whole import -------------------------------------------------------------------------

    def run(self) -> Report:
        try:
            experiments = [e for e in self.source.experiments() if self._wanted(e)]
            for experiment in experiments:
                self._experiment(experiment)
            for experiment in experiments:
                source_id = str(experiment["experiment_id"])
                if source_id in self.report.experiment_ids:
                    for run in self.source.runs(source_id):
                        if self._wanted(run["info"]):
                            self._run(run)
            self._send_runs()
            self._take_runs()
            self._logged_models(list(self.report.experiment_ids))
            for model in self.source.registered_models():
                self._registered_model(model)
        finally:
            self.sender.shutdown(wait=True)
            self.status.close()
        return self.report

    def _wanted(self, info: Json) -> bool:
        return not (self.skip_deleted and info.get("lifecycle_stage") == "deleted")

    def _put(self, path: str, payload: Json) -> Json:
        return self.target.call("PUT", path, payload=payload)  # type: ignore[no-any-return]

    # experiments and runs -------------------------------------------------------------------

    def _experiment(self, experiment: Json) -> None:
        source_id = str(experiment["experiment_id"])
        name = str(experiment["name"])
        self.status.show(f"experiment {name}")
        created = int(experiment.get("creation_time") or 0)
        payload = {
            "name": name,
            "lifecycle_stage": experiment.get("lifecycle_stage", "active"),
            "creation_time": created,
            "last_update_time": int(experiment.get("last_update_time") or created),
            "tags": pairs(experiment.get("tags")),
        }
        try:
            found = self._put(f"/imports/experiments/{seg(source_id)}", payload)
        except HttpError as exc:
            self.report.fail("experiments", repr(name), str(exc))
            return
        self.report.experiment_ids[source_id] = str(found["experiment_id"])
        self.report.count("experiments", found["outcome"])

    def _run(self, run: Json) -> None:
        """A run with at most SMALL_RUN points waits to go with others (``_send_runs``);
        a longer one goes at once, its points streamed."""
        info, data = run["info"], run.get("data", {})
        run_id = str(info["run_id"])
        self.status.show(f"run {run_id}")
        payload = self._run_payload(run)
        keys = sorted({str(m["key"]) for m in data.get("metrics", [])})
        small = self._small_series(run_id, keys)
        if small is None:
            self._long_run(run, payload, keys)
            return
        series, points = small
        encoded = _json({"run_id": run_id, **payload, "metrics": series})
        if self.batch and (
            len(self.batch) >= RUNS_PER_CALL
            or self.batch_points + points > SERIES_POINTS
            or self.batch_bytes + len(encoded) > RUNS_BODY
        ):
            self._send_runs()
        self.batch.append(Waiting(run, encoded, points))
        self.batch_points += points
        self.batch_bytes += len(encoded) + 1

    def _send_runs(self) -> None:
        """Send the waiting runs in one call, while the next ones are read; then what the
        previous call answered is counted and its runs' files follow."""
        if not self.batch:
            return
        batch, self.batch, self.batch_points, self.batch_bytes = self.batch, [], 0, 0
        body = ('{"runs":[' + ",".join(one.encoded for one in batch) + "]}").encode()
        self._take_runs()
        self.sent = (batch, self.sender.submit(self._post_runs, body))

    def _post_runs(self, body: bytes) -> list[Json] | None:
        """Each run's answer; None when the call as a whole was refused."""
        try:
            return self._post("/api/v1/imports/runs", body)["runs"]  # type: ignore[no-any-return]
        except HttpError:
            return None

    def _take_runs(self) -> None:
        if self.sent is None:
            return
        batch, pending = self.sent
        self.sent = None
        answers = pending.result()
        if answers is None:  # one by one: the refused one fails alone, with its reason
            for one in batch:
                self._one_run(one)
            return
        for one, answer in zip(batch, answers, strict=True):
            self._run_done(one, answer)

    def _one_run(self, waiting: Waiting) -> None:
        item = json.loads(waiting.encoded)
        run_id = str(item.pop("run_id"))
        series = item.pop("metrics")
        try:
            found = self._put(f"/imports/runs/{seg(run_id)}", item)
            answer = {"run_id": run_id, "outcome": found["outcome"], "added": 0}
            if series:
                body = _json({"series": series}).encode()
                path = f"/api/v1/imports/runs/{seg(run_id)}/metric-series"
                answer["added"] = int(self._post(path, body)["added"])
        except HttpError as exc:
            answer = {"run_id": run_id, "error": {"message": str(exc)}}
        self._run_done(waiting, answer)

    def _run_done(self, waiting: Waiting, answer: Json) -> None:
        run_id = str(answer["run_id"])
        if answer.get("error"):
            self.report.fail("runs", run_id, str(answer["error"]["message"]))
            return
        self.report.count("runs", answer["outcome"])
        added = int(answer["added"])
        self.report.count("metric points", "imported", added)
        self.report.count("metric points", "unchanged", waiting.points - added)
        self._run_files(waiting.run)

    def _run_files(self, run: Json) -> None:
        run_id = str(run["info"]["run_id"])
        target_experiment = self.report.experiment_ids[str(run["info"]["experiment_id"])]
        self._files(
            self.source.run_files(run_id),
            lambda path: self.source.open_run_file(run_id, path),
            f"/packages/{seg(run_id)}/0/files",
            f"{_ARTIFACTS}/{target_experiment}/{run_id}/artifacts/",
            run_id,
        )

    def _post(self, path: str, body: bytes) -> Json:
        response = self.target.send(
            "POST", path, body=body, headers={"Content-Type": "application/json"}
        )
        raw = self.target.read(response)
        if response.status >= 400:
            raise self.target.failure(response, raw)
        return json.loads(raw)  # type: ignore[no-any-return]

    def _small_series(self, run_id: str, keys: list[str]) -> tuple[list[Json], int] | None:
        """The run's metrics in columns and how many points they hold, when at most
        SMALL_RUN (none linked to a model or dataset); None otherwise."""
        series: list[Json] = []
        count = 0
        for key in keys:
            steps: list[int] = []
            stamps: list[int] = []
            values: list[Any] = []
            pages = self._columns(run_id, key, SMALL_RUN + 1)
            for page_steps, page_stamps, page_values, linked in pages:
                count += len(page_steps) + len(linked)
                if linked or count > SMALL_RUN:
                    return None
                steps += page_steps
                stamps += page_stamps
                values += page_values
            if steps:
                try:
                    series.append(_series(key, steps, stamps, values))
                except OverflowError:  # the long way reports it
                    return None
        return series, count

    def _columns(
        self, run_id: str, key: str, page: int | None = None
    ) -> Iterator[tuple[list[int], list[int], list[Any], list[Json]]]:
        """The metric's points a page at a time (of ``page`` points where the source reads
        columns): columns of the plain points, and the points linked to a model or dataset
        (which go as points, not columns)."""
        reader = getattr(self.source, "history_columns", None)
        if reader is not None:
            pages = reader(run_id, key) if page is None else reader(run_id, key, page)
            for steps, stamps, values in pages:
                yield steps, stamps, values, []
            return
        for points in self.source.history(run_id, key):
            steps, stamps, values, linked = [], [], [], []
            for point in points:
                value = _point(key, point)
                if len(value) > 4:
                    linked.append(value)
                    continue
                try:
                    number = float(value["value"])  # "NaN", "Infinity": the float
                except ValueError:  # not a number: sent as it is, for the server to refuse
                    linked.append(value)
                    continue
                steps.append(value["step"])
                stamps.append(value["timestamp"])
                values.append(number)
            yield steps, stamps, values, linked

    def _long_run(self, run: Json, payload: Json, keys: list[str]) -> None:
        run_id = str(run["info"]["run_id"])
        try:
            found = self._put(f"/imports/runs/{seg(run_id)}", payload)
        except HttpError as exc:
            self.report.fail("runs", run_id, str(exc))
            return
        self.report.count("runs", found["outcome"])
        try:
            for key in keys:
                self._points(run_id, key)
        except HttpError as exc:
            self.report.fail("metric points", f"of run {run_id}", str(exc))
        except OverflowError:
            why = "a step or time does not fit in 64 bits"
            self.report.fail("metric points", f"of run {run_id}", why)
        self._run_files(run)

    def _run_payload(self, run: Json) -> Json:
        info, data = run["info"], run.get("data", {})
        target_experiment = self.report.experiment_ids[str(info["experiment_id"])]
        inputs = run.get("inputs", {})
        return {
            "experiment_id": target_experiment,
            "name": info.get("run_name") or pairs(data.get("tags")).get("mlflow.runName", ""),
            "user_id": info.get("user_id") or "",
            "status": info.get("status", "FINISHED"),
            "start_time": int(info.get("start_time") or 0),
            "end_time": None if info.get("end_time") is None else int(info["end_time"]),
            "lifecycle_stage": info.get("lifecycle_stage", "active"),
            "params": pairs(data.get("params")),
            "tags": pairs(data.get("tags")),
            "inputs": [_dataset_input(i) for i in inputs.get("dataset_inputs", [])],
            "model_inputs": [m["model_id"] for m in inputs.get("model_inputs", [])],
            "model_outputs": [
                {"model_id": m["model_id"], "step": int(m.get("step") or 0)}
                for m in run.get("outputs", {}).get("model_outputs", [])
            ],
        }

    def _points(self, run_id: str, key: str) -> None:
        """The metric's history in columns, SERIES_POINTS a call; each call is sent while
        the next one is read. Points linked to a model or dataset go as points."""
        pending: Future[None] | None = None

        def flush(send: Any, *args: Any) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = self.sender.submit(send, run_id, *args)

        steps: list[int] = []
        stamps: list[int] = []
        values: list[Any] = []
        linked: list[Json] = []
        size = 0
        for page_steps, page_stamps, page_values, page_linked in self._columns(run_id, key):
            steps += page_steps
            stamps += page_stamps
            values += page_values
            for point in page_linked:  # model and dataset links make a point longer
                linked.append(point)
                size += POINT_BYTES + len(key) + sum(len(str(v)) + 20 for v in point.values())
                if size > MAX_BODY or len(linked) >= MAX_POINTS:
                    flush(self._send_points, linked)
                    linked, size = [], 0
            while len(steps) >= SERIES_POINTS:
                flush(
                    self._send_series,
                    key,
                    steps[:SERIES_POINTS],
                    stamps[:SERIES_POINTS],
                    values[:SERIES_POINTS],
                )
                del steps[:SERIES_POINTS], stamps[:SERIES_POINTS], values[:SERIES_POINTS]
        if steps:
            flush(self._send_series, key, steps, stamps, values)
        if linked:
            flush(self._send_points, linked)
        if pending is not None:
            pending.result()

    def _send_series(
        self, run_id: str, key: str, steps: list[int], stamps: list[int], values: list[Any]
    ) -> None:
        body = {"series": [_series(key, steps, stamps, values)]}
        added = int(
            self._post(f"/api/v1/imports/runs/{seg(run_id)}/metric-series", _json(body).encode())[
                "added"
            ]
        )
        self.report.count("metric points", "imported", added)
        self.report.count("metric points", "unchanged", len(steps) - added)
        self.status.show(f"run {run_id} metrics")

    def _send_points(self, run_id: str, batch: list[Json], *, link_only: bool = False) -> None:
        payload: Json = {"points": batch}
        if link_only:
            payload["link_only"] = True
        response = self.target.send(
            "POST",
            f"/api/v1/imports/runs/{seg(run_id)}/metrics",
            body=json.dumps(payload, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )
        raw = self.target.read(response)
        if response.status >= 400:
            raise self.target.failure(response, raw)
        added = int(json.loads(raw)["added"])
        if not link_only:  # links are not points of their own
            self.report.count("metric points", "imported", added)
            self.report.count("metric points", "unchanged", len(batch) - added)
        self.status.show(f"run {run_id} metrics")

    # files ------------------------------------------------------------------------------------

    def _files(
        self,
        listed: Iterable[tuple[str, int]],
        opener: Any,
        target_listing: str,
        target_prefix: str,
        owner: str,
    ) -> None:
        try:
            wanted = list(listed)
            have = self._target_files(target_listing) if wanted else {}
        except (HttpError, ClientError) as exc:
            self.report.fail("files", f"of {owner}", str(exc))
            return
        sent: dict[str, tuple[int, str]] = {}
        for path, size in wanted:
            if path in have and have[path][0] == size:
                self.report.count("files", "unchanged")
                continue
            self.status.show(f"{owner}: {path}")
            try:
                sent[path] = self._send_file(opener(path), size, target_prefix + file_path(path))
            except (HttpError, ClientError) as exc:
                self.report.fail("files", f"{owner}/{path}", str(exc))
        if not sent:
            return
        try:
            stored = self._target_files(target_listing)
        except (HttpError, ClientError) as exc:
            self.report.fail("files", f"of {owner}", str(exc))
            return
        for path, (size, digest) in sent.items():
            if stored.get(path) != (size, digest):
                self.report.fail("files", f"{owner}/{path}", "the stored checksum differs")
            else:
                self.report.count("files", "updated" if path in have else "imported")

    def _target_files(self, listing: str) -> dict[str, tuple[int, str]]:
        try:
            found = self.target.call("GET", listing)
        except HttpError as exc:
            if exc.status == 404:
                return {}
            raise
        return {f["path"]: (int(f["size"]), f["sha256"]) for f in found.get("files", [])}

    def _send_file(self, response: Any, size: int, location: str) -> tuple[int, str]:
        length = response.getheader("content-length") if hasattr(response, "getheader") else None
        body = Hashing(response, self.report)
        headers = {"Content-Type": "application/octet-stream"}
        headers["Content-Length"] = str(int(length) if length is not None else size)
        try:
            answer = self.target.send("PUT", location, body=body, headers=headers)  # type: ignore[arg-type]
        finally:
            response.close()
        raw = self.target.read(answer)
        if answer.status >= 400:
            raise self.target.failure(answer, raw)
        return body.size, body.digest.hexdigest()

    # logged models ------------------------------------------------------------------------------

    def _logged_models(self, source_experiments: list[str]) -> None:
        for model in self.source.logged_models(source_experiments):
            info, data = model["info"], model.get("data", {})
            model_id = str(info["model_id"])
            self.status.show(f"logged model {model_id}")
            target_experiment = self.report.experiment_ids.get(str(info["experiment_id"]))
            if target_experiment is None:
                continue
            created = int(info.get("creation_timestamp_ms") or 0)
            payload = {
                "experiment_id": target_experiment,
                "name": info.get("name") or model_id,
                "model_type": info.get("model_type") or "",
                "status": LOGGED_MODEL_STATUS.get(str(info.get("status")), "LOGGED_MODEL_READY"),
                "source_run_id": info.get("source_run_id") or None,
                "creation_time": created,
                "last_updated_time": int(info.get("last_updated_timestamp_ms") or created),
                "params": pairs(data.get("params")),
                "tags": pairs(info.get("tags")),
            }
            try:
                found = self._put(f"/imports/logged-models/{seg(model_id)}", payload)
            except HttpError as exc:
                self.report.fail("logged models", model_id, str(exc))
                continue
            self.report.count("logged models", found["outcome"])
            self._model_points(model_id, data.get("metrics") or [])
            self._files(
                self.source.model_files(model),
                lambda path, m=model: self.source.open_model_file(m, path),
                f"/packages/{seg(model_id)}/0/files",
                f"{_ARTIFACTS}/{target_experiment}/models/{model_id}/artifacts/",
                model_id,
            )

    def _model_points(self, model_id: str, metrics: list[Json]) -> None:
        """The logged model's metrics: the points of its run at the same key, step and time are
        linked to it (MLflow keeps a model's metrics apart, NaN as 0)."""
        by_run: dict[str, list[Json]] = {}
        for metric in metrics:
            if metric.get("run_id"):
                point = _point(str(metric["key"]), {**metric, "model_id": model_id})
                by_run.setdefault(str(metric["run_id"]), []).append(point)
        for run_id, batch in by_run.items():
            try:
                for start in range(0, len(batch), 1000):
                    self._send_points(run_id, batch[start : start + 1000], link_only=True)
            except HttpError as exc:
                self.report.fail("metric points", f"of logged model {model_id}", str(exc))

    # registry -----------------------------------------------------------------------------------

    def _registered_model(self, model: Json) -> None:
        name = str(model["name"])
        self.status.show(f"model {name}")
        created = int(model.get("creation_timestamp") or 0)
        payload = {
            "description": model.get("description") or "",
            "creation_time": created,
            "last_updated_time": int(model.get("last_updated_timestamp") or created),
            "tags": pairs(model.get("tags")),
        }
        try:
            found = self._put(f"/imports/models/{seg(name)}", payload)
        except HttpError as exc:
            self.report.fail("models", repr(name), str(exc))
            return
        self.report.count("models", found["outcome"])
        for version in self.source.versions(name):
            self._version(name, version)
        if self._aliases(name, model.get("aliases") or []):
            # moving an alias touched the model: its times as they were in the source
            with contextlib.suppress(HttpError):
                self._put(f"/imports/models/{seg(name)}", payload)

    def _version(self, name: str, version: Json) -> None:
        number = int(version["version"])
        created = int(version.get("creation_timestamp") or 0)
        payload: Json = {
            "source": self._source(str(version.get("source") or "")),
            "run_id": version.get("run_id") or None,
            "model_id": version.get("model_id") or None,
            "run_link": version.get("run_link") or "",
            "description": version.get("description") or "",
            "status": version.get("status") or "READY",
            "stage": version.get("current_stage") or "None",
            "creation_time": created,
            "last_updated_time": int(version.get("last_updated_timestamp") or created),
            "tags": pairs(version.get("tags")),
        }
        try:
            found = self._put(f"/imports/models/{seg(name)}/versions/{number}", payload)
        except HttpError as exc:
            self.report.fail("versions", f"{name} {number}", str(exc))
            return
        self.report.count("versions", found["outcome"])

    def _source(self, source: str) -> str:
        """A source inside the source server's artifact store, under this server's ids."""
        match = _SOURCE_EXPERIMENT.match(source)
        if match is None:
            return source or "-"
        mapped = self.report.experiment_ids.get(match.group(1), match.group(1))
        return f"mlflow-artifacts:/{mapped}/{match.group(2)}"

    def _aliases(self, name: str, aliases: list[Json]) -> bool:
        """Set the model's aliases; whether any moved."""
        if not aliases:
            return False
        try:
            have = self.target.call("GET", f"/models/{seg(name)}").get("aliases", {})
        except HttpError as exc:
            self.report.fail("aliases", f"of {name}", str(exc))
            return False
        moved = False
        for entry in aliases:
            alias, number = str(entry["alias"]), int(entry["version"])
            if have.get(alias) == number:
                self.report.count("aliases", "unchanged")
                continue
            try:
                self._put(f"/models/{seg(name)}/aliases/{seg(alias)}", {"version": number})
            except HttpError as exc:
                self.report.fail("aliases", f"{name}@{alias}", str(exc))
                continue
            moved = True
            self.report.count("aliases", "updated" if alias in have else "imported")
        return moved


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _series(key: str, steps: list[int], stamps: list[int], values: list[float]) -> Json:
    """A metric's points as the server takes them: packed, 24 bytes a point (step and
    timestamp as little-endian 64-bit integers, the value as a double), in base64. Exact
    whatever the value, and quick to write and read."""
    raw = bytearray(24 * len(steps))
    if sys.byteorder == "little":
        ints, doubles = memoryview(raw).cast("q"), memoryview(raw).cast("d")
        ints[0::3] = array("q", steps)
        ints[1::3] = array("q", stamps)
        doubles[2::3] = array("d", values)
    else:
        raw[:] = b"".join(map(_ROW.pack, steps, stamps, values))
    return {"key": key, "packed": base64.b64encode(raw).decode()}


_ROW = struct.Struct("<qqd")


def _dataset_input(entry: Json) -> Json:
    dataset = entry["dataset"]
    out = {
        "name": dataset["name"],
        "digest": dataset["digest"],
        "source_type": dataset["source_type"],
        "source": dataset["source"],
    }
    for optional in ("schema", "profile"):
        if dataset.get(optional):
            out[optional] = dataset[optional]
    return {"dataset": out, "tags": pairs(entry.get("tags"))}


_SPECIAL = {
    "nan": "NaN",
    "infinity": "Infinity",
    "-infinity": "-Infinity",
    "inf": "Infinity",
    "-inf": "-Infinity",
}


def _point(key: str, point: Json) -> Json:
    value = point.get("value", 0)
    if isinstance(value, str):
        value = _SPECIAL.get(value.lower(), value)
    elif isinstance(value, float) and not math.isfinite(value):
        value = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    out: Json = {
        "key": key,
        "value": value,
        "timestamp": int(point.get("timestamp") or 0),
        "step": int(point.get("step") or 0),
    }
    if len(point) > 4:
        for optional in ("model_id", "dataset_name", "dataset_digest"):
            if point.get(optional):
                out[optional] = point[optional]
    return out
