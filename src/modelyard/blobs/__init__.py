"""Blob backends: where artifact bytes live. One interface, chosen by settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.blobs.base import BlobReader, BlobStore, BlobWriter, StoredBlob, UnsafeBlob

if TYPE_CHECKING:
    from modelyard.settings import Settings

__all__ = [
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "StoredBlob",
    "UnsafeBlob",
    "open_blob_store",
]


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: a local folder (default) or an S3 bucket."""
    url = settings.effective_blob_store_url
    if url.startswith("s3://"):
        from modelyard.blobs.s3 import S3BlobStore

        return S3BlobStore.from_settings(url, settings)
    from modelyard.blobs.local import LocalBlobStore

    return LocalBlobStore.from_url(url)
