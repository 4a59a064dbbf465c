"""``import mlflow --verify``: the source compared with the target after an import, through the
target's MLflow routes and native file listings: entities per kind, metric points per run and
key, every file's size and sha256 (the source's bytes are read and hashed again)."""

from __future__ import annotations

import hashlib
from typing import Any

from modelyard_client.errors import HttpError
from modelyard_client.http import Http, seg
from modelyard_client.importer import Report, Source
from modelyard_client.mlflow_rest import MlflowRest, pairs

CHUNK = 1024 * 1024


def verify(source: Source, target: Http, report: Report, *, skip_deleted: bool) -> list[str]:
    """Every difference found, one line each (empty: they agree)."""
    mirror = MlflowRest(target, f"the modelyard server {target.target.base}")
    found: list[str] = []
    counts = {"experiments": [0, 0], "runs": [0, 0], "logged models": [0, 0], "versions": [0, 0]}
    experiments = [
        e
        for e in source.experiments()
        if not (skip_deleted and e.get("lifecycle_stage") == "deleted")
    ]
    for experiment in experiments:
        counts["experiments"][0] += 1
        target_id = report.experiment_ids.get(str(experiment["experiment_id"]))
        if target_id is None:
            found.append(f"experiment {experiment['name']!r} is missing")
            continue
        counts["experiments"][1] += 1
        for run in source.runs(str(experiment["experiment_id"])):
            if skip_deleted and run["info"].get("lifecycle_stage") == "deleted":
                continue
            counts["runs"][0] += 1
            if _run(source, mirror, target, run, found):
                counts["runs"][1] += 1
    ids = [str(e["experiment_id"]) for e in experiments]
    for model in source.logged_models(ids):
        counts["logged models"][0] += 1
        model_id = str(model["info"]["model_id"])
        try:
            mirror.get(f"/logged-models/{seg(model_id)}")
        except HttpError:
            found.append(f"logged model {model_id} is missing")
            continue
        counts["logged models"][1] += 1
        want = dict(source.model_files(model))
        _files(want, lambda p, m=model: source.open_model_file(m, p), target, model_id, found)
    for registered in source.registered_models():
        name = str(registered["name"])
        theirs = {int(v["version"]): v for v in source.versions(name)}
        try:
            ours = {int(v["version"]): v for v in mirror.versions(name)}
        except HttpError:
            ours = {}
        counts["versions"][0] += len(theirs)
        counts["versions"][1] += len(set(theirs) & set(ours))
        found.extend(
            f"version {number} of model {name!r} is missing"
            for number in sorted(set(theirs) - set(ours))
        )
        for number in sorted(set(theirs) & set(ours)):
            a, b = theirs[number], ours[number]
            found.extend(
                f"version {number} of {name!r}: {field} differs"
                for field in ("current_stage", "description", "run_id")
                if (a.get(field) or "") != (b.get(field) or "")
            )
        try:
            here = mirror.get("/registered-models/get", name=name)
        except HttpError:
            found.append(f"model {name!r} is missing")
            continue
        mine = {a["alias"]: str(a["version"]) for a in here["registered_model"].get("aliases", [])}
        found.extend(
            f"alias {name}@{alias['alias']} differs"
            for alias in registered.get("aliases") or []
            if mine.get(alias["alias"]) != str(alias["version"])
        )
    for entity, (theirs_n, ours_n) in counts.items():
        if theirs_n != ours_n:
            found.append(f"{entity}: {theirs_n} in the source, {ours_n} found in the target")
    return found


def _run(source: Source, mirror: MlflowRest, target: Http, run: Any, found: list[str]) -> bool:
    info, data = run["info"], run.get("data", {})
    run_id = str(info["run_id"])
    try:
        here = mirror.get("/runs/get", run_id=run_id)["run"]
    except HttpError:
        found.append(f"run {run_id} is missing")
        return False
    mine = here["info"]
    found.extend(
        f"run {run_id}: {field} {info.get(field)!r} ≠ {mine.get(field)!r}"
        for field in ("status", "lifecycle_stage", "start_time", "end_time", "run_name")
        if str(info.get(field)) != str(mine.get(field))
    )
    for part in ("params", "tags"):
        theirs, ours = pairs(data.get(part)), pairs(here.get("data", {}).get(part))
        if any(ours.get(k) != v for k, v in theirs.items()):
            found.append(f"run {run_id}: {part} differ")
    for key in sorted({str(m["key"]) for m in data.get("metrics", [])}):
        theirs_n = sum(len(page) for page in source.history(run_id, key))
        ours_n = sum(len(page) for page in mirror.history(run_id, key))
        if theirs_n != ours_n:
            found.append(f"run {run_id}: metric {key!r} has {theirs_n} points, {ours_n} here")
    want = dict(source.run_files(run_id))
    _files(want, lambda p: source.open_run_file(run_id, p), target, run_id, found)
    return True


def _files(want: dict[str, int], opener: Any, target: Http, package: str, found: list[str]) -> None:
    try:
        listed = target.call("GET", f"/packages/{seg(package)}/0/files").get("files", [])
    except HttpError as exc:
        listed = [] if exc.status == 404 else None
        if listed is None:
            found.append(f"files of {package}: {exc}")
            return
    have = {f["path"]: (int(f["size"]), f["sha256"]) for f in listed}
    for path, size in want.items():
        if path not in have:
            found.append(f"{package}/{path} is missing")
            continue
        digest = hashlib.sha256()
        stream = opener(path)
        try:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
        finally:
            stream.close()
        if have[path] != (size, digest.hexdigest()):
            found.append(f"{package}/{path}: size or sha256 differs")
