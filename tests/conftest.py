"""Session-wide real parts: an S3 server (moto) on 127.0.0.1, a local Ray cluster, the demo datasets.

Each is started once per test session and stopped at its end (by its own handle or PID, never a machine-wide stop).
"""

from __future__ import annotations

import contextlib
import os

import pytest

# Set before Ray starts: workers inherit the driver's environment.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# Ray Train's controller polls its workers every 2 s by default: every tiny run waits up to that long to see it has
# finished (and a fault test to see a worker died). 0.5 s here; production keeps Ray's default.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
for var in ("RAY_ADDRESS", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(var, None)

BUCKET = "i2i-test"


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A moto S3 server on a free 127.0.0.1 port, configured through the standard AWS_* environment."""
    import logging

    from moto.server import ThreadedMotoServer

    from pipelines import storage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL_S3=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    storage._s3.cache_clear()
    s3_client().create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")


def upload_dir(local: str, bucket: str, prefix: str) -> None:
    client = s3_client()
    for dirpath, _, files in os.walk(local):
        for f in files:
            path = os.path.join(dirpath, f)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, local)}")


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint):
    """A local Ray cluster for the session (started after S3 so workers see its endpoint)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=1_000_000_000,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """The three demo datasets at 32 px, few tiles: real photos, small enough for seconds-long tests."""
    from pipelines.demo_data import build_demo

    out = tmp_path_factory.mktemp("demo")
    build_demo(str(out), tile_size=32, max_per_photo=6, seed=0)
    return str(out)


def truncate_first_sample(folder: str, split: str, *, rehash: bool = True) -> str:
    """Truncate the first file of the first shard of ``split`` (so that sample no longer decodes) and, with
    ``rehash``, record the shard's new hash in the manifest (so it passes the integrity check). Its key."""
    import io
    import tarfile

    from pipelines import manifest as mf

    m = mf.read_manifest(folder)
    entry = m.splits[split].shards[0]
    path = os.path.join(folder, entry.path)
    with tarfile.open(path) as tar:
        members = [(mem, tar.extractfile(mem).read()) for mem in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, (mem, data) in enumerate(members):
            data = data[:50] if i == 0 else data
            mem.size = len(data)
            tar.addfile(mem, io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    if rehash:
        rehash_shards(folder, split)
    return members[0][0].name.split(".")[0]


def rehash_shards(folder: str, split: str) -> None:
    """Rewrite the manifest with the current size and sha256 of every shard of ``split``."""
    from pipelines import manifest as mf

    m = mf.read_manifest(folder)
    shards = []
    for s in m.splits[split].shards:
        digest, size = mf.sha256_of(os.path.join(folder, s.path))
        shards.append(s.model_copy(update={"sha256": digest, "bytes": size}))
    splits = {**m.splits, split: m.splits[split].model_copy(update={"shards": shards})}
    mf.write_manifest(folder, m.model_copy(update={"splits": splits}))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (every probe socket stays bound until all are chosen)."""
    import socket

    held = [socket.socket() for _ in range(n)]
    for s in held:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


@contextlib.contextmanager
def server(cmd: list[str], *, env: dict, ready_url: str | None = None, ready=None, log_path, timeout: float = 300,
           group: bool = False):
    """Run ``cmd`` until ``ready_url`` answers (or ``ready()`` is true); on exit stop it by its PID (or its own
    process group)."""
    import signal
    import subprocess
    import time
    import urllib.request

    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=group)
    stop = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if ready is None:
                    urllib.request.urlopen(ready_url, timeout=2)
                elif not ready():
                    raise OSError("not ready")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start; see {log_path}") from None
                time.sleep(0.5)
        yield proc
    finally:
        stop(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(signal.SIGKILL)
        log.close()


def ray_start(temp, *, head: str | None = None, num_cpus: int = 2, object_store_memory: int = 800_000_000
              ) -> tuple[list[str], dict, dict[str, int]]:
    """(command, environment, ports) of a `ray start --block` head (``head`` None) or worker node joining ``head``
    (its GCS address), on 127.0.0.1, with every port explicit: nothing taken from a fixed default (10001, 52365, …)
    that a parallel run or a second node on this machine would clash with."""
    import shutil
    import sys

    bindir = os.path.dirname(sys.executable)
    flags = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "runtime-env-agent-port", "node-manager-port", "object-manager-port"]
    if head is None:
        flags += ["port", "dashboard-port", "ray-client-server-port"]
    ports = dict(zip(flags, free_ports(len(flags))))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    cmd = [shutil.which("ray", path=bindir) or "ray", "start", "--block", f"--num-cpus={num_cpus}",
           f"--temp-dir={temp}", "--disable-usage-stats", f"--object-store-memory={object_store_memory}",
           *(f"--{k}={v}" for k, v in ports.items())]
    if head is None:
        cmd += ["--head", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    else:
        cmd += [f"--address={head}"]
    return cmd, env, ports


@pytest.fixture(scope="session")
def ray_head(s3_endpoint, tmp_path_factory):
    """A real `ray start --head` cluster on 127.0.0.1 (dashboard = Jobs API), stopped by PID at the end."""
    temp = tmp_path_factory.mktemp("rayhead")
    cmd, env, ports = ray_start(temp)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    with server(cmd, env=env, ready_url=f"{address}/api/version", log_path=temp / "head.log", timeout=90):
        yield address


@pytest.fixture(scope="session")
def mlflow_server(s3_endpoint, tmp_path_factory):
    """A real MLflow tracking server: sqlite backend, artifacts proxied to the S3 server. Stopped by PID."""
    import sys

    (port,) = free_ports(1)
    root = tmp_path_factory.mktemp("mlflow")
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--backend-store-uri",
           f"sqlite:///{root}/mlflow.db", "--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with server(cmd, env=env, ready_url=f"{uri}/health", log_path=root / "server.log", group=True):
        yield uri


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ray_cli(address: str, *args: str, timeout: int = 600):
    """`ray job <args>` against ``address`` from the repository root, as a user types it."""
    import shutil
    import subprocess
    import sys

    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    return subprocess.run([ray_bin, "job", *args[:1], "--address", address, *args[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def submit(address: str, *entrypoint: str, options: tuple[str, ...] = (), timeout: int = 600):
    """`ray job submit` of ``entrypoint`` with the project's one runtime env, uploading the working tree."""
    return ray_cli(address, "submit", "--runtime-env", "infra/runtime_env.yaml", "--working-dir", ".", *options,
                   "--", *entrypoint, timeout=timeout)



# --- what a sharded dataset must hold, computed without the project's code (tests/faults, tests/pipelines) --------
def pixel_digest(im) -> str:
    """sha256 of a PIL image's RGB pixels (not of its encoding)."""
    import hashlib

    import numpy as np

    return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()


def source_pairs(folder: str, load_size: int) -> list[tuple[str, str]]:
    """What sharding an aligned A|B folder must give: for every image file, the pixel digests of its left half (input)
    and right half (target), each resized to ``load_size``² with PIL's bicubic filter. Sorted: a multiset to compare
    with :func:`shard_pairs`, independent of keys, shard order and file names."""
    from PIL import Image

    out = []
    for name in sorted(os.listdir(folder)):
        with Image.open(os.path.join(folder, name)) as im:
            im = im.convert("RGB")
            w, h = im.size
            halves = (im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, 2 * (w // 2), h)))
            out.append(tuple(pixel_digest(x.resize((load_size, load_size), Image.Resampling.BICUBIC))
                             for x in halves))
    return sorted(out)


def shard_pairs(output: str, split: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(sorted pixel digests of every (input.png, target.png) sample, every key) of a split, read with json, hashlib,
    tarfile and PIL from the shards ``manifest.json`` lists. Fails on a shard whose sha256 or size differs from the
    manifest's, a duplicate key, or a sample without both columns."""
    import hashlib
    import io
    import json
    import posixpath
    import tarfile

    from PIL import Image

    from pipelines import storage

    manifest = json.loads(storage.read_bytes(storage.join(output, "manifest.json")))
    pairs, keys = [], []
    for entry in manifest["splits"][split]["shards"]:
        data = storage.read_bytes(storage.join(output, *posixpath.split(entry["path"])))
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["bytes"]), entry["path"]
        samples: dict[str, dict[str, str]] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                key, column = member.name.split(".", 1)
                assert column not in samples.setdefault(key, {}), f"{key}.{column} twice in {entry['path']}"
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    samples[key][column] = pixel_digest(im)
        assert len(samples) == entry["samples"], entry
        for key, cols in samples.items():
            assert set(cols) == {"input.png", "target.png"}, (key, cols)
            pairs.append((cols["input.png"], cols["target.png"]))
            keys.append(key)
    assert len(keys) == len(set(keys)) == manifest["splits"][split]["samples"], "duplicate keys or a wrong count"
    return sorted(pairs), keys


def recorded_evaluation(model, metrics: dict[str, float], dataset: str, dataset_id: str, cfg, split: str = "val"):
    """An ``EvalResult`` with chosen numbers and the fingerprint ``cfg`` gives ``model`` on ``dataset_id``/``split``:
    a registered version's eval.* tags without running an evaluation."""
    from pipelines.evaluate import EvalResult, fingerprint_of, fingerprint_spec

    spec = fingerprint_spec(cfg, dataset_id, split, model)
    return EvalResult(metrics=metrics, dataset=dataset, dataset_id=dataset_id, split=split, samples=4,
                      fingerprint=fingerprint_of(spec), fingerprint_spec=spec)


def register_version(mlflow_cfg, checkpoint: str, evaluation=None, *, name: str | None = None,
                     model: str = "pix2pix", dataset: str = "demo", tags: dict[str, str] | None = None):
    """Register ``checkpoint`` as a new version of ``name`` (None: ``i2i-<model>-<dataset>``) from a fresh MLflow
    run, with ``evaluation``'s eval.* tags (None: un-evaluated), through ``run_register`` as the pipeline does."""
    from pipelines import tracking
    from pipelines.register import RegisterConfig, run_register

    run_id = tracking.client(mlflow_cfg).create_run(tracking.experiment_id(mlflow_cfg)).info.run_id
    return run_register(checkpoint=checkpoint, model=model, dataset=dataset, mlflow=mlflow_cfg, run_id=run_id,
                        eval_result=evaluation, cfg=RegisterConfig(name=name), tags=tags)


# --- KID recomputed outside the training loop (tests/pipelines/test_zoo_train.py, tests/jobs/test_multinode.py) ---
def shard_domain_images(output: str, split: str, domain: str):
    """The ``domain`` images of an unpaired dataset's ``split``, (N, 3, H, W) in [-1, 1], read with json, tarfile
    and PIL from the shards its ``manifest.json`` lists."""
    import io
    import json
    import posixpath
    import tarfile

    import numpy as np
    import torch
    from PIL import Image

    from pipelines import storage

    manifest = json.loads(storage.read_bytes(storage.join(output, "manifest.json")))
    label = str(manifest["domains"].index(domain)).encode()
    images = []
    for entry in manifest["splits"][split]["shards"]:
        data = storage.read_bytes(storage.join(output, *posixpath.split(entry["path"])))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in sorted(files):
            if name.endswith(".domain.cls") and files[name] == label:
                with Image.open(io.BytesIO(files[name[: -len("domain.cls")] + "image.png"])) as im:
                    images.append(torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1))
    return torch.stack(images).float() / 127.5 - 1.0


def kid_all_samples(real, fake, features) -> float:
    """KID (Bińkowski et al., 2018) written out: the unbiased MMD² between ``features`` of the real and the generated
    images (as uint8, as the metric sees them) with the cubic kernel k(x, y) = (x·y / d + 1)³, over all samples at
    once (KID's subsets, when a subset is the whole set, average to exactly this)."""
    import torch

    def u8(x):
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0).mul(255).round().to(torch.uint8)

    with torch.no_grad():
        fx, fy = (features(u8(x)).double() for x in (real, fake))
    d, m, n = fx.shape[1], fx.shape[0], fy.shape[0]

    def k(a, b):
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy = k(fx, fx), k(fy, fy)
    return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                 - 2.0 * k(fx, fy).mean())
