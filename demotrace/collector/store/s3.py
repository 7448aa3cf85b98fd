"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph, moto...), behind the BlobStore interface.

Chosen by a URL, ``s3://bucket/prefix``. The endpoint, region and credentials come from the usual AWS
environment and config (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config``), as any AWS tool reads
them. A PUT is atomic in S3: a reader sees the old object or the new one, never a part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from demotrace.collector.store.blobs import check_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEME = "s3"
# Every call is bounded: a dead endpoint fails an upload (the device retries) instead of hanging it.
_CONNECT_TIMEOUT_S = 10
_READ_TIMEOUT_S = 60
_MAX_ATTEMPTS = 3


class S3UrlError(ValueError):
    """Not an ``s3://bucket[/prefix]`` URL."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; the prefix has no leading or trailing '/'."""
    parts = urlsplit(url)
    if parts.scheme != S3_SCHEME or not parts.netloc or parts.query or parts.fragment:
        raise S3UrlError(f"expected s3://bucket/prefix, got {url!r}")
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    return parts.netloc, prefix


def s3_client() -> S3Client:
    """A client configured from the AWS environment and config files, with bounded timeouts."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=_CONNECT_TIMEOUT_S,
        read_timeout=_READ_TIMEOUT_S,
        retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
    )
    client: S3Client = boto3.session.Session().client("s3", config=config)
    return client


def _error_code(error: Exception) -> str:
    response: Any = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects ``prefix/key`` in ``bucket``. Picklable: the client is made again where it lands
    (a Ray worker, a collector worker process)."""

    def __init__(self, bucket: str, prefix: str = "", client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix)

    @property
    def url(self) -> str:
        return f"{S3_SCHEME}://{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}://{self.bucket}"

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def __getstate__(self) -> dict[str, str]:
        return {"bucket": self.bucket, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["bucket"], state["prefix"])  # type: ignore[misc]

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except Exception as error:
            if _error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except Exception as error:
            if _error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix
        )
        for page in pages:  # S3 lists in UTF-8 binary order: sorted, like the folder
            for item in page.get("Contents", []):
                yield item["Key"][len(base) :]
