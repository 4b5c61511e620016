"""Object storage: a local directory by default, any S3-compatible store by URL.

    open_store("file:///var/lib/opsline/artifacts")    # or a plain absolute path
    open_store("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1")

The methods are blocking; async callers run them with asyncio.to_thread.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

ACCEPTED_FORMS = (
    "file:///absolute/dir, /absolute/dir, or "
    "s3://bucket[/prefix][?endpoint=URL&region=NAME&connect_timeout=SECONDS&max_attempts=N]"
)
# The endpoint when the URL names none, first match wins; boto3 itself knows the AWS_* two,
# but reading them here tells us to use path-style addressing (see S3Store).
ENDPOINT_ENV_VARS = ("OPSLINE_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_S3_PARAMS = {"endpoint", "region", "connect_timeout", "max_attempts"}
_CHUNK = 1 << 20


class ObjectStoreError(Exception):
    """A store operation failed; the message names the object and the store's reason."""


def validate_key(key: str) -> str:
    """The key itself if it is a '/'-separated relative path that stays inside the store."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key {key!r}: must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r}: must be relative, not start with '/'")
    if "\x00" in key:
        raise ValueError(f"object key {key!r}: must not contain NUL")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


class ObjectStore(ABC):
    """Bytes under '/'-separated keys; every object also has a URI (file:// or s3://)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI of the object stored under key."""

    @abstractmethod
    def resolve(self, uri: str) -> str:
        """The key of a URI inside this store; ValueError for any other URI."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        """Store a local file under key; returns the object's URI."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store data under key; returns the object's URI."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object stored under key."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under key."""

    @abstractmethod
    def _download(self, key: str, dest: Path) -> None: ...

    def download(self, uri_or_key: str, dest_path: str | os.PathLike[str]) -> None:
        """Copy an object (by URI or key) to a local file, which appears whole or not at all."""
        # A valid key never contains "//", so anything with "://" can only be a URI.
        key = self.resolve(uri_or_key) if "://" in uri_or_key else validate_key(uri_or_key)
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._download(key, dest)


def open_store(url: str) -> ObjectStore:
    """The store a URL names: file:///dir (or /dir) or s3://bucket/prefix?endpoint=…"""
    if url.startswith("/"):
        return LocalStore(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(f"store URL {_redact(url)!r}: expected {ACCEPTED_FORMS}")
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return _open_s3(url, parts)
    raise ValueError(f"store URL {_redact(url)!r}: unsupported; expected {ACCEPTED_FORMS}")


class LocalStore(ObjectStore):
    """Objects as files under a root directory; writes go to a temp file and are renamed."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"store root {str(root)!r}: must be an absolute path")
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def resolve(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r} is not a file:// URI inside {self.root.as_uri()}")
        try:
            relative = Path(unquote(parts.path)).relative_to(self.root)
        except ValueError:
            raise ValueError(f"{uri!r} is not inside {self.root.as_uri()}") from None
        return validate_key(relative.as_posix())

    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        target = self._path(key)
        # A missing or unreadable source is the caller's problem: OSError, not ObjectStoreError.
        with open(path, "rb") as src:
            with self._errors("put", key):
                _write_atomically(target, lambda out: shutil.copyfileobj(src, out, _CHUNK))
        return target.as_uri()

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self._path(key)
        with self._errors("put", key):
            _write_atomically(target, lambda out: out.write(data))
        return target.as_uri()

    def get_bytes(self, key: str) -> bytes:
        source = self._path(key)
        with self._errors("get", key):
            return source.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _download(self, key: str, dest: Path) -> None:
        source = self._path(key)
        with self._errors("download", key):
            with source.open("rb") as src:
                _write_atomically(dest, lambda out: shutil.copyfileobj(src, out, _CHUNK))

    @contextmanager
    def _errors(self, op: str, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError) and op != "put"
            reason = "no such object" if missing else exc.strerror or str(exc)
            raise ObjectStoreError(f"{op} {self.uri(key)}: {reason}") from exc


def _write_atomically(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so os.replace is a rename on one filesystem: readers never see half.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_s3(url: str, parts: SplitResult) -> ObjectStore:
    where = f"store URL {_redact(url)!r}"
    prefix = parts.path.strip("/")
    bad_prefix = bool(prefix) and any(part in ("", ".", "..") for part in prefix.split("/"))
    if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc or parts.fragment:
        raise ValueError(f"{where}: expected {ACCEPTED_FORMS} (credentials come from the env)")
    if bad_prefix:
        raise ValueError(f"{where}: prefix {prefix!r} has empty, '.' or '..' segments")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"{where}: the query must be name=value pairs joined by '&'") from None
    if unknown := sorted(set(query) - _S3_PARAMS):
        raise ValueError(f"{where}: unknown parameters {unknown}; expected {sorted(_S3_PARAMS)}")
    if any(len(values) != 1 or not values[0] for values in query.values()):
        raise ValueError(f"{where}: each parameter needs exactly one non-empty value")
    params = {name: values[0] for name, values in query.items()}

    endpoint, source = params.get("endpoint"), where
    for var in ENDPOINT_ENV_VARS:
        if endpoint is None and os.environ.get(var):
            endpoint, source = os.environ[var], var
    if endpoint is not None:
        endpoint_parts = urlsplit(endpoint)
        if endpoint_parts.scheme not in ("http", "https") or not endpoint_parts.hostname:
            raise ValueError(f"{source}: endpoint {_redact(endpoint)!r} is not http(s)://host")
        if "@" in endpoint_parts.netloc:
            raise ValueError(f"{source}: credentials do not belong in the endpoint URL")
    try:
        connect_timeout = float(params.get("connect_timeout", "5"))
        max_attempts = int(params.get("max_attempts", "3"))
    except ValueError:
        connect_timeout, max_attempts = 0, 0
    if not connect_timeout > 0 or max_attempts < 1:
        raise ValueError(f"{where}: connect_timeout must be > 0 seconds, max_attempts >= 1")
    return S3Store(
        bucket=parts.netloc,
        prefix=prefix,
        endpoint=endpoint,
        region=params.get("region"),
        connect_timeout=connect_timeout,
        max_attempts=max_attempts,
    )


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS or any S3-compatible server), under an optional prefix."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        endpoint: str | None,
        region: str | None,
        connect_timeout: float,
        max_attempts: int,
    ) -> None:
        # Imported here so a deployment that stores to a directory never loads botocore.
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        session = boto3.session.Session()
        options: dict[str, Any] = {}
        if endpoint is not None:
            options = {
                # Other servers rarely serve bucket.host names; all of them serve host/bucket.
                "s3": {"addressing_style": "path"},
                # Many S3-compatible servers reject the checksums boto3 now sends by default.
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=60,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            **options,
        )
        # Credentials are resolved by boto3 (env, ~/.aws, instance role) and never kept here.
        self._client = session.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region or session.region_name or "us-east-1",
            config=config,
        )
        self.endpoint: str = self._client.meta.endpoint_url

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def resolve(self, uri: str) -> str:
        # Keys are raw in s3:// URIs (no percent-encoding), so match text, not a parsed URL.
        root = f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"
        if not uri.startswith(root):
            raise ValueError(f"{uri!r} is not inside {root}")
        return validate_key(uri[len(root) :])

    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        object_key = self._object_key(key)
        # A missing or unreadable source is the caller's problem: OSError, not ObjectStoreError.
        with open(path, "rb") as src, self._errors("put", key):
            self._client.upload_fileobj(src, self.bucket, object_key)
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        object_key = self._object_key(key)
        with self._errors("put", key):
            self._client.put_object(Bucket=self.bucket, Key=object_key, Body=data)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        object_key = self._object_key(key)
        with self._errors("get", key):
            response = self._client.get_object(Bucket=self.bucket, Key=object_key)
            data: bytes = response["Body"].read()
            return data

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        object_key = self._object_key(key)
        with self._errors("head", key):
            try:
                self._client.head_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise
        return True

    def _download(self, key: str, dest: Path) -> None:
        # boto3 writes to a temporary name beside dest and renames it when complete.
        object_key = self._object_key(key)
        with self._errors("download", key):
            self._client.download_file(self.bucket, object_key, os.fspath(dest))

    @contextmanager
    def _errors(self, op: str, key: str) -> Iterator[None]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", "?"
            )
            reason = f"{code}: {error.get('Message') or 'no message'}"
            raise ObjectStoreError(f"{op} {self.uri(key)} at {self.endpoint}: {reason}") from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise ObjectStoreError(f"{op} {self.uri(key)} at {self.endpoint}: {exc}") from exc


def _redact(url: str) -> str:
    """The URL without any user:password@ part (also in a nested endpoint), for messages."""
    return re.sub(r"//[^/?#@]*@", "//***@", url)
