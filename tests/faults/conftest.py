"""Faults injected from outside the runs, with real parts.

* ``TcpProxy``: a TCP proxy on 127.0.0.1 in front of a server (the test S3 server, an MLflow server). ``down()``
  closes its listener (new connections are refused) and resets every live connection; ``up()`` listens again on
  the same port. ``arm(rule, seconds)`` takes it down when a request line passing through matches ``rule`` — the
  matching request is dropped, so the outage starts in the middle of exactly the operation named — and brings it
  back ``seconds`` later (None: stays down until ``up()``). Every outage is recorded with its start, end and trigger.
* ``s3_proxy``: the proxy in front of the session's S3 server; jobs submitted with ``submit_through`` reach S3 only
  through it (``AWS_ENDPOINT_URL_S3`` in the job's runtime env: the driver and every Ray worker of the job see it).
  The test process itself keeps the direct endpoint, so it can look at storage while the proxy is down.
* ``RestartableMlflow``: an MLflow tracking server that can be stopped and started again on its port and database.
* ``figures``: what a fault test measured (outage lengths, time to fail, epochs redone, resume epoch), printed and
  appended to ``<pytest basetemp>/fault_figures.json`` for the README table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import BUCKET, REPO, free_ports, ray_cli, server

METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"PATCH ")
BUFFER = 1 << 20  # bytes held for a slow receiver before the sender is no longer read


class _Side:
    """One socket of a proxied connection: what is waiting to be sent to it, whether it has sent EOF."""

    def __init__(self, sock: socket.socket, kind: str):
        self.sock, self.kind = sock, kind  # kind: "client" (the caller) or "upstream" (the server)
        self.peer: _Side | None = None
        self.out = bytearray()
        self.eof = False
        self.events = 0  # what the selector watches it for


def _rst(sock: socket.socket) -> None:
    """Close with RST (linger 0): the other end sees "connection reset", as when a server dies."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TcpProxy:
    """127.0.0.1:<port> → ``target``, one selector thread; see the module docstring."""

    def __init__(self, target: str):
        parsed = urlparse(target)
        self.target = (parsed.hostname, parsed.port)
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[float, str]] = []  # (time, request line) of every request that passed
        self.outages: list[dict] = []  # {"trigger", "start", "end", "seconds"}
        self._rules: list[tuple[Callable[[str], bool], float | None]] = []  # armed, fired in order
        self._lock = threading.Lock()
        self._commands: list[tuple[str, threading.Event]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._listener: socket.socket | None = None
        self._sides: dict[socket.socket, _Side] = {}  # every open connection's two sockets
        self._up_at: float | None = None
        self._closed = False
        self._listen()
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    # --- control (any thread) -------------------------------------------------------------------------------
    def down(self) -> None:
        self._command("down")

    def up(self) -> None:
        self._command("up")

    def arm(self, rule: str | Callable[[str], bool], seconds: float | None) -> None:
        """Go down when a request line matches ``rule`` (a regex or a predicate); back up ``seconds`` later. Rules
        fire one after another: the second is looked at only once the first has fired."""
        match = re.compile(rule).search if isinstance(rule, str) else rule
        with self._lock:
            self._rules.append((match, seconds))

    def reset(self) -> None:
        """Up, nothing armed, no history."""
        with self._lock:
            self._rules.clear()
        self.up()
        self.requests.clear()
        self.outages.clear()

    def close(self) -> None:
        self._closed = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)

    def _command(self, name: str) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((name, done))
        self._wake_w.send(b"x")
        assert done.wait(timeout=10), f"proxy did not execute {name}"

    # --- the selector thread --------------------------------------------------------------------------------
    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.setblocking(False)
        self._sel.register(s, selectors.EVENT_READ, "listen")
        self._listener = s

    def _go_down(self, trigger: str, seconds: float | None) -> None:
        if self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for side in list(self._sides.values()):
            self._close(side, reset=True)
        self.outages.append({"trigger": trigger, "start": time.time(), "end": None, "seconds": None})
        self._up_at = None if seconds is None else time.time() + seconds

    def _go_up(self) -> None:
        if self._listener is None:
            self._listen()
            if self.outages and self.outages[-1]["end"] is None:
                o = self.outages[-1]
                o["end"] = time.time()
                o["seconds"] = round(o["end"] - o["start"], 2)
        self._up_at = None

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _rst(client)
            return
        a, b = _Side(client, "client"), _Side(upstream, "upstream")
        a.peer, b.peer = b, a
        for side in (a, b):
            side.sock.setblocking(False)
            self._sides[side.sock] = side
        for side in (a, b):
            self._update(side)

    def _close(self, side: "_Side", reset: bool) -> None:
        """Close a connection (both sides): RST when ``reset`` (an outage), else an orderly close."""
        for s in (side, side.peer):
            if self._sides.pop(s.sock, None) is not None:
                if s.events:
                    self._sel.unregister(s.sock)
                _rst(s.sock) if reset else s.sock.close()

    def _update(self, side: "_Side") -> None:
        """Watch ``side`` for what it can do now: read (unless at EOF or its peer's buffer is full), write (if it
        has something to send)."""
        if side.sock not in self._sides:
            return
        events = (0 if side.eof or len(side.peer.out) > BUFFER else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if side.out else 0)
        if events == side.events:
            return
        if not side.events:
            self._sel.register(side.sock, events, side)
        elif not events:
            self._sel.unregister(side.sock)
        else:
            self._sel.modify(side.sock, events, side)
        side.events = events

    def _finish_if_done(self, side: "_Side") -> bool:
        if side.eof and side.peer.eof and not side.out and not side.peer.out:
            self._close(side, reset=False)
            return True
        return False

    def _readable(self, side: "_Side") -> None:
        try:
            data = side.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            self._close(side, reset=True)
            return
        if not data:  # an orderly close: passed on (FIN, not RST) once what was read is delivered
            side.eof = True
            if not side.peer.out:
                with contextlib.suppress(OSError):
                    side.peer.sock.shutdown(socket.SHUT_WR)
            if not self._finish_if_done(side):
                self._update(side)
            return
        if side.kind == "client" and data.startswith(METHODS):
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append((time.time(), line))
            with self._lock:
                rule = self._rules[0] if self._rules else None
                if rule is not None and rule[0](line):
                    self._rules.pop(0)
                else:
                    rule = None
            if rule is not None:  # drop this request: the outage starts in the middle of it
                self._go_down(line, rule[1])
                return
        side.peer.out += data
        self._update(side.peer)
        self._update(side)

    def _writable(self, side: "_Side") -> None:
        try:
            sent = side.sock.send(side.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(side, reset=True)
            return
        del side.out[:sent]
        if not side.out and side.peer.eof:
            with contextlib.suppress(OSError):
                side.sock.shutdown(socket.SHUT_WR)
            if self._finish_if_done(side):
                return
        self._update(side)
        self._update(side.peer)

    def _loop(self) -> None:
        while not self._closed:
            timeout = 0.5 if self._up_at is None else max(0.0, min(0.5, self._up_at - time.time()))
            for key, mask in self._sel.select(timeout):
                if key.data == "wake":
                    self._wake_r.recv(4096)
                    with self._lock:
                        commands, self._commands = self._commands, []
                    for name, done in commands:
                        if name == "up":
                            self._go_up()
                        elif self._listener is not None:  # down, unless it already is
                            self._go_down("down()", None)
                        done.set()
                elif key.data == "listen":
                    if self._listener is not None:
                        self._accept()
                elif isinstance(key.data, _Side) and key.fileobj in self._sides:
                    if mask & selectors.EVENT_READ:
                        self._readable(key.data)
                    if mask & selectors.EVENT_WRITE and key.fileobj in self._sides:
                        self._writable(key.data)
            if self._up_at is not None and time.time() >= self._up_at:
                self._go_up()
        for side in list(self._sides.values()):
            self._close(side, reset=True)
        if self._listener is not None:
            self._listener.close()


@pytest.fixture(scope="session")
def s3_proxy_server(s3_endpoint):
    proxy = TcpProxy(s3_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def s3_proxy(s3_proxy_server):
    """The S3 proxy, up and unarmed at the start and end of the test."""
    s3_proxy_server.reset()
    yield s3_proxy_server
    s3_proxy_server.reset()


def runtime_env_through(proxy: TcpProxy, path, extra_env: dict[str, str] | None = None) -> str:
    """The project's runtime env (infra/runtime_env.yaml) plus ``AWS_ENDPOINT_URL_S3`` = the proxy, as a file."""
    with open(os.path.join(REPO, "infra", "runtime_env.yaml")) as f:
        env = yaml.safe_load(f)
    env["env_vars"] = {**env.get("env_vars", {}), "AWS_ENDPOINT_URL_S3": proxy.url, **(extra_env or {})}
    with open(path, "w") as f:
        yaml.safe_dump(env, f)
    return str(path)


def submit_through(address: str, runtime_env: str, *entrypoint: str, options: tuple[str, ...] = (),
                   timeout: int = 600):
    """`ray job submit` of ``entrypoint`` with ``runtime_env``, uploading the working tree."""
    return ray_cli(address, "submit", "--runtime-env", runtime_env, "--working-dir", ".", *options, "--",
                   *entrypoint, timeout=timeout)


def job_summary(stdout: str) -> dict:
    """The JSON summary a job printed last."""
    return json.JSONDecoder().raw_decode(stdout[stdout.rindex('{\n "status"'):])[0]


def jobs_client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def wait_job(address: str, submission_id: str, timeout: float) -> str:
    """The job's terminal status (SUCCEEDED, FAILED, STOPPED), waiting at most ``timeout`` seconds."""
    client = jobs_client(address)
    deadline = time.time() + timeout
    while True:
        status = str(client.get_job_status(submission_id).value)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        if time.time() > deadline:
            client.stop_job(submission_id)
            raise AssertionError(f"job {submission_id} still {status} after {timeout} s")
        time.sleep(0.5)


def mlflow_cmd(port: int, root, artifacts: str) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db", "--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port",
            str(port), "--workers", "1"]


class RestartableMlflow:
    """An MLflow tracking server (sqlite in ``root``) that can be stopped and started again on its port."""

    def __init__(self, root, artifacts: str, env: dict[str, str]):
        (self.port,) = free_ports(1)
        self.uri = f"http://127.0.0.1:{self.port}"
        self.root, self.artifacts, self.env = root, artifacts, env
        self._stack: contextlib.ExitStack | None = None
        self.starts = 0

    def start(self) -> None:
        assert self._stack is None, "already running"
        self.starts += 1
        stack = contextlib.ExitStack()
        stack.enter_context(server(mlflow_cmd(self.port, self.root, self.artifacts), env=self.env,
                                   ready_url=f"{self.uri}/health", log_path=self.root / f"server{self.starts}.log",
                                   group=True, timeout=120))
        self._stack = stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture(scope="session")
def proxied_mlflow(s3_proxy_server, tmp_path_factory):
    """An MLflow server whose artifact store (S3) it reaches through the S3 proxy."""
    root = tmp_path_factory.mktemp("mlflow-faults")
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_proxy_server.url, "AWS_ENDPOINT_URL_S3": s3_proxy_server.url,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    srv = RestartableMlflow(root, f"s3://{BUCKET}/faults/mlflow-artifacts", env)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def figures(request, tmp_path_factory):
    """A dict the test fills with what it measured; printed and appended to <basetemp>/fault_figures.json."""
    got: dict = {}
    yield got
    path = tmp_path_factory.getbasetemp() / "fault_figures.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[request.node.nodeid] = got
    path.write_text(json.dumps(data, indent=1, default=str))
    print(f"\n[fault figures] {request.node.nodeid}: {json.dumps(got, default=str)}")


def small_pairs(demo_root: str, dest, n_train: int = 8, n_val: int = 2) -> str:
    """A copy of the demo edges→photo set with ``n_train`` / ``n_val`` images: training steps in seconds."""
    import shutil

    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(os.path.join(dest, split), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(demo_root, "edges2photo", split)))[:n]:
            shutil.copy(os.path.join(demo_root, "edges2photo", split, name), os.path.join(dest, split, name))
    return str(dest)
