"""Packages: named, versioned sets of files whose bytes are content-addressed blobs.

A file row is written only after its blob is durable (see ``blobs``), and in the same
transaction as the blob's reference count. Writing the same bytes twice stores them once: the
second writer finds the blob row, takes a reference to it and discards its own copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from modelyard.blobs import StoredBlob
from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.db.schema import blobs, package_files, packages, uploads
from modelyard.errors import Conflict, DigestInvalid, InvalidParameter, NotFound
from modelyard.services import canonical
from modelyard.services.entities import now_ms

OPEN = "open"
PUBLISHED = "published"
DELETED = "deleted"
CANDIDATE = "candidate"
GENERIC = "generic"
LOGGED_MODEL = "logged_model"
MODEL_VERSION = "model_version"
CANDIDATE_VERSION = "0"

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
# The names the server gives its own packages (by their key): a model version's files
# (model-<model key>), a candidate's (its run id) and a logged model's (its id).
_RESERVED = (
    (re.compile(r"model-[0-9]+"), MODEL_VERSION, "a model version's files"),
    (re.compile(r"[0-9a-f]{32}"), CANDIDATE, "a candidate's files (its run id)"),
    (re.compile(r"m-[0-9a-f]{32}"), LOGGED_MODEL, "a logged model's files (its id)"),
)


@dataclass(frozen=True, slots=True)
class Package:
    id: int
    project_id: int
    name: str
    name_key: str
    version: str
    kind: str
    status: str
    run_pk: int | None
    created_at: int
    published_at: int | None


@dataclass(frozen=True, slots=True)
class PackageFile:
    path: str
    sha256: str
    size: int
    media_type: str
    created_at: int
    location: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A direct child of a listed folder."""

    name: str
    is_dir: bool
    size: int | None


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    package_id: int
    path: str
    location: str
    storage_upload_id: str
    created_at: int


def _package(row: Row[tuple[object, ...]]) -> Package:
    return Package(**row._mapping)


def check_name(name: str, version: str) -> None:
    if not _NAME.match(name):
        raise InvalidParameter(
            f"Invalid package name {name[:300]!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (at most 255 characters)."
        )
    if not _VERSION.match(version):
        raise InvalidParameter(
            f"Invalid package version {version[:200]!r}: use letters, digits, '.', '+', '_' "
            "and '-', starting with a letter or digit (at most 128 characters)."
        )


_STORED = (
    select(func.coalesce(func.sum(package_files.c.size), 0))
    .join(packages, packages.c.id == package_files.c.package_id)
    .where(
        packages.c.project_id == bindparam("project_id"),
        packages.c.kind != MODEL_VERSION,
        packages.c.status != DELETED,
    )
)


def stored_bytes(db: Database, project_id: int) -> int:
    """The size of the project's files, as its storage quota counts them: every file of its
    candidates, logged models and packages; a model version's files are its source's."""
    with db.read() as conn:
        return int(conn.execute(_STORED, {"project_id": project_id}).scalar_one())


def digest_mismatch(path: str, expected: str, blob: StoredBlob) -> DigestInvalid:
    """The error for an upload whose bytes do not hash to the checksum sent with them."""
    return DigestInvalid(
        f"Checksum mismatch for '{path[:500]}': expected sha256 {expected}, received "
        f"{blob.sha256} ({blob.size} bytes). Nothing was stored."
    )


def key(name: str) -> str:
    """What makes two package names the same: not their case (``services.canonical``)."""
    return canonical.folded_key(name, "package name")


def kind_of(name: str) -> str:
    """The kind of the packages a name can belong to. Each kind is a namespace; names of the
    server's own kinds are reserved, so a name read through the packages API always means one
    package, and the packages API can never write one of the server's packages."""
    folded = key(name)
    for pattern, kind, _what in _RESERVED:
        if pattern.fullmatch(folded):
            return kind
    return GENERIC


