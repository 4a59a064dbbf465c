"""MLflow's storage read directly, for ``import mlflow --store``: its SQL database (SQLite,
PostgreSQL, MySQL) through SQLAlchemy Core, streaming, with the artifact root as a folder; or
a file store folder (``mlruns``). Both give what ``mlflow_rest.MlflowRest`` gives, in MLflow's
REST shapes, so the importer and ``--verify`` treat every source alike.

SQLAlchemy (and PyYAML for the file store) are needed only here: they come with
``pip install 'modelyard-client[stores]'`` (or with MLflow itself).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from modelyard_client.errors import ClientError
from modelyard_client.mlflow_rest import Json

HISTORY_PAGE = 25_000
RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
MODEL_STATUS = {
    0: "LOGGED_MODEL_STATUS_UNSPECIFIED",
    1: "LOGGED_MODEL_PENDING",
    2: "LOGGED_MODEL_READY",
    3: "LOGGED_MODEL_UPLOAD_FAILED",
}
DELETED_VERSION = "Deleted_Internal"


def open_store(where: str, artifact_root: str | None) -> Any:
    """The reader for a database URL or a file store folder."""
    if "://" in where and not where.startswith("file:"):
        return SqlStore(where, artifact_root)
    folder = Path(unquote(urlsplit(where).path) if where.startswith("file:") else where)
    if not folder.is_dir():
        raise ClientError(f"--store {where}: no such folder (a file store) and not a database URL")
    return FileStore(folder)


def _need(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ClientError(
            f"reading {what} needs {module}: pip install 'modelyard-client[stores]'"
        ) from None


def _tags(rows: Any) -> list[Json]:
    return [{"key": k, "value": v if v is not None else ""} for k, v in rows]


def _value(value: float | None, is_nan: bool = False) -> Any:
    if is_nan or value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# steps, timestamps and values (floats, NaN and infinities included)
Columns = tuple[list[int], list[int], list[float]]
_VALUE, _STAMP, _STEP, _NAN = (itemgetter(i) for i in range(4))


def _columns(rows: Any) -> Columns:
    """Columns of rows (value, timestamp, step, is_nan), in C loops (map)."""
    steps = list(map(_STEP, rows))
    stamps = list(map(_STAMP, rows))
    values = list(map(_VALUE, rows))
    if any(map(_NAN, rows)) or None in values:
        for i, (value, _, _, nan) in enumerate(rows):
            if nan or value is None:
                values[i] = math.nan
    return steps, stamps, values


class LocalArtifacts:
    """Artifact locations resolved to folders: ``file:`` and plain paths as they are,
    ``mlflow-artifacts:/…`` below the artifact root."""

    def __init__(self, root: str | None) -> None:
        self.root = Path(root) if root else None

    def folder(self, uri: str) -> Path | None:
        if uri.startswith("mlflow-artifacts:"):
            rest = uri.removeprefix("mlflow-artifacts:")
            if rest.startswith("//"):
                rest = "/" + rest[2:].partition("/")[2]
            return None if self.root is None else self.root / rest.strip("/")
        if uri.startswith("file:"):
            return Path(unquote(urlsplit(uri).path))
        if "://" in uri:
            return None  # object storage: not read here
        return Path(uri)

    def files(self, uri: str) -> Iterator[tuple[str, int]]:
        base = self.folder(uri)
        if base is None:
            if uri:
                raise ClientError(
                    f"cannot read artifacts at {uri[:200]} (give --artifact-root for "
                    "mlflow-artifacts: locations; object stores are read through --from)"
                )
            return
        if not base.is_dir():
            return
        for folder, _dirs, names in os.walk(base):
            for name in sorted(names):
                full = Path(folder) / name
                yield full.relative_to(base).as_posix(), full.stat().st_size

    def open(self, uri: str, path: str) -> BinaryIO:
        base = self.folder(uri)
        if base is None:
            raise ClientError(f"cannot read artifacts at {uri[:200]}")
        return (base / path).open("rb")


class SqlStore:
    """MLflow's SQL schema, read with SQLAlchemy Core."""

    def __init__(self, url: str, artifact_root: str | None) -> None:
        sqlalchemy = _need("sqlalchemy", "an MLflow database")
        self.sa = sqlalchemy
        self.engine = sqlalchemy.create_engine(url)
        self.artifacts = LocalArtifacts(artifact_root)
        self._uris: dict[str, str] = {}

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(self.sa.text(sql), params))

    def _stream(self, sql: str, size: int, **params: Any) -> Iterator[list[Any]]:
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(self.sa.text(sql), params)
            while rows := result.fetchmany(size):
                yield rows

    def experiments(self) -> Iterator[Json]:
        tags: dict[Any, list[Any]] = {}
        for key, value, owner in self._rows(
            "SELECT key, value, experiment_id FROM experiment_tags"
        ):
            tags.setdefault(owner, []).append((key, value))
        for row in self._rows(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time FROM experiments ORDER BY experiment_id"
        ):
            yield {
                "experiment_id": str(row[0]),
                "name": row[1],
                "artifact_location": row[2],
                "lifecycle_stage": row[3],
                "creation_time": row[4] or 0,
                "last_update_time": row[5] or row[4] or 0,
                "tags": _tags(tags.get(row[0], [])),
            }

    def runs(self, experiment_id: str) -> Iterator[Json]:
        for page in self._stream(
            "SELECT run_uuid, name, user_id, status, start_time, end_time, lifecycle_stage, "
            "artifact_uri FROM runs WHERE experiment_id = :e ORDER BY start_time, run_uuid",
            500,
            e=int(experiment_id),
        ):
            ids = [r[0] for r in page]
            extra = self._run_children(ids)
            for r in page:
                self._uris[r[0]] = r[7] or ""
                params, tags, keys, inputs, outputs = (part.get(r[0], []) for part in extra)
                yield {
                    "info": {
                        "run_id": r[0],
                        "experiment_id": experiment_id,
                        "run_name": r[1] or "",
                        "user_id": r[2] or "",
                        "status": r[3],
                        "start_time": r[4],
                        "end_time": r[5],
                        "lifecycle_stage": r[6],
                        "artifact_uri": r[7],
                    },
                    "data": {
                        "params": _tags(params),
                        "tags": _tags(tags),
                        "metrics": [{"key": k} for k in keys],
                    },
                    "inputs": {"dataset_inputs": inputs, "model_inputs": []},
                    "outputs": {"model_outputs": outputs},
                }

    def _run_children(self, ids: list[str]) -> list[dict[str, list[Any]]]:
        bind = {f"r{i}": run_id for i, run_id in enumerate(ids)}
        marks = ", ".join(f":{name}" for name in bind)
        params: dict[str, list[Any]] = {}
        tags: dict[str, list[Any]] = {}
        keys: dict[str, list[Any]] = {}
        inputs: dict[str, list[Any]] = {}
        outputs: dict[str, list[Any]] = {}
        for table, into in (("params", params), ("tags", tags)):
            for key, value, run in self._rows(
                f"SELECT key, value, run_uuid FROM {table} WHERE run_uuid IN ({marks})", **bind
            ):
                into.setdefault(run, []).append((key, value))
        for key, run in self._rows(
            f"SELECT key, run_uuid FROM latest_metrics WHERE run_uuid IN ({marks})", **bind
        ):
            keys.setdefault(run, []).append(key)
        input_tags: dict[str, list[Any]] = {}
        found = self._rows(
            "SELECT i.input_uuid, i.destination_id, d.name, d.digest, d.dataset_source_type, "
            "d.dataset_source, d.dataset_schema, d.dataset_profile FROM inputs i JOIN datasets d "
            "ON d.dataset_uuid = i.source_id WHERE i.source_type = 'DATASET' AND "
            f"i.destination_type = 'RUN' AND i.destination_id IN ({marks})",
            **bind,
        )
        if found:
            tag_bind = {f"t{i}": row[0] for i, row in enumerate(found)}
            tag_marks = ", ".join(f":{name}" for name in tag_bind)
            for owner, name, value in self._rows(
                f"SELECT input_uuid, name, value FROM input_tags WHERE input_uuid IN ({tag_marks})",
                **tag_bind,
            ):
                input_tags.setdefault(owner, []).append((name, value))
        for row in found:
            dataset = {"name": row[2], "digest": row[3], "source_type": row[4], "source": row[5]}
            if row[6]:
                dataset["schema"] = row[6]
            if row[7]:
                dataset["profile"] = row[7]
            inputs.setdefault(row[1], []).append(
                {"dataset": dataset, "tags": _tags(input_tags.get(row[0], []))}
            )
        for run, model, step in self._rows(
            "SELECT source_id, destination_id, step FROM inputs WHERE source_type = 'RUN_OUTPUT' "
            f"AND source_id IN ({marks})",
            **bind,
        ):
            outputs.setdefault(run, []).append({"model_id": model, "step": step or 0})
        return [params, tags, keys, inputs, outputs]

    def history(self, run_id: str, key: str) -> Iterator[list[Json]]:
        for page in self._stream(
            "SELECT value, timestamp, step, is_nan FROM metrics WHERE run_uuid = :r AND key = :k "
            "ORDER BY step, timestamp",
            HISTORY_PAGE,
            r=run_id,
            k=key,
        ):
            yield [
                {"key": key, "value": _value(v, bool(nan)), "timestamp": t, "step": s}
                for v, t, s, nan in page
            ]

    def history_columns(self, run_id: str, key: str, page: int = HISTORY_PAGE) -> Iterator[Columns]:
        """The metric's points as columns (steps, timestamps, values), a page at a time:
        ``history`` without a dictionary per point. SQLite is read on its own cursor (a
        third of the time of SQLAlchemy's rows); other databases stream through SQLAlchemy,
        whose server-side cursors keep the memory flat."""
        sql = (
            "SELECT value, timestamp, step, is_nan FROM metrics WHERE run_uuid = :r AND "
            "key = :k ORDER BY step"  # the index's order: no sorting
        )
        if self.engine.dialect.name != "sqlite":
            for rows in self._stream(sql, page, r=run_id, k=key):
                yield _columns(rows)
            return
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(sql.replace(":r", "?").replace(":k", "?"), (run_id, key))
                while rows := cursor.fetchmany(page):
                    yield _columns(rows)
            finally:
                cursor.close()

    def run_files(self, run_id: str) -> Iterator[tuple[str, int]]:
        yield from self.artifacts.files(self._uri(run_id))

    def open_run_file(self, run_id: str, path: str) -> BinaryIO:
        return self.artifacts.open(self._uri(run_id), path)

    def _uri(self, run_id: str) -> str:
        if run_id not in self._uris:
            found = self._rows("SELECT artifact_uri FROM runs WHERE run_uuid = :r", r=run_id)
            self._uris[run_id] = (found[0][0] if found else "") or ""
        return self._uris[run_id]

    def logged_models(self, experiment_ids: list[str]) -> Iterator[Json]:
        wanted = {int(e) for e in experiment_ids}
        params: dict[str, list[Any]] = {}
        tags: dict[str, list[Any]] = {}
        for owner, key, value in self._rows(
            "SELECT model_id, param_key, param_value FROM logged_model_params"
        ):
            params.setdefault(owner, []).append((key, value))
        for owner, key, value in self._rows(
            "SELECT model_id, tag_key, tag_value FROM logged_model_tags"
        ):
            tags.setdefault(owner, []).append((key, value))
        for row in self._rows(
            "SELECT model_id, experiment_id, name, artifact_location, creation_timestamp_ms, "
            "last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id "
            "FROM logged_models ORDER BY creation_timestamp_ms"
        ):
            if row[1] not in wanted or row[7] != "active":
                continue
            yield {
                "info": {
                    "model_id": row[0],
                    "experiment_id": str(row[1]),
                    "name": row[2],
                    "artifact_uri": row[3],
                    "creation_timestamp_ms": row[4],
                    "last_updated_timestamp_ms": row[5],
                    "status": MODEL_STATUS.get(row[6], str(row[6])),
                    "model_type": row[8],
                    "source_run_id": row[9],
                    "tags": _tags(tags.get(row[0], [])),
                },
                "data": {
                    "params": _tags(params.get(row[0], [])),
                    "metrics": self._model_metrics(row[0]),
                },
            }

    def _model_metrics(self, model_id: str) -> list[Json]:
        return [
            {
                "key": key,
                "value": _value(value),
                "timestamp": timestamp,
                "step": step,
                "run_id": run_id,
                "model_id": model_id,
                "dataset_name": dataset_name,
                "dataset_digest": dataset_digest,
            }
            for key, value, timestamp, step, run_id, dataset_name, dataset_digest in self._rows(
                "SELECT metric_name, metric_value, metric_timestamp_ms, metric_step, run_id, "
                "dataset_name, dataset_digest FROM logged_model_metrics WHERE model_id = :m",
                m=model_id,
            )
        ]

    def model_files(self, model: Json) -> Iterator[tuple[str, int]]:
        yield from self.artifacts.files(str(model["info"].get("artifact_uri") or ""))

    def open_model_file(self, model: Json, path: str) -> BinaryIO:
        return self.artifacts.open(str(model["info"].get("artifact_uri") or ""), path)

    def registered_models(self) -> Iterator[Json]:
        tags: dict[str, list[Any]] = {}
        for key, value, name in self._rows("SELECT key, value, name FROM registered_model_tags"):
            tags.setdefault(name, []).append((key, value))
        aliases: dict[str, list[Json]] = {}
        for alias, version, name in self._rows(
            "SELECT alias, version, name FROM registered_model_aliases"
        ):
            aliases.setdefault(name, []).append({"alias": alias, "version": str(version)})
        for name, created, updated, description in self._rows(
            "SELECT name, creation_time, last_updated_time, description FROM registered_models "
            "ORDER BY name"
        ):
            yield {
                "name": name,
                "creation_timestamp": created,
                "last_updated_timestamp": updated,
                "description": description or "",
                "tags": _tags(tags.get(name, [])),
                "aliases": aliases.get(name, []),
            }

    def versions(self, name: str) -> list[Json]:
        tags: dict[int, list[Any]] = {}
        for key, value, version in self._rows(
            "SELECT key, value, version FROM model_version_tags WHERE name = :n", n=name
        ):
            tags.setdefault(version, []).append((key, value))
        found = []
        for row in self._rows(
            "SELECT version, creation_time, last_updated_time, description, current_stage, "
            "source, run_id, status, run_link FROM model_versions WHERE name = :n "
            "ORDER BY version",
            n=name,
        ):
            if row[4] == DELETED_VERSION:
                continue
            source = row[5] or ""
            found.append(
                {
                    "version": str(row[0]),
                    "creation_timestamp": row[1],
                    "last_updated_timestamp": row[2],
                    "description": row[3] or "",
                    "current_stage": row[4],
                    "source": source,
                    "run_id": row[6] or "",
                    "model_id": source.removeprefix("models:/")
                    if source.startswith("models:/m-")
                    else "",
                    "status": row[7] or "READY",
                    "run_link": row[8] or "",
                    "tags": _tags(tags.get(row[0], [])),
                }
            )
        return found


