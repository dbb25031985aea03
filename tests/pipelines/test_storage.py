import contextlib
import os
import socket
import struct
import threading
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
    folder = f"s3://{BUCKET}/qdir?endpoint_override={host}&scheme=http"  # a folder URI: parts go before the query
    assert storage.join(folder, "a", "b.bin") == f"s3://{BUCKET}/qdir/a/b.bin?endpoint_override={host}&scheme=http"
    storage.write_bytes(storage.join(folder, "a", "b.bin"), b"ab")
    assert storage.read_bytes(f"s3://{BUCKET}/qdir/a/b.bin") == b"ab"


def test_s3_uri_with_its_own_keys(s3_endpoint):
    keyed = f"s3://testing:se%2Fcret@{BUCKET}/keyed"  # user-info, percent-encoded as pyarrow takes it
    fs, path = storage.resolve(storage.join(keyed, "k.bin"))
    assert path == f"{BUCKET}/keyed/k.bin"
    storage.write_bytes(storage.join(keyed, "k.bin"), b"k")
    assert storage.read_bytes(f"s3://{BUCKET}/keyed/k.bin") == b"k"
    assert storage.create_exclusive(storage.join(keyed, "lock"), b"1")
    assert not storage.create_exclusive(storage.join(keyed, "lock"), b"2")
    assert storage.describe(keyed).startswith(f"s3://***@{BUCKET}/keyed")


def test_missing_bucket_is_named(s3_endpoint):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket'.*does not exist"):
        storage.check_reachable("s3://no-such-bucket/x")


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` that resets the first ``drop`` connections it accepts and
    forwards the rest; ``attempts`` holds the time of every connection the client made."""

    def __init__(self, target: str, drop: int):
        host, port = target.split("://")[1].split(":")
        self.target, self.drop, self.attempts = (host, int(port)), drop, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.attempts.append(time.monotonic())
            if len(self.attempts) <= self.drop:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


@contextlib.contextmanager
def endpoint(monkeypatch, url: str):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
    storage._s3.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        storage._s3.cache_clear()


def test_dropped_connections_are_retried(s3_endpoint, monkeypatch):
    storage.write_bytes(f"s3://{BUCKET}/retry/obj.bin", b"payload")
    with DroppingProxy(s3_endpoint, drop=2) as proxy, endpoint(monkeypatch, proxy.url):
        assert storage.read_bytes(f"s3://{BUCKET}/retry/obj.bin") == b"payload"
    # the read went through only because the SDK connected again after each of the two resets
    assert len(proxy.attempts) >= 3


def test_unreachable_endpoint_is_retried_with_backoff_then_named(s3_endpoint, monkeypatch):
    with DroppingProxy(s3_endpoint, drop=10**6) as dead, endpoint(monkeypatch, dead.url):
        with pytest.raises(StorageError) as e:
            storage.check_reachable(f"s3://{BUCKET}/x")
    msg = str(e.value)
    assert "cannot reach object storage" in msg and dead.url in msg and "AWS_ENDPOINT_URL_S3" in msg
    assert "testing" not in msg and os.environ["AWS_SECRET_ACCESS_KEY"] not in msg
    # one request, tried S3_RETRY_ATTEMPTS times, with waits between the attempts (not a hot loop)
    assert len(dead.attempts) == storage.S3_RETRY_ATTEMPTS
    waits = [b - a for a, b in zip(dead.attempts, dead.attempts[1:])]
    assert sum(waits) > 0.5, waits