def check_generic(name: str) -> None:
    """Refuse a name the server keeps for its own packages (for packages API writes)."""
    folded = key(name)
    for pattern, _kind, what in _RESERVED:
        if pattern.fullmatch(folded):
            raise Conflict(
                f"The package name {name[:300]!r} is reserved: names of this form hold "
                f"{what}, which only the server writes. Choose another name."
            )


def find(
    conn: Connection, project_id: int, name: str, version: str, kind: str = GENERIC
) -> Package | None:
    """The package of that name and version among those of ``kind``: each kind is a
    namespace of its own, and the packages API only ever names ``generic`` ones."""
    row = conn.execute(
        select(packages).where(
            packages.c.project_id == project_id,
            packages.c.kind == kind,
            packages.c.name_key == key(name),
            packages.c.version == version,
        )
    ).first()
    return None if row is None else _package(row)


def get(db: Database, project_id: int, name: str, version: str) -> Package:
    """The package a name means in the packages API (see ``kind_of``)."""
    with db.read() as conn:
        package = find(conn, project_id, name, version, kind_of(name))
    if package is None or package.status == DELETED:
        raise NotFound(f"Package '{name}' version '{version}' not found.")
    return package


def get_by_id(db: Database, package_id: int) -> Package:
    with db.read() as conn:
        row = conn.execute(select(packages).where(packages.c.id == package_id)).first()
    if row is None:
        raise NotFound("The package no longer exists.")
    return _package(row)


