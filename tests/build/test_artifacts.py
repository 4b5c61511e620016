"""The content-addressed artifact store, on a directory and on S3, and the settings it refuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from libs.objectstore import LocalStore
from services.build.artifacts import ArtifactConfigError, ArtifactStore, create_store
from tests.s3server import BUCKET


def _blob(tmp_path: Path) -> tuple[Path, str]:
    blob = tmp_path / "web.tar.gz"
    blob.write_bytes(b"some bytes")
    return blob, hashlib.sha256(b"some bytes").hexdigest()


async def test_put_is_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(LocalStore(tmp_path / "store"))
    blob, hexdigest = _blob(tmp_path)
    uri, digest, size = await store.put("web", "tar.gz", blob)
    target = tmp_path / "store" / "sha256" / hexdigest[:2] / f"{hexdigest}.tar.gz"
    assert (uri, digest, size) == (target.as_uri(), f"sha256:{hexdigest}", 10)
    assert target.read_bytes() == b"some bytes"
    # Same bytes from another component: one file.
    assert (await store.put("api", "tar.gz", blob))[0] == uri
    chart = await store.put("web", "helm-chart", blob)
    assert chart[0].endswith(f"{hexdigest}.tgz")
    assert sorted(p.name for p in target.parent.iterdir()) == [
        f"{hexdigest}.tar.gz",
        f"{hexdigest}.tgz",
    ]


async def test_put_to_s3(tmp_path: Path, s3_endpoint: str, aws_env: None) -> None:
    store = create_store(
        artifact_url=f"s3://{BUCKET}/builds?endpoint={s3_endpoint}", artifact_dir=tmp_path
    )
    blob, hexdigest = _blob(tmp_path)
    uri, digest, size = await store.put("web", "tar.gz", blob)
    key = f"builds/sha256/{hexdigest[:2]}/{hexdigest}.tar.gz"
    assert (uri, digest, size) == (f"s3://{BUCKET}/{key}", f"sha256:{hexdigest}", 10)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"some bytes"


def test_create_store_from_settings(tmp_path: Path) -> None:
    local = create_store(artifact_url=None, artifact_dir=tmp_path / "a")
    assert isinstance(local.objects, LocalStore) and local.objects.root == tmp_path / "a"
    by_url = create_store(artifact_url=(tmp_path / "b").as_uri(), artifact_dir=tmp_path / "a")
    assert isinstance(by_url.objects, LocalStore) and by_url.objects.root == tmp_path / "b"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "unsupported"),
        ("file://otherhost/x", "expected file:///absolute/dir"),
        ("s3://bucket/x?colour=red", "unknown parameters"),
    ],
)
def test_unusable_artifact_urls_are_refused(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ArtifactConfigError, match="OPSLINE_BUILD_ARTIFACT_URL") as err:
        create_store(artifact_url=url, artifact_dir=tmp_path)
    assert message in str(err.value)
