"""Garbage collection and consistency checks of the package store.

``collect`` frees what nothing refers to any more: candidates deleted longer ago than the grace
period (their rows and their package), multipart uploads left open, blobs whose reference count
fell to zero, and bytes in the store that no row knows (writes cut short by a crash). ``check``
re-reads every blob and reports rows without bytes, bytes without rows and wrong checksums.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy import Connection, delete, func, select

from modelyard.blobs import BlobStore, UnsafeBlob
from modelyard.db.engine import Database
from modelyard.db.schema import (
    alias_events,
    blobs,
    datasets,
    experiment_tags,
    experiments,
    latest_metrics,
    logged_model_params,
    logged_model_tags,
    logged_models,
    memberships,
    metric_blocks,
    metrics,
    model_version_tags,
    model_versions,
    package_files,
    packages,
    params,
    projects,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
    run_inputs,
    run_model_links,
    run_tags,
    runs,
    tokens,
    uploads,
)
from modelyard.services import packages as package_service
from modelyard.services import webhooks as webhook_service
from modelyard.services.artifacts import LOGGED_MODEL_VERSION
from modelyard.services.experiments import DELETED

T = TypeVar("T")


class Progress(Protocol):
    """Wraps a list of work items, reporting progress as they are consumed."""

    def __call__(self, items: Sequence[T], label: str, /) -> Iterable[T]: ...


_RUN_CHILDREN = (
    params,
    run_tags,
    metrics,
    metric_blocks,
    latest_metrics,
    run_inputs,
    run_model_links,
)


def _quiet(items: Sequence[T], _label: str, /) -> Iterable[T]:
    return items


@dataclass
class GcReport:
    dry_run: bool
    purged_projects: int = 0
    purged_runs: int = 0
    purged_logged_models: int = 0
    expired_uploads: int = 0
    deleted_blobs: int = 0
    freed_bytes: int = 0
    orphans: int = 0
    orphan_bytes: int = 0


@dataclass
class FsckReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    missing: list[str] = field(default_factory=list)  # rows without bytes (sha256)
    corrupt: list[str] = field(default_factory=list)  # wrong size or checksum (sha256)
    unreferenced: list[str] = field(default_factory=list)  # bytes without rows (locations)
    wrong_refs: list[str] = field(default_factory=list)  # reference count mismatches (sha256)
    # links or other things no write makes, found in the store or in a blob's place
    unsafe: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.corrupt or self.unreferenced or self.wrong_refs or self.unsafe
        )


def collect(
    db: Database,
    store: BlobStore,
    *,
    older_than: float,
    orphan_grace: float,
    dry_run: bool = False,
    progress: Progress = _quiet,
) -> GcReport:
    report = GcReport(dry_run=dry_run)
    now = time.time()
    _purge_projects(db, store, int((now - older_than) * 1000), report, progress)
    _purge_runs(db, store, int((now - older_than) * 1000), report, progress)
    _purge_logged_models(db, store, int((now - older_than) * 1000), report)
    _expire_uploads(db, store, int((now - orphan_grace) * 1000), report)
    _delete_unreferenced(db, store, report, progress)
    _delete_orphans(db, store, now - orphan_grace, report, progress)
    return report


def _purge_runs(
    db: Database, store: BlobStore, cutoff_ms: int, report: GcReport, progress: Progress
) -> None:
    with db.read() as conn:
        doomed = (
            conn.execute(
                select(runs.c.pk).where(
                    runs.c.lifecycle_stage == DELETED,
                    func.coalesce(runs.c.deleted_time, 0) < cutoff_ms,
                )
            )
            .scalars()
            .all()
        )
    report.purged_runs = len(doomed)
    if report.dry_run:
        return
    for run_pk in progress(doomed, "purging deleted candidates"):
        with db.write() as conn:
            pending = _purge_run(conn, run_pk)
        for upload in pending:
            store.abort_multipart(upload.location, upload.storage_upload_id)


def _purge_run(conn: Connection, run_pk: int) -> list[package_service.Upload]:
    """A candidate's rows and its package, gone; returns the uploads left to abort."""
    package_id = conn.execute(select(packages.c.id).where(packages.c.run_pk == run_pk)).scalar()
    pending = [] if package_id is None else package_service.purge_package(conn, package_id)
    for table in _RUN_CHILDREN:
        conn.execute(delete(table).where(table.c.run_pk == run_pk))
    conn.execute(delete(runs).where(runs.c.pk == run_pk))
    return pending


