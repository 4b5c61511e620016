"""The artifact store: content-addressed files a build produced, in a directory or S3 bucket."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from libs.objectstore import LocalStore, ObjectStore, ObjectStoreError, open_store

_CHUNK = 1 << 20
# The file extension an artifact kind is stored with.
EXTENSIONS = {"tar.gz": "tar.gz", "helm-chart": "tgz"}

__all__ = ["ArtifactConfigError", "ArtifactStore", "ObjectStoreError", "create_store"]


class ArtifactConfigError(ValueError):
    """The artifact store settings cannot work; raised at start-up, not at the first build."""


def sha256_file(path: Path) -> tuple[str, int]:
    """The hex sha256 and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore:
    """sha256/<hex[:2]>/<hex>.<ext> in an object store: the same bytes are stored once."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @staticmethod
    def key_for(hexdigest: str, kind: str) -> str:
        return f"sha256/{hexdigest[:2]}/{hexdigest}.{EXTENSIONS.get(kind, 'bin')}"

    async def put(self, component: str, kind: str, path: Path) -> tuple[str, str, int]:
        """Store the file; returns (uri, "sha256:<hex>", size). Raises ObjectStoreError."""
        return await asyncio.to_thread(self._put, kind, path)

    def _put(self, kind: str, path: Path) -> tuple[str, str, int]:
        hexdigest, size = sha256_file(path)
        key = self.key_for(hexdigest, kind)
        if not self.objects.exists(key):
            self.objects.put_file(key, path)
        return self.objects.uri(key), f"sha256:{hexdigest}", size


def create_store(*, artifact_url: str | None, artifact_dir: Path) -> ArtifactStore:
    """The store the settings name (artifact_url wins); ArtifactConfigError if it cannot work."""
    try:
        if artifact_url:
            return ArtifactStore(open_store(artifact_url))
        return ArtifactStore(LocalStore(artifact_dir.expanduser().absolute()))
    except ValueError as exc:
        raise ArtifactConfigError(f"OPSLINE_BUILD_ARTIFACT_URL: {exc}") from None
    except ImportError as exc:  # boto3 is a dependency; a trimmed install may lack it
        raise ArtifactConfigError(
            f"OPSLINE_BUILD_ARTIFACT_URL {artifact_url!r} needs an S3 client ({exc.name} is "
            "not installed); unset it to use OPSLINE_BUILD_ARTIFACT_DIR"
        ) from None
