"""Blobs in an S3-compatible bucket: ``<prefix>blobs/<nonce>``.

The sha256 of a blob is known only once its last byte has been read, so each write goes to a
fresh key of its own (a single PUT when small, a multipart upload when large); the database
row keyed by the sha256 then points at that key. Clients may also move bytes themselves
through presigned URLs: multipart uploads to a key the server chose, ranged downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from modelyard.blobs.base import (
    READ_CHUNK,
    BlobReader,
    BlobStore,
    BlobWriter,
    PendingUpload,
    StoredBlob,
    StoredObject,
)

if TYPE_CHECKING:
    from modelyard.settings import Settings

PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3
PRESIGN_SECONDS = 3600


class S3BlobStore(BlobStore):
    def __init__(self, url: str, client: Any, *, presigned: bool) -> None:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"Blob store URL {url!r} names no bucket")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.presigned = presigned
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3-parts")

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> S3BlobStore:
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "region_name": settings.s3_region or None,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 4, "mode": "standard"},
                max_pool_connections=32,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        if settings.s3_endpoint_url:
            options["endpoint_url"] = settings.s3_endpoint_url
        if settings.s3_access_key_id:
            options["aws_access_key_id"] = settings.s3_access_key_id
            options["aws_secret_access_key"] = settings.s3_secret_access_key
        client = boto3.session.Session().client("s3", **options)
        return cls(url, client, presigned=settings.s3_presigned)

    def key(self, location: str) -> str:
        if not location.startswith("blobs/") or "/" in location[6:] or ".." in location:
            raise ValueError(f"Not a blob location: {location!r}")
        return self.prefix + location

    def check(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def writer(self) -> BlobWriter:
        return _S3Writer(self)

    def open(self, location: str, start: int = 0, end: int | None = None) -> BlobReader:
        if end is not None and end <= start:
            return _S3Reader(None)
        byte_range = f"bytes={start}-" + ("" if end is None else str(end - 1))
        response = self.client.get_object(
            Bucket=self.bucket, Key=self.key(location), Range=byte_range
        )
        return _S3Reader(response["Body"])

    def size(self, location: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(location))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, location: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(location))

    def objects(self) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "blobs/"):
            for item in page.get("Contents", []):
                location = item["Key"][len(self.prefix) :]
                yield StoredObject(location, int(item["Size"]), item["LastModified"].timestamp())

    def new_location(self) -> str:
        return f"blobs/{uuid.uuid4().hex}"

    def start_multipart(self) -> tuple[str, str]:
        location = self.new_location()
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key(location))
        return location, str(created["UploadId"])

    def presign_part(self, location: str, upload_id: str, part_number: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(location),
                    "UploadId": upload_id,
                    "PartNumber": part_number,
                },
                ExpiresIn=PRESIGN_SECONDS,
            )
        )

    def complete_multipart(
        self, location: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key(location),
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    def abort_multipart(self, location: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key(location), UploadId=upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise

    def pending_multipart(self) -> Iterator[PendingUpload]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "blobs/"):
            for item in page.get("Uploads", []):
                location = item["Key"][len(self.prefix) :]
                yield PendingUpload(location, item["UploadId"], item["Initiated"].timestamp())

    def presign_get(self, location: str) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(location)},
                ExpiresIn=PRESIGN_SECONDS,
            )
        )


class _S3Writer(BlobWriter):
    """Buffers up to one part; a blob that fits in one part is a single PUT. Larger blobs are
    sent as a multipart upload with up to ``PARALLEL_PARTS`` parts in flight at once."""

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self.location = store.new_location()
        self.key = store.key(self.location)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[tuple[int, str]] = []
        self.in_flight: list[Future[tuple[int, str]]] = []
        self.next_part = 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.hasher.update(data)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) >= PART_SIZE:
            part = bytes(self.buffer[:PART_SIZE])
            del self.buffer[:PART_SIZE]
            self._send_part(part)

    def _send_part(self, data: bytes) -> None:
        client, bucket = self.store.client, self.store.bucket
        if self.upload_id is None:
            created = client.create_multipart_upload(Bucket=bucket, Key=self.key)
            self.upload_id = str(created["UploadId"])
        while len(self.in_flight) >= PARALLEL_PARTS:
            self.parts.append(self.in_flight.pop(0).result())
        number, self.next_part = self.next_part, self.next_part + 1
        self.in_flight.append(self.store.pool.submit(self._upload_part, number, data))

    def _upload_part(self, number: int, data: bytes) -> tuple[int, str]:
        response = self.store.client.upload_part(
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        return number, str(response["ETag"])

    def _drain(self) -> None:
        while self.in_flight:
            self.parts.append(self.in_flight.pop(0).result())

    def finish(self) -> StoredBlob:
        client, bucket = self.store.client, self.store.bucket
        if self.upload_id is None:
            client.put_object(Bucket=bucket, Key=self.key, Body=bytes(self.buffer))
        else:
            if self.buffer:
                self._send_part(bytes(self.buffer))
            self._drain()
            self.parts.sort()
            self.store.complete_multipart(self.location, self.upload_id, self.parts)
        self.buffer = bytearray()
        return StoredBlob(self.hasher.hexdigest(), self.size, self.location)

    def abort(self) -> None:
        self.buffer = bytearray()
        for future in self.in_flight:
            future.cancel()
        for future in self.in_flight:
            with contextlib.suppress(Exception):
                future.result()
        self.in_flight = []
        if self.upload_id is not None:
            self.store.abort_multipart(self.location, self.upload_id)
            self.upload_id = None


class _S3Reader(BlobReader):
    def __init__(self, body: Any) -> None:
        self.body = body

    def read(self, size: int = READ_CHUNK) -> bytes:
        if self.body is None:
            return b""
        return bytes(self.body.read(size))

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None
