"""libs/objectstore: a directory and a real S3-compatible server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import os
import re
import socket
import stat
import time
import uuid
from pathlib import Path

import pytest

from libs.objectstore import LocalStore, ObjectStore, ObjectStoreError, S3Store, open_store
from tests.s3server import BUCKET, SECRET

BAD_KEYS = ["../x", "/abs", "a//b", "", "a/", "a/./b", "a/../../b", "nul\x00byte"]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> ObjectStore:
    if request.param == "local":
        return open_store((tmp_path / "objects").as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    # A prefix per test: they share one bucket but never see each other's objects.
    prefix = f"tests/{uuid.uuid4().hex}"
    return open_store(f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_put_bytes_round_trip_and_overwrite(store: ObjectStore) -> None:
    uri = store.put_bytes("builds/42/log.txt", b"first")
    assert uri == store.uri("builds/42/log.txt")
    assert store.get_bytes("builds/42/log.txt") == b"first"

    store.put_bytes("builds/42/log.txt", b"second")
    assert store.get_bytes("builds/42/log.txt") == b"second"


def test_put_file_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several copy chunks
    source = tmp_path / "artifact.tar.gz"
    source.write_bytes(data)

    uri = store.put_file("sha256/ab/abcdef.tar.gz", source)

    assert uri == store.uri("sha256/ab/abcdef.tar.gz")
    assert store.get_bytes("sha256/ab/abcdef.tar.gz") == data


def test_put_file_missing_source_is_the_callers_oserror(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file("k", tmp_path / "absent")
    assert not store.exists("k")


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("charts/web.tgz")
    store.put_bytes("charts/web.tgz", b"chart")
    assert store.exists("charts/web.tgz")
    # A "directory" is not an object.
    assert not store.exists("charts")


@pytest.mark.parametrize("key", ["a", "dir/sub/file.bin", "with space/ünïcode?#%.txt"])
def test_uri_resolve_round_trip(store: ObjectStore, key: str) -> None:
    uri = store.uri(key)
    assert store.resolve(uri) == key
    assert uri == store.put_bytes(key, b"x")
    assert store.get_bytes(store.resolve(uri)) == b"x"


def test_uri_forms(tmp_path: Path, aws_env: None) -> None:
    local = open_store(str(tmp_path))
    assert local.uri("a/b.txt") == (tmp_path / "a" / "b.txt").as_uri()
    assert local.uri("a/b.txt").startswith("file:///")

    s3 = open_store("s3://bkt/some/prefix/?endpoint=http://127.0.0.1:1")
    assert s3.uri("a/b.txt") == "s3://bkt/some/prefix/a/b.txt"
    assert open_store("s3://bkt?endpoint=http://127.0.0.1:1").uri("a") == "s3://bkt/a"


def test_resolve_rejects_uris_outside_the_store(store: ObjectStore) -> None:
    inside = store.uri("dir/x")
    outside = [
        inside.replace("dir/x", "../x"),
        inside.replace("dir/x", ""),
        "s3://another-bucket/dir/x",
        "file:///etc/passwd",
        "https://example.com/dir/x",
    ]
    for uri in outside:
        with pytest.raises(ValueError):
            store.resolve(uri)


def test_download_by_uri_and_by_key(store: ObjectStore, tmp_path: Path) -> None:
    uri = store.put_bytes("releases/v1/app.tgz", b"payload")
    by_uri = tmp_path / "out" / "deep" / "by-uri.tgz"
    by_key = tmp_path / "out" / "by-key.tgz"

    store.download(uri, by_uri)
    store.download("releases/v1/app.tgz", by_key)

    assert by_uri.read_bytes() == b"payload"
    assert by_key.read_bytes() == b"payload"
    # Only the finished files, no temporary leftovers beside them.
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == [
        "by-key.tgz",
        "by-uri.tgz",
        "deep",
    ]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_the_root_are_refused(
    store: ObjectStore, tmp_path: Path, key: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    calls = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.exists(key),
        lambda: store.uri(key),
        lambda: store.download(key, tmp_path / "dest"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="object key"):
            call()
    assert sorted(tmp_path.rglob("*")) == before


def test_missing_object_names_the_key(store: ObjectStore, tmp_path: Path) -> None:
    named = re.escape(store.uri("nope/missing.bin"))
    with pytest.raises(ObjectStoreError, match=named):
        store.get_bytes("nope/missing.bin")
    with pytest.raises(ObjectStoreError, match=named):
        store.download("nope/missing.bin", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/dir",
        "gs://bucket/prefix",
        "https://example.com/bucket",
        "relative/dir",
        "file://otherhost/dir",
    ],
)
def test_unknown_or_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_store(url)
    assert url in str(caught.value)
    assert "s3://bucket" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("s3://", "expected"),
        ("s3://bkt/a//b", "prefix"),
        ("s3://bkt/a/../b", "prefix"),
        ("s3://bkt?endpoint=127.0.0.1:9000", "http"),
        ("s3://bkt?bucket_endpoint=http://h", "unknown parameters"),
        ("s3://bkt?region=a&region=b", "exactly one"),
        ("s3://bkt?connect_timeout=soon", "connect_timeout"),
        ("s3://bkt?max_attempts=0", "max_attempts"),
    ],
)
def test_bad_s3_urls_are_refused(url: str, complaint: str, aws_env: None) -> None:
    with pytest.raises(ValueError, match=complaint):
        open_store(url)


def test_credentials_in_urls_are_refused_without_echoing_them(aws_env: None) -> None:
    for url in [
        f"s3://AKIA:{SECRET}@bkt/prefix",
        f"s3://bkt?endpoint=http://AKIA:{SECRET}@127.0.0.1:9000",
        f"https://AKIA:{SECRET}@example.com/x",
    ]:
        with pytest.raises(ValueError) as caught:
            open_store(url)
        assert SECRET not in str(caught.value)


@pytest.mark.parametrize("var", ["OPSLINE_S3_ENDPOINT", "AWS_ENDPOINT_URL"])
def test_endpoint_from_the_environment(
    var: str, s3_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, s3_endpoint)
    store = open_store(f"s3://{BUCKET}/env-{var}")

    assert isinstance(store, S3Store)
    assert store.endpoint == s3_endpoint
    store.put_bytes("k", b"via env")
    assert store.get_bytes("k") == b"via env"


def test_s3_service_errors_name_bucket_and_key_not_credentials(
    s3_endpoint: str, aws_env: None
) -> None:
    store = open_store(f"s3://no-such-bucket/p?endpoint={s3_endpoint}")
    with pytest.raises(ObjectStoreError) as caught:
        store.put_bytes("some/key", b"x")
    message = str(caught.value)
    assert "s3://no-such-bucket/p/some/key" in message
    assert "NoSuchBucket" in message
    assert SECRET not in message


def test_unreachable_s3_fails_fast_naming_the_endpoint(aws_env: None, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = open_store(f"s3://{BUCKET}?endpoint={endpoint}&connect_timeout=1&max_attempts=2")
    source = tmp_path / "f"
    source.write_bytes(b"x")
    calls = [
        lambda: store.put_bytes("k", b"x"),
        lambda: store.put_file("k", source),
        lambda: store.get_bytes("k"),
        # Unreachable is an error, never "no such object".
        lambda: store.exists("k"),
        lambda: store.download("k", tmp_path / "dest"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(ObjectStoreError, match=re.escape(endpoint)):
            call()
        assert time.monotonic() - started < 5


def test_local_files_are_world_readable_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.put_bytes("a/b.txt", b"x")

    assert os.listdir(tmp_path / "a") == ["b.txt"]
    assert stat.S_IMODE((tmp_path / "a" / "b.txt").stat().st_mode) == 0o644


def test_local_write_failure_is_an_objectstore_error(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    store.put_bytes("a", b"a file")
    with pytest.raises(ObjectStoreError, match="a/b"):
        store.put_bytes("a/b", b"cannot live under a file")
    assert store.get_bytes("a") == b"a file"


def test_local_root_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        LocalStore(Path("relative"))
