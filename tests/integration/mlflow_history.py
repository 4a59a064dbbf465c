"""An MLflow history as the stock client makes it, and what the stock client reads back.

``python -m tests.integration.mlflow_history fill URI FOLDER`` logs: an experiment with tags;
a parent run with params, tags, a 100,000-step history, NaN and ±infinity, a dataset input, a
folder of artifacts, one 200 MiB file and a logged (pyfunc) model registered as version 1; a
nested child run; a second run registered from its folder as version 2; a registered model
with a description, tags, a stage and two aliases; a deleted run, and a deleted experiment
with a run.

``python -m tests.integration.mlflow_history read URI OUT.json`` writes what the stock client
reads: experiments by name, every run by id (info, params, tags, latest metrics, inputs),
histories, artifact listings with each file's sha256, models, versions, aliases, and the
predictions of ``models:/imported-model@champion``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

MODEL = "imported-model"
STEPS = 100_000
BIG_FILE = 200 * 1024 * 1024


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return [2 * float(x) for x in list(model_input["x"])]


def fill(uri: str, folder: Path) -> None:
    import pandas as pd

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("imported-main", tags={"team": "vision"})
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": "0.1", "depth": "3"})
        mlflow.set_tags({"stage": "train", "note": "a long\nvalue"})
        now = 1_700_000_000_000
        points = [Metric("loss", 1.0 / (s + 1), now + s, s) for s in range(STEPS)]
        for start in range(0, len(points), 1000):
            client.log_batch(parent.info.run_id, metrics=points[start : start + 1000])
        for step, value in enumerate([math.nan, math.inf, -math.inf, 0.5]):
            mlflow.log_metric("odd", value, step=step, timestamp=now + step)
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
        dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.csv", name="train")
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
        files = folder / "files"
        (files / "nested" / "deeper").mkdir(parents=True)
        (files / "readme.txt").write_text("hello\n")
        (files / "nested" / "data.bin").write_bytes(os.urandom(300_000))
        (files / "nested" / "deeper" / "empty.txt").write_bytes(b"")
        mlflow.log_artifacts(str(files), "data")
        big = folder / "big" / "weights.bin"
        big.parent.mkdir()
        with big.open("wb") as out:  # incompressible, written a piece at a time
            for _ in range(BIG_FILE // (8 * 1024 * 1024)):
                out.write(os.urandom(8 * 1024 * 1024))
        mlflow.log_artifact(str(big), "big")
        big.unlink()
        with mlflow.start_run(run_name="child", nested=True):
            mlflow.log_param("fold", "1")
            mlflow.log_metric("acc", 0.9, step=1)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Doubler(), input_example=frame[["x"]]
        )
    first = mlflow.register_model(info.model_uri, MODEL)
    with mlflow.start_run(run_name="second") as second:
        mlflow.log_metric("loss", 0.25)
        mlflow.log_artifacts(str(files), "data")
    client.create_model_version(
        MODEL, f"runs:/{second.info.run_id}/data", run_id=second.info.run_id
    )
    client.update_registered_model(MODEL, description="Doubles x.")
    client.set_registered_model_tag(MODEL, "owner", "vision")
    client.update_model_version(MODEL, first.version, description="The first one.")
    client.set_model_version_tag(MODEL, first.version, "validated", "yes")
    client.transition_model_version_stage(MODEL, first.version, "Production")
    client.set_registered_model_alias(MODEL, "champion", first.version)
    client.set_registered_model_alias(MODEL, "challenger", "2")
    with mlflow.start_run(run_name="doomed") as doomed:
        mlflow.log_metric("loss", 9.0)
    client.delete_run(doomed.info.run_id)
    gone = client.create_experiment("imported-gone")
    gone_run = client.create_run(gone, run_name="in-gone")
    client.log_batch(gone_run.info.run_id, params=[Param("p", "1")], tags=[RunTag("t", "x")])
    client.set_terminated(gone_run.info.run_id)
    client.delete_experiment(gone)


def _value(value: float) -> Any:
    return repr(value) if math.isnan(value) or math.isinf(value) else value


def _files(client: MlflowClient, run_id: str, folder: Path, path: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry in client.list_artifacts(run_id, path or None):
        if entry.is_dir:
            found.update(_files(client, run_id, folder, entry.path))
        else:
            local = client.download_artifacts(run_id, entry.path, str(folder))
            digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            found[entry.path] = [entry.file_size, digest]
    return found


def read(uri: str, folder: Path) -> dict[str, Any]:
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    out: dict[str, Any] = {"experiments": {}, "runs": {}, "models": {}}
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        if not experiment.name.startswith("imported-"):
            continue
        out["experiments"][experiment.name] = {
            "lifecycle": experiment.lifecycle_stage,
            "tags": {k: v for k, v in experiment.tags.items() if not k.startswith("mlflow.")},
            "created": experiment.creation_time,
        }
        runs = client.search_runs(
            [experiment.experiment_id],
            run_view_type=ViewType.ALL,
            order_by=["attributes.start_time ASC"],
        )
        for run in runs:
            run_id = run.info.run_id
            out["runs"][run_id] = {
                "experiment": experiment.name,
                "name": run.info.run_name,
                "status": run.info.status,
                "start": run.info.start_time,
                "end": run.info.end_time,
                "user": run.info.user_id,
                "lifecycle": run.info.lifecycle_stage,
                "params": run.data.params,
                "tags": run.data.tags,
                "metrics": {k: _value(v) for k, v in run.data.metrics.items()},
                "inputs": sorted(
                    [
                        i.dataset.name,
                        i.dataset.digest,
                        i.dataset.source,
                        sorted((t.key, t.value) for t in i.tags),
                    ]
                    for i in run.inputs.dataset_inputs
                ),
                "histories": {
                    key: [
                        [m.step, m.timestamp, _value(m.value)]
                        for m in client.get_metric_history(run_id, key)
                    ]
                    for key in sorted(run.data.metrics)
                },
                "files": _files(client, run_id, folder / run_id),
                "by_id": client.get_run(run_id).info.run_name,
            }
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name='{model.name}'")
        out["models"][model.name] = {
            "description": model.description,
            "tags": model.tags,
            "aliases": model.aliases,
            "versions": {
                v.version: {
                    "run_id": v.run_id,
                    "stage": v.current_stage,
                    "description": v.description,
                    "status": v.status,
                    "tags": {k: t for k, t in v.tags.items() if k != "modelyard.semver"},
                    "created": v.creation_timestamp,
                }
                for v in versions
            },
            "champion": client.get_model_version_by_alias(model.name, "champion").version,
        }
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    import pandas as pd

    out["predictions"] = list(loaded.predict(pd.DataFrame({"x": [1.0, 5.0]})))
    return out


if __name__ == "__main__":
    command, uri, where = sys.argv[1:4]
    if command == "fill":
        fill(uri, Path(where))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            Path(where).write_text(json.dumps(read(uri, Path(scratch)), indent=1, sort_keys=True))