class FileStore:
    """MLflow's file store: a folder per experiment and run, ``meta.yaml`` files, one file
    per param, tag and metric."""

    def __init__(self, root: Path) -> None:
        self.yaml = _need("yaml", "an MLflow file store")
        self.root = root
        self.artifacts = LocalArtifacts(None)
        self._runs: dict[str, Path] = {}

    def _meta(self, folder: Path) -> dict[str, Any]:
        with (folder / "meta.yaml").open() as handle:
            return dict(self.yaml.safe_load(handle) or {})

    @staticmethod
    def _pairs(folder: Path) -> list[Json]:
        if not folder.is_dir():
            return []
        return [
            {"key": path.relative_to(folder).as_posix(), "value": path.read_text()}
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        ]

    def _experiment_folders(self) -> Iterator[Path]:
        for base in (self.root, self.root / ".trash"):
            if base.is_dir():
                for folder in sorted(base.iterdir()):
                    if (folder / "meta.yaml").is_file() and folder.name != "models":
                        yield folder

    def experiments(self) -> Iterator[Json]:
        for folder in self._experiment_folders():
            meta = self._meta(folder)
            created = int(meta.get("creation_time") or 0)
            yield {
                "experiment_id": str(meta.get("experiment_id", folder.name)),
                "name": meta["name"],
                "lifecycle_stage": meta.get("lifecycle_stage", "active"),
                "creation_time": created,
                "last_update_time": int(meta.get("last_update_time") or created),
                "tags": self._pairs(folder / "tags"),
            }

    def _experiment_folder(self, experiment_id: str) -> Path:
        for base in (self.root, self.root / ".trash"):
            if (base / experiment_id / "meta.yaml").is_file():
                return base / experiment_id
        raise ClientError(f"experiment {experiment_id} vanished from {self.root}")

    def runs(self, experiment_id: str) -> Iterator[Json]:
        folder = self._experiment_folder(experiment_id)
        for run in sorted(folder.iterdir()):
            if not (run / "meta.yaml").is_file() or run.name in ("models", "datasets"):
                continue
            meta = self._meta(run)
            run_id = str(meta.get("run_id") or meta.get("run_uuid") or run.name)
            self._runs[run_id] = run
            status = meta.get("status", 3)
            yield {
                "info": {
                    "run_id": run_id,
                    "experiment_id": experiment_id,
                    "run_name": meta.get("run_name") or "",
                    "user_id": meta.get("user_id") or "",
                    "status": RUN_STATUS.get(status, str(status))
                    if isinstance(status, int)
                    else str(status),
                    "start_time": meta.get("start_time"),
                    "end_time": meta.get("end_time"),
                    "lifecycle_stage": meta.get("lifecycle_stage", "active"),
                    "artifact_uri": meta.get("artifact_uri", ""),
                },
                "data": {
                    "params": self._pairs(run / "params"),
                    "tags": self._pairs(run / "tags"),
                    "metrics": [{"key": p["key"]} for p in self._pairs(run / "metrics")],
                },
                "inputs": {"dataset_inputs": self._inputs(folder, run), "model_inputs": []},
                "outputs": {"model_outputs": self._outputs(run)},
            }

    def _inputs(self, experiment: Path, run: Path) -> list[Json]:
        found: list[Json] = []
        inputs = run / "inputs"
        if not inputs.is_dir():
            return found
        for entry in sorted(inputs.iterdir()):
            if not (entry / "meta.yaml").is_file():
                continue
            meta = self._meta(entry)
            dataset_folder = experiment / "datasets" / str(meta.get("source_id", ""))
            if not (dataset_folder / "meta.yaml").is_file():
                continue
            data = self._meta(dataset_folder)
            dataset = {
                "name": data.get("name", ""),
                "digest": data.get("digest", ""),
                "source_type": data.get("source_type", ""),
                "source": data.get("source", ""),
            }
            for optional in ("schema", "profile"):
                if data.get(optional):
                    dataset[optional] = data[optional]
            tags = meta.get("tags") or {}
            found.append(
                {"dataset": dataset, "tags": [{"key": k, "value": v} for k, v in tags.items()]}
            )
        return found

    def _outputs(self, run: Path) -> list[Json]:
        outputs = run / "outputs"
        found = []
        if outputs.is_dir():
            for entry in sorted(outputs.iterdir()):
                if (entry / "meta.yaml").is_file():
                    meta = self._meta(entry)
                    if meta.get("destination_type") == "MODEL_OUTPUT":
                        found.append(
                            {"model_id": meta.get("destination_id"), "step": meta.get("step", 0)}
                        )
        return found

    def history(self, run_id: str, key: str) -> Iterator[list[Json]]:
        path = self._runs[run_id] / "metrics" / key
        page: list[Json] = []
        with path.open() as handle:
            for line in handle:
                parts = line.split()
                if len(parts) < 2:
                    continue
                value = float(parts[1])
                step = int(parts[2]) if len(parts) > 2 else 0
                point: Json = {
                    "key": key,
                    "value": _value(value),
                    "timestamp": int(parts[0]),
                    "step": step,
                }
                page.append(point)
                if len(page) >= HISTORY_PAGE:
                    yield page
                    page = []
        if page:
            yield page

    def run_files(self, run_id: str) -> Iterator[tuple[str, int]]:
        yield from self.artifacts.files(self._run_uri(run_id))

    def open_run_file(self, run_id: str, path: str) -> BinaryIO:
        return self.artifacts.open(self._run_uri(run_id), path)

    def _run_uri(self, run_id: str) -> str:
        run = self._runs[run_id]
        uri = str(self._meta(run).get("artifact_uri") or "")
        local = self.artifacts.folder(uri)
        if local is None or not local.is_dir():
            return str(run / "artifacts")  # a store moved since: its own folder
        return uri

    def logged_models(self, experiment_ids: list[str]) -> Iterator[Json]:
        for experiment_id in experiment_ids:
            models = self._experiment_folder(experiment_id) / "models"
            if not models.is_dir():
                continue
            for folder in sorted(models.iterdir()):
                if not (folder / "meta.yaml").is_file():
                    continue
                meta = self._meta(folder)
                if meta.get("lifecycle_stage", "active") != "active":
                    continue
                status = meta.get("status", 2)
                uri = str(meta.get("artifact_location") or "")
                local = self.artifacts.folder(uri)
                yield {
                    "info": {
                        "model_id": str(meta.get("model_id", folder.name)),
                        "experiment_id": experiment_id,
                        "name": meta.get("name", ""),
                        "artifact_uri": uri
                        if local is not None and local.is_dir()
                        else str(folder / "artifacts"),
                        "creation_timestamp_ms": meta.get("creation_timestamp"),
                        "last_updated_timestamp_ms": meta.get("last_updated_timestamp"),
                        "status": MODEL_STATUS.get(status, str(status))
                        if isinstance(status, int)
                        else str(status),
                        "model_type": meta.get("model_type") or "",
                        "source_run_id": meta.get("source_run_id"),
                        "tags": self._pairs(folder / "tags"),
                    },
                    "data": {"params": self._pairs(folder / "params")},
                }

    def model_files(self, model: Json) -> Iterator[tuple[str, int]]:
        yield from self.artifacts.files(str(model["info"]["artifact_uri"]))

    def open_model_file(self, model: Json, path: str) -> BinaryIO:
        return self.artifacts.open(str(model["info"]["artifact_uri"]), path)

    def registered_models(self) -> Iterator[Json]:
        models = self.root / "models"
        if not models.is_dir():
            return
        for folder in sorted(models.iterdir()):
            if not (folder / "meta.yaml").is_file():
                continue
            meta = self._meta(folder)
            aliases = [
                {"alias": a["key"], "value": a["value"]} for a in self._pairs(folder / "aliases")
            ]
            yield {
                "name": meta.get("name", folder.name),
                "creation_timestamp": meta.get("creation_timestamp"),
                "last_updated_timestamp": meta.get("last_updated_timestamp"),
                "description": meta.get("description") or "",
                "tags": self._pairs(folder / "tags"),
                "aliases": [{"alias": a["alias"], "version": a["value"].strip()} for a in aliases],
            }

    def versions(self, name: str) -> list[Json]:
        folder = self.root / "models" / name
        found = []
        for entry in folder.glob("version-*"):
            if not (entry / "meta.yaml").is_file():
                continue
            meta = self._meta(entry)
            if meta.get("current_stage") == DELETED_VERSION:
                continue
            source = str(meta.get("source") or "")
            found.append(
                {
                    "version": str(meta.get("version", entry.name.removeprefix("version-"))),
                    "creation_timestamp": meta.get("creation_timestamp"),
                    "last_updated_timestamp": meta.get("last_updated_timestamp"),
                    "description": meta.get("description") or "",
                    "current_stage": meta.get("current_stage") or "None",
                    "source": source,
                    "run_id": meta.get("run_id") or "",
                    "model_id": meta.get("model_id")
                    or (source.removeprefix("models:/") if source.startswith("models:/m-") else ""),
                    "status": meta.get("status") or "READY",
                    "run_link": meta.get("run_link") or "",
                    "tags": self._pairs(entry / "tags"),
                }
            )
        return sorted(found, key=lambda v: int(v["version"]))
