"""``models pull --tar``: the version's archive written to a file, each member checked against
the manifest before the file takes its final name."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

from modelyard_client.errors import ClientError
from modelyard_client.files import Entry
from modelyard_client.http import Http, seg
from modelyard_client.progress import Progress

CHUNK = 1024 * 1024
MANIFEST = "SHA256SUMS"


def download_archive(
    client: Http, version: dict[str, Any], files: list[Entry], tar_file: Path
) -> int:
    """Stream the archive to ``TAR.partial``, check it, rename it to ``tar_file``."""
    if tar_file.exists() and tar_file.is_dir():
        raise ClientError(f"{tar_file} is a folder: --tar takes a file name")
    partial = tar_file.with_name(tar_file.name + ".partial")
    path = f"/api/v1/models/{seg(version['name'])}/versions/{seg(version['version'])}/archive"
    response = client.send("GET", path, headers={"Accept": "application/x-tar"})
    if response.status >= 400:
        raise client.failure(response, client.read(response))
    length = int(response.getheader("content-length") or 0)
    written = 0
    try:
        with partial.open("wb") as out, Progress("tar", length, 1) as progress:
            buffer = bytearray(CHUNK)
            while count := response.readinto(buffer):
                out.write(memoryview(buffer)[:count])
                written += count
                progress.advance(count)
    except OSError as exc:
        client.close()
        raise ClientError(f"the archive download broke off after {written} bytes: {exc}") from None
    if length and written != length:
        raise ClientError(f"the archive stopped after {written} of {length} bytes; try again")
    try:
        check_archive(partial, files)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(tar_file)
    return written


def check_archive(archive: Path, files: list[Entry]) -> None:
    """Every file of the manifest in the archive with its sha256, and nothing else."""
    expected = {e.path: e.sha256 for e in files}
    seen: set[str] = set()
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                _root, _, relative = member.name.partition("/")
                if relative == MANIFEST:
                    continue
                if relative not in expected:
                    raise ClientError(
                        f"the archive holds {relative!r}, which is not in the version's manifest"
                    )
                handle = tar.extractfile(member)
                assert handle is not None
                digest = hashlib.sha256()
                while block := handle.read(CHUNK):
                    digest.update(block)
                if digest.hexdigest() != expected[relative]:
                    raise ClientError(
                        f"{relative}: sha256 {digest.hexdigest()} in the archive does not match "
                        f"the server's manifest ({expected[relative]}); nothing was written"
                    )
                seen.add(relative)
    except tarfile.TarError as exc:
        raise ClientError(f"the archive is not a valid tar file: {exc}") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise ClientError(
            f"the archive lacks {len(missing)} files of the manifest, e.g. {missing[0]}"
        )