def _purge_logged_models(db: Database, store: BlobStore, cutoff_ms: int, report: GcReport) -> None:
    """Logged models deleted before the cutoff lose their rows and their package."""
    with db.read() as conn:
        doomed = conn.execute(
            select(logged_models.c.id, logged_models.c.project_id).where(
                logged_models.c.lifecycle_stage == DELETED,
                logged_models.c.last_updated_time < cutoff_ms,
            )
        ).all()
    report.purged_logged_models = len(doomed)
    if report.dry_run:
        return
    for model_id, project_id in doomed:
        with db.write() as conn:
            pending = _purge_logged_model(conn, project_id, model_id)
        for upload in pending:
            store.abort_multipart(upload.location, upload.storage_upload_id)


def _purge_logged_model(
    conn: Connection, project_id: int, model_id: str
) -> list[package_service.Upload]:
    package = package_service.find(
        conn, project_id, model_id, LOGGED_MODEL_VERSION, package_service.LOGGED_MODEL
    )
    pending = [] if package is None else package_service.purge_package(conn, package.id)
    for table in (logged_model_tags, logged_model_params):
        conn.execute(delete(table).where(table.c.owner == model_id))
    conn.execute(delete(logged_models).where(logged_models.c.id == model_id))
    return pending


def _purge_projects(
    db: Database, store: BlobStore, cutoff_ms: int, report: GcReport, progress: Progress
) -> None:
    """Projects deleted before the cutoff: every row of theirs goes (the audit log stays),
    and their blobs lose the references, so the next step deletes what nothing else uses."""
    with db.read() as conn:
        doomed = (
            conn.execute(select(projects.c.id).where(projects.c.deleted_at < cutoff_ms))
            .scalars()
            .all()
        )
    report.purged_projects = len(doomed)
    if report.dry_run:
        return
    for project_id in doomed:
        with db.read() as conn:
            run_pks: list[int] = list(
                conn.execute(select(runs.c.pk).where(runs.c.project_id == project_id)).scalars()
            )
            model_ids: list[str] = list(
                conn.execute(
                    select(logged_models.c.id).where(logged_models.c.project_id == project_id)
                ).scalars()
            )
        pending: list[package_service.Upload] = []
        for run_pk in progress(run_pks, f"purging project {project_id}: candidates"):
            with db.write() as conn:
                pending += _purge_run(conn, run_pk)
        for model_id in model_ids:
            with db.write() as conn:
                pending += _purge_logged_model(conn, project_id, model_id)
        with db.write() as conn:
            pending += _purge_project_rows(conn, project_id)
        for upload in pending:
            store.abort_multipart(upload.location, upload.storage_upload_id)


def _purge_project_rows(conn: Connection, project_id: int) -> list[package_service.Upload]:
    models = select(registered_models.c.id).where(registered_models.c.project_id == project_id)
    versions = select(model_versions.c.id).where(model_versions.c.model_pk.in_(models))
    experiment_ids = select(experiments.c.id).where(experiments.c.project_id == project_id)
    conn.execute(delete(model_version_tags).where(model_version_tags.c.owner.in_(versions)))
    conn.execute(delete(model_versions).where(model_versions.c.model_pk.in_(models)))
    for table in (registered_model_aliases, alias_events):
        conn.execute(delete(table).where(table.c.model_pk.in_(models)))
    conn.execute(delete(registered_model_tags).where(registered_model_tags.c.owner.in_(models)))
    conn.execute(delete(registered_models).where(registered_models.c.project_id == project_id))
    pending: list[package_service.Upload] = []
    package_ids = conn.execute(select(packages.c.id).where(packages.c.project_id == project_id))
    for package_id in package_ids.scalars().all():
        pending += package_service.purge_package(conn, package_id)
    conn.execute(delete(datasets).where(datasets.c.experiment_id.in_(experiment_ids)))
    conn.execute(delete(experiment_tags).where(experiment_tags.c.experiment_id.in_(experiment_ids)))
    conn.execute(delete(experiments).where(experiments.c.project_id == project_id))
    conn.execute(delete(memberships).where(memberships.c.project_id == project_id))
    conn.execute(delete(tokens).where(tokens.c.project_id == project_id))
    webhook_service.purge_project(conn, project_id)
    conn.execute(delete(projects).where(projects.c.id == project_id))
    return pending