def list_packages(
    db: Database, project_id: int, *, name: str | None = None, limit: int = 100, offset: int = 0
) -> list[tuple[Package, int, int]]:
    """Packages with their file count and total size, newest first."""
    counts = (
        select(
            package_files.c.package_id,
            func.count().label("files"),
            func.coalesce(func.sum(package_files.c.size), 0).label("bytes"),
        )
        .group_by(package_files.c.package_id)
        .subquery()
    )
    query = (
        select(packages, func.coalesce(counts.c.files, 0), func.coalesce(counts.c.bytes, 0))
        .outerjoin(counts, counts.c.package_id == packages.c.id)
        .where(packages.c.project_id == project_id, packages.c.status != DELETED)
        .order_by(packages.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if name is not None:
        query = query.where(packages.c.name_key == key(name))
    with db.read() as conn:
        rows = conn.execute(query).all()
    width = len(packages.c)
    return [(Package(*r[:width]), int(r[-2]), int(r[-1])) for r in rows]


def ensure(
    conn: Connection,
    project_id: int,
    name: str,
    version: str,
    *,
    kind: str = GENERIC,
    run_pk: int | None = None,
) -> Package:
    """The package, created (open) when it does not exist yet. Call inside a write."""
    package = find(conn, project_id, name, version, kind)
    if package is None:
        now = now_ms()
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(packages).values(
                        project_id=project_id,
                        name=name,
                        name_key=key(name),
                        version=version,
                        kind=kind,
                        status=OPEN,
                        run_pk=run_pk,
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass  # created by a concurrent writer
        package = find(conn, project_id, name, version, kind)
        assert package is not None
    if package.status == DELETED:
        raise Conflict(
            f"Package '{name}' version '{version}' was deleted; a version is never reused."
        )
    return package


def _writable(package: Package) -> None:
    if package.status == PUBLISHED:
        raise Conflict(
            f"Package '{package.name}' version '{package.version}' is published; its files "
            "cannot change."
        )
    if package.status == DELETED:
        raise NotFound(f"Package '{package.name}' version '{package.version}' not found.")


def _like_prefix(folder: str) -> str:
    escaped = folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


_UPSERT_BLOB = text(
    "INSERT INTO blobs (sha256, size, location, refs, created_at) "
    "VALUES (:sha256, :size, :location, 1, :now) "
    "ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + 1 RETURNING location"
)


_PACKAGE_BY_ID = select(packages).where(packages.c.id == bindparam("package_id"))
_SAME_FILE = and_(
    package_files.c.package_id == bindparam("package_id"),
    package_files.c.path == bindparam("path"),
)
_OLD_SHA = select(package_files.c.sha256).where(_SAME_FILE)
_INSERT_FILE = insert(package_files)
_UPDATE_FILE = (
    update(package_files)
    .where(
        package_files.c.package_id == bindparam("key_package_id"),
        package_files.c.path == bindparam("key_path"),
    )
    .values(
        sha256=bindparam("sha256"),
        size=bindparam("size"),
        media_type=bindparam("media_type"),
        created_at=bindparam("created_at"),
    )
)
_FILE_ABOVE = select(package_files.c.path).where(
    package_files.c.package_id == bindparam("package_id"),
    package_files.c.path.in_(bindparam("ancestors", expanding=True)),
)
_FILE_BELOW = (
    select(package_files.c.path)
    .where(
        package_files.c.package_id == bindparam("package_id"),
        package_files.c.path.like(bindparam("prefix"), escape="\\"),
    )
    .limit(1)
)
_RELEASE = (
    update(blobs)
    .where(blobs.c.sha256 == bindparam("sha"))
    .values(refs=blobs.c.refs - bindparam("count"))
)


def add_file(
    db: Database, package_id: int, path: str, blob: StoredBlob, media_type: str
) -> tuple[PackageFile, str | None]:
    """Record ``blob`` as the file at ``path``. Returns the file and the location of a
    now-redundant copy of the bytes (the caller deletes it after this returns), if any."""
    with db.write() as conn:
        row = conn.execute(_PACKAGE_BY_ID, {"package_id": package_id}).first()
        if row is None:
            raise NotFound("The package no longer exists.")
        _writable(_package(row))
        return _add_file(conn, package_id, path, blob, media_type)


def store_file(
    db: Database,
    project_id: int,
    name: str,
    version: str,
    path: str,
    blob: StoredBlob,
    media_type: str,
) -> tuple[PackageFile, str | None]:
    """``add_file`` into the packages API's package ``name``/``version``, created (open) in
    the same transaction when it does not exist yet: an upload that fails leaves no package
    behind."""
    check_generic(name)
    with db.write() as conn:
        package = ensure(conn, project_id, name, version)
        _writable(package)
        return _add_file(conn, package.id, path, blob, media_type)


def check_writable(db: Database, project_id: int, name: str, version: str) -> None:
    """Refuse, before any byte is received, an upload into a published or deleted version or
    into a package name the server keeps for its own packages."""
    check_generic(name)
    with db.read() as conn:
        package = find(conn, project_id, name, version)
    if package is not None:
        if package.status == DELETED:
            raise Conflict(
                f"Package '{name}' version '{version}' was deleted; a version is never reused."
            )
        _writable(package)


def _add_file(
    conn: Connection, package_id: int, path: str, blob: StoredBlob, media_type: str
) -> tuple[PackageFile, str | None]:
    now = now_ms()
    key = {"package_id": package_id, "path": path}
    _check_no_clash(conn, package_id, path)
    location = conn.execute(
        _UPSERT_BLOB,
        {"sha256": blob.sha256, "size": blob.size, "location": blob.location, "now": now},
    ).scalar_one()
    old = conn.execute(_OLD_SHA, key).scalar()
    values = {
        **key,
        "sha256": blob.sha256,
        "size": blob.size,
        "media_type": media_type,
        "created_at": now,
    }
    if old is None:
        conn.execute(_INSERT_FILE, values)
    else:
        conn.execute(_UPDATE_FILE, {**values, "key_package_id": package_id, "key_path": path})
        _release(conn, [old])
    redundant = None if location == blob.location else blob.location
    file = PackageFile(path, blob.sha256, blob.size, media_type, now, location)
    return file, redundant


def _check_no_clash(conn: Connection, package_id: int, path: str) -> None:
    ancestors = _ancestors(path)
    if (
        ancestors
        and conn.execute(_FILE_ABOVE, {"package_id": package_id, "ancestors": ancestors}).first()
    ):
        raise InvalidParameter(f"Cannot write '{path}': a parent folder of it is a file.")
    if conn.execute(_FILE_BELOW, {"package_id": package_id, "prefix": _like_prefix(path)}).first():
        raise InvalidParameter(f"Cannot write '{path}': it is a folder.")


def _counted(shas: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sha in shas:
        counts[sha] = counts.get(sha, 0) + 1
    return counts


def _release(conn: Connection, shas: Iterable[str]) -> None:
    for sha, count in _counted(shas).items():
        conn.execute(_RELEASE, {"sha": sha, "count": count})


_FILE_COLUMNS = (
    package_files.c.path,
    package_files.c.sha256,
    package_files.c.size,
    package_files.c.media_type,
    package_files.c.created_at,
    blobs.c.location,
)


_FILE = (
    select(*_FILE_COLUMNS).join(blobs, blobs.c.sha256 == package_files.c.sha256).where(_SAME_FILE)
)


def get_file(db: Database, package_id: int, path: str) -> PackageFile | None:
    with db.read() as conn:
        row = conn.execute(_FILE, {"package_id": package_id, "path": path}).first()
    return None if row is None else PackageFile(*row)


def files(db: Database, package_id: int, folder: str = "") -> list[PackageFile]:
    """Every file of the package (under ``folder``), ordered by path."""
    query = (
        select(*_FILE_COLUMNS)
        .join(blobs, blobs.c.sha256 == package_files.c.sha256)
        .where(package_files.c.package_id == package_id)
        .order_by(package_files.c.path)
    )
    if folder:
        query = query.where(package_files.c.path.like(_like_prefix(folder), escape="\\"))
    with db.read() as conn:
        return [PackageFile(*row) for row in conn.execute(query)]


def list_folder(db: Database, package_id: int, folder: str) -> list[Entry]:
    """The direct children of ``folder`` ("" = the root); a file or missing folder has none."""
    query = select(package_files.c.path, package_files.c.size).where(
        package_files.c.package_id == package_id
    )
    if folder:
        query = query.where(package_files.c.path.like(_like_prefix(folder), escape="\\"))
    prefix = folder + "/" if folder else ""
    entries: dict[str, Entry] = {}
    with db.read() as conn:
        for path, size in conn.execute(query):
            head, slash, _rest = path[len(prefix) :].partition("/")
            if head not in entries:
                entries[head] = Entry(head, True, None) if slash else Entry(head, False, size)
    return sorted(entries.values(), key=lambda e: e.name)


def delete_files(db: Database, package_id: int, path: str) -> int:
    """Delete the file at ``path`` or everything under the folder ``path`` ("" = all)."""
    with db.write() as conn:
        row = conn.execute(select(packages).where(packages.c.id == package_id)).first()
        if row is None:
            return 0
        _writable(_package(row))
        return _delete_files(conn, package_id, path)


def _delete_files(conn: Connection, package_id: int, path: str) -> int:
    where = [package_files.c.package_id == package_id]
    if path:
        where.append(
            (package_files.c.path == path)
            | package_files.c.path.like(_like_prefix(path), escape="\\")
        )
    doomed = conn.execute(select(package_files.c.sha256).where(*where)).scalars().all()
    if doomed:
        conn.execute(package_files.delete().where(*where))
        _release(conn, doomed)
    return len(doomed)


def publish(db: Database, package: Package) -> Package:
    """Freeze the package: its files can no longer change. Publishing twice is harmless. The
    server's own packages are published (or left open) by the server alone."""
    if package.kind != GENERIC:
        raise Conflict(
            f"Package '{package.name}' version '{package.version}' holds the server's own "
            "files; only the server publishes it."
        )
    with db.write() as conn:
        conn.execute(
            update(packages)
            .where(packages.c.id == package.id, packages.c.status == OPEN)
            .values(status=PUBLISHED, published_at=now_ms())
        )
        row = conn.execute(select(packages).where(packages.c.id == package.id)).one()
    return _package(row)


def delete_package(db: Database, package: Package) -> list[Upload]:
    """Release the files and keep a tombstone, so the version is never reused. Returns the
    open multipart uploads, which the caller aborts in the blob store."""
    with db.write() as conn:
        pending = _take_uploads(conn, package.id)
        _delete_files(conn, package.id, "")
        conn.execute(update(packages).where(packages.c.id == package.id).values(status=DELETED))
    return pending


def purge_package(conn: Connection, package_id: int) -> list[Upload]:
    """Remove a package row and its files entirely (its owner is going away)."""
    pending = _take_uploads(conn, package_id)
    _delete_files(conn, package_id, "")
    conn.execute(packages.delete().where(packages.c.id == package_id))
    return pending


def _take_uploads(conn: Connection, package_id: int) -> list[Upload]:
    rows = conn.execute(select(uploads).where(uploads.c.package_id == package_id)).all()
    if rows:
        conn.execute(uploads.delete().where(uploads.c.package_id == package_id))
    return [Upload(**r._mapping) for r in rows]


def start_upload(db: Database, upload: Upload) -> None:
    with db.write() as conn:
        row = conn.execute(select(packages).where(packages.c.id == upload.package_id)).first()
        if row is None:
            raise NotFound("The package no longer exists.")
        _writable(_package(row))
        conn.execute(insert(uploads).values(asdict(upload)))


def get_upload(db: Database, upload_id: str, package_id: int, path: str) -> Upload:
    with db.read() as conn:
        row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
    if row is None or row.package_id != package_id or row.path != path:
        raise NotFound(f"No multipart upload '{upload_id[:100]}' for '{path}'.")
    return Upload(**row._mapping)


def finish_upload(db: Database, upload_id: str) -> bool:
    """Forget a multipart upload; False when it was already gone."""
    with db.write() as conn:
        return conn.execute(uploads.delete().where(uploads.c.id == upload_id)).rowcount > 0


_INSERT_FILE_ROWS = insert(package_files)
_ADD_REFS = (
    update(blobs)
    .where(blobs.c.sha256 == bindparam("sha"))
    .values(refs=blobs.c.refs + bindparam("count"))
)
_INSERT_PACKAGE = insert(packages).returning(packages.c.id)


def create_published(
    conn: Connection, project_id: int, name: str, version: str, kind: str, now: int
) -> int:
    """A new package, published from the start (its files are linked in the same
    transaction); the caller knows the name and version are new."""
    return int(
        conn.execute(
            _INSERT_PACKAGE,
            {
                "project_id": project_id,
                "name": name,
                "name_key": key(name),
                "version": version,
                "kind": kind,
                "status": PUBLISHED,
                "run_pk": None,
                "created_at": now,
                "published_at": now,
            },
        ).scalar_one()
    )


def link_files(conn: Connection, source_id: int, folder: str, target_id: int) -> int:
    """Give ``target`` the files of ``source`` under ``folder`` (paths made relative to it),
    pointing at the same blobs: one more reference each, no bytes copied."""
    sql = (
        "SELECT path, sha256, size, media_type, created_at FROM package_files WHERE package_id = ?"
    )
    params: tuple[object, ...] = (source_id,)
    if folder:
        sql += " AND (path = ? OR substr(path, 1, ?) = ?)"
        params = (source_id, folder, len(folder) + 1, folder + "/")
    rows = driver_rows(conn, sql, params)
    prefix = folder + "/" if folder else ""
    linked = [
        {
            "package_id": target_id,
            "path": path[len(prefix) :] if path != folder else path.rsplit("/", 1)[-1],
            "sha256": sha,
            "size": size,
            "media_type": media,
            "created_at": created,
        }
        for path, sha, size, media, created in rows
    ]
    if linked:
        conn.execute(_INSERT_FILE_ROWS, linked)
        conn.execute(
            _ADD_REFS,
            [{"sha": sha, "count": n} for sha, n in _counted(r[1] for r in rows).items()],
        )
    return len(linked)
