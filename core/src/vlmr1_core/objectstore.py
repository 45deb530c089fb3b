"""S3-compatible object storage behind a small interface: list, put, get, delete.

Checkpoints (:mod:`vlmr1_core.checkpoint_store`) and ``s3://`` downloads (:mod:`vlmr1_core.uri`)
use :class:`ObjectStore` only, so their rules (files before the manifest, a prefix without a
manifest is incomplete) do not depend on the client. :class:`S3Store` is boto3's client with:

* credentials from boto3's usual chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (a
  GRPOJob's ``secrets.objectStore`` Secret), a web identity token (EKS IRSA), a shared
  credentials file, container or instance metadata;
* the endpoint of a non-AWS store (MinIO, Ceph RGW, OBS) from ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL``, which botocore reads itself; with one set, path-style addressing
  (``endpoint/bucket/key``: in-cluster stores rarely have wildcard DNS) unless
  ``VLMR1_S3_ADDRESSING_STYLE`` says ``virtual`` or ``auto``;
* retries in botocore's ``standard`` mode (throttling, 5xx, dropped connections) and
  multipart transfers with parallel parts through boto3's transfer manager.

A failure the user must fix (no credentials, access denied, no such bucket) is a
:class:`~vlmr1_core.uri.StorageError` (exit 2: restarting will not help); any other failure
that outlasts the retries is an :class:`ObjectStoreUnavailableError` (a plain error: the training
gang restarts from its last complete checkpoint). boto3 is imported when a store is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vlmr1_core.uri import StorageError

__all__ = [
    "ADDRESSING_ENV",
    "ObjectStore",
    "ObjectStoreUnavailableError",
    "S3Store",
    "StoredObject",
    "require_credentials",
    "s3_client",
]

ADDRESSING_ENV = "VLMR1_S3_ADDRESSING_STYLE"
"""``path``, ``virtual`` or ``auto``; default ``path`` with an endpoint URL, else ``auto``."""

_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a pod: the Secret named by spec.secrets.objectStore), "
    "AWS_ENDPOINT_URL for a store other than AWS S3, and check the bucket name and the policy (docs/object-storage.md)"
)
# Error codes no retry or restart can fix: the configuration or the policy is wrong.
_USER_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
    "AuthorizationHeaderMalformed",
    "InvalidToken",
    "ExpiredToken",
    "403",
    "404",
    "NoSuchKey",
}
_MB = 1024 * 1024


class ObjectStoreUnavailableError(RuntimeError):
    """The store did not answer, or kept failing, after botocore's retries (transient: retry later)."""


@dataclass(frozen=True)
class StoredObject:
    """One object: its key and size in bytes."""

    key: str
    size: int