def _expire_uploads(db: Database, store: BlobStore, cutoff_ms: int, report: GcReport) -> None:
    with db.read() as conn:
        expired = conn.execute(select(uploads).where(uploads.c.created_at < cutoff_ms)).all()
    report.expired_uploads = len(expired)
    if report.dry_run:
        return
    for row in expired:
        store.abort_multipart(row.location, row.storage_upload_id)
        package_service.finish_upload(db, row.id)


def _delete_unreferenced(
    db: Database, store: BlobStore, report: GcReport, progress: Progress
) -> None:
    with db.read() as conn:
        candidates = conn.execute(
            select(blobs.c.sha256, blobs.c.size).where(blobs.c.refs <= 0)
        ).all()
    report.deleted_blobs = len(candidates)
    report.freed_bytes = sum(size for _sha, size in candidates)
    if report.dry_run:
        return
    for sha256, _size in progress(candidates, "deleting unreferenced blobs"):
        with db.write() as conn:
            # Re-checked under the write lock: a writer may have taken a reference meanwhile.
            location = conn.execute(
                delete(blobs)
                .where(blobs.c.sha256 == sha256, blobs.c.refs <= 0)
                .returning(blobs.c.location)
            ).scalar()
        if location is not None:
            store.delete(location)


def _live_locations(db: Database) -> set[str]:
    with db.read() as conn:
        live = set(conn.execute(select(blobs.c.location)).scalars())
        live.update(conn.execute(select(uploads.c.location)).scalars())
    return live


def _delete_orphans(
    db: Database, store: BlobStore, cutoff: float, report: GcReport, progress: Progress
) -> None:
    stored = [obj for obj in store.objects() if obj.modified < cutoff]
    pending = [u for u in store.pending_multipart() if u.started < cutoff]
    live = _live_locations(db)  # read after listing: a blob finished meanwhile is newer than cutoff
    orphans = [obj for obj in stored if obj.location not in live]
    report.orphans = len(orphans) + sum(1 for u in pending if u.location not in live)
    report.orphan_bytes = sum(obj.size for obj in orphans)
    if report.dry_run:
        return
    for obj in progress(orphans, "deleting orphaned bytes"):
        store.delete(obj.location)
    for upload in pending:
        if upload.location not in live:
            store.abort_multipart(upload.location, upload.upload_id)


def check(db: Database, store: BlobStore, *, progress: Progress = _quiet) -> FsckReport:
    report = FsckReport()
    with db.read() as conn:
        rows = conn.execute(
            select(blobs.c.sha256, blobs.c.size, blobs.c.location, blobs.c.refs)
        ).all()
        counted: dict[str, int] = dict(
            conn.execute(
                select(package_files.c.sha256, func.count()).group_by(package_files.c.sha256)
            ).all()
        )
    for sha256, size, location, refs in progress(rows, "re-hashing blobs"):
        if counted.get(sha256, 0) != refs:
            report.wrong_refs.append(sha256)
        try:
            if store.size(location) is None:
                report.missing.append(sha256)
                continue
            digest, actual = store.digest(location)
        except UnsafeBlob as exc:
            report.unsafe.append(f"blob {sha256}: {exc} (not served)")
            continue
        report.blobs_checked += 1
        report.bytes_checked += actual
        if digest != sha256 or actual != size:
            report.corrupt.append(sha256)
    known = {sha for sha, *_ in rows}
    report.missing.extend(sha for sha in counted if sha not in known)
    live = _live_locations(db)
    report.unreferenced = [obj.location for obj in store.objects() if obj.location not in live]
    report.unsafe.extend(store.anomalies())
    return report
