import os
import socket
import time

import pyarrow.fs as pafs
import pytest

from pipelines import storage
from pipelines.errors import StorageError
from tests.conftest import BUCKET


def test_local_paths(tmp_path):
    fs, path = storage.resolve(str(tmp_path / "a"))
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "a")
    assert storage.resolve(f"file://{tmp_path}/b")[1] == f"{tmp_path}/b"
    storage.write_bytes(str(tmp_path / "x" / "y.bin"), b"hello")
    assert storage.read_bytes(f"file://{tmp_path}/x/y.bin") == b"hello"
    assert [e.relpath for e in storage.list_files(str(tmp_path))] == ["x/y.bin"]
    assert storage.list_files(str(tmp_path / "missing")) == []


def test_s3_from_the_standard_environment(s3_endpoint):
    fs, path = storage.resolve(f"s3://{BUCKET}/p/q")
    assert isinstance(fs, pafs.S3FileSystem) and path == f"{BUCKET}/p/q"
    storage.write_bytes(f"s3://{BUCKET}/t/obj.bin", b"abc")
    assert storage.read_bytes(f"s3://{BUCKET}/t/obj.bin") == b"abc"
    assert storage.exists(f"s3://{BUCKET}/t/obj.bin")
    assert [e.relpath for e in storage.list_files(f"s3://{BUCKET}/t")] == ["obj.bin"]
    storage.delete(f"s3://{BUCKET}/t/obj.bin")
    assert not storage.exists(f"s3://{BUCKET}/t/obj.bin")


def test_filesystem_object_carries_no_credentials(s3_endpoint):
    import pickle

    fs, _ = storage.resolve(f"s3://{BUCKET}/p")
    assert b"testing" not in pickle.dumps(fs)  # keys stay in the environment, not in Ray task payloads


def test_s3_uri_with_explicit_endpoint_query(s3_endpoint):
    host = s3_endpoint.split("://")[1]
    storage.write_bytes(f"s3://{BUCKET}/q.bin", b"q")
    fs, path = storage.resolve(f"s3://{BUCKET}/q.bin?endpoint_override={host}&scheme=http")
    assert fs.open_input_stream(path).read() == b"q"


def test_missing_bucket_is_named(s3_endpoint):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket'.*does not exist"):
        storage.check_reachable("s3://no-such-bucket/x")


def test_unreachable_endpoint_names_it(s3_endpoint, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    storage._s3.cache_clear()
    t0 = time.time()
    try:
        with pytest.raises(StorageError) as e:
            storage.check_reachable(f"s3://{BUCKET}/x")
    finally:
        storage._s3.cache_clear()
    msg = str(e.value)
    assert "cannot reach object storage" in msg and dead in msg and "AWS_ENDPOINT_URL_S3" in msg
    assert "testing" not in msg and os.environ["AWS_SECRET_ACCESS_KEY"] not in msg
    assert time.time() - t0 < 60  # retried with backoff, then gave up