class ObjectStore(Protocol):
    """What checkpoints need of a bucket. Keys are ``/``-separated; a prefix ends without ``/``."""

    bucket: str

    def list_objects(self, prefix: str) -> list[StoredObject]:
        """Every object below ``prefix/`` (recursively), sorted by key."""

    def list_prefixes(self, prefix: str) -> list[str]:
        """The names directly below ``prefix/`` that hold objects (``checkpoint-4``), sorted."""

    def put_file(self, path: Path, key: str) -> None:
        """Upload a local file to ``key`` (multipart when large); the object appears whole or not at all."""

    def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` to the local file ``path`` (its folder must exist)."""

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes of a small object, or None when there is no such key."""

    def delete(self, keys: list[str]) -> None:
        """Delete these keys (absent ones are no error)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object below ``prefix/``; returns how many."""


def _endpoint() -> str | None:
    return next((os.environ[name] for name in _ENDPOINT_ENV if os.environ.get(name)), None)


def s3_client() -> Any:
    """A boto3 S3 client configured as the module docstring says (a StorageError without boto3)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise StorageError(
            "s3:// uris need boto3, which is not installed here",
            fix="pip install 'vlmr1[s3]' (the trainer and serving images have it)",
        ) from exc
    style = os.environ.get(ADDRESSING_ENV) or ("path" if _endpoint() else "auto")
    if style not in ("path", "virtual", "auto"):
        raise StorageError(f"{ADDRESSING_ENV}={style!r}: expected path, virtual or auto", fix=f"unset {ADDRESSING_ENV}")
    # botocore's own AWS_MAX_ATTEMPTS / AWS_RETRY_MODE win over these defaults.
    retries = (
        {}
        if os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")
        else {"retries": {"mode": "standard", "max_attempts": 8}}
    )
    config = Config(connect_timeout=10, read_timeout=120, s3={"addressing_style": style}, **retries)
    return boto3.session.Session().client("s3", config=config)


def require_credentials(uri: str) -> None:
    """Raise a StorageError naming ``uri`` when boto3's chain finds no credentials at all."""
    try:
        import boto3
    except ImportError:
        s3_client()  # raises the install hint
        raise
    if boto3.session.Session().get_credentials() is None:
        raise StorageError(f"no credentials for {uri}: boto3 found none in the environment or its config", fix=_FIX)


def _translate(exc: Exception, what: str) -> Exception:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    # boto3's transfer manager wraps the client's error (S3UploadFailedError): judge by the cause.
    cause = exc.__cause__ or exc.__context__
    if not isinstance(exc, ClientError) and isinstance(cause, ClientError | NoCredentialsError):
        return _translate(cause, what)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(f"{what}: {exc}", fix=_FIX)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _USER_CODES:
            return StorageError(f"{what}: {exc}", fix=_FIX)
    return ObjectStoreUnavailableError(f"{what}: {exc}")


class S3Store:
    """An :class:`ObjectStore` over one bucket of an S3-compatible service."""

    def __init__(self, bucket: str, *, client: Any = None, part_size_mb: int = 64, concurrency: int = 8) -> None:
        self.bucket = bucket
        self.client = client if client is not None else s3_client()
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(
            multipart_threshold=part_size_mb * _MB, multipart_chunksize=part_size_mb * _MB, max_concurrency=concurrency
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise _translate(exc, what) from exc

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{prefix}/" if prefix else ""}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        paginator = self.client.get_paginator("list_objects_v2")
        yield from self._call(f"cannot list s3://{self.bucket}/{prefix}", lambda: list(paginator.paginate(**kwargs)))

    def list_objects(self, prefix: str) -> list[StoredObject]:
        found = [
            StoredObject(str(item["Key"]), int(item["Size"]))
            for page in self._pages(prefix)
            for item in page.get("Contents", [])
        ]
        return sorted(found, key=lambda o: o.key)

    def list_prefixes(self, prefix: str) -> list[str]:
        start = f"{prefix}/" if prefix else ""
        names = [
            str(item["Prefix"])[len(start) :].rstrip("/")
            for page in self._pages(prefix, "/")
            for item in page.get("CommonPrefixes", [])
        ]
        return sorted(names)

    def put_file(self, path: Path, key: str) -> None:
        self._call(
            f"cannot upload {path} to s3://{self.bucket}/{key}",
            self.client.upload_file,
            str(path),
            self.bucket,
            key,
            Config=self.transfer,
        )

    def get_file(self, key: str, path: Path) -> None:
        self._call(
            f"cannot download s3://{self.bucket}/{key}",
            self.client.download_file,
            self.bucket,
            key,
            str(path),
            Config=self.transfer,
        )

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
                return None
            raise _translate(exc, f"cannot read s3://{self.bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"cannot read s3://{self.bucket}/{key}") from exc

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            response = self._call(
                f"cannot delete from s3://{self.bucket}",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise _translate_code(str(first.get("Code")), f"cannot delete s3://{self.bucket}/{first.get('Key')}")

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list_objects(prefix)]
        self.delete(keys)
        return len(keys)

    def put_probe(self, prefix: str) -> None:
        """Write and delete a small object below ``prefix``: proves write and delete access."""
        key = f"{prefix}/.vlmr1-access-check-{os.getpid()}" if prefix else f".vlmr1-access-check-{os.getpid()}"
        self._call(
            f"cannot write to s3://{self.bucket}/{prefix}",
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=b"",
        )
        self.delete([key])


def _translate_code(code: str, what: str) -> Exception:
    if code in _USER_CODES:
        return StorageError(f"{what}: {code}", fix=_FIX)
    return ObjectStoreUnavailableError(f"{what}: {code}")
