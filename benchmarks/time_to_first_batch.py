"""Time to first batch, and what the driver reads, for sharded datasets of growing size on an S3 server (moto on
127.0.0.1, started here in a subprocess).

For each size (1k, 10k, 50k small A|B samples by default) the dataset is sharded to S3 with ``i2i shard``'s code,
then, in a fresh Ray job each time: ``read_split`` (manifest, shard verification in Ray tasks) → the first batch of
``iter_torch_batches``. Printed per size: seconds to the first batch on the first read (the shards are hashed then)
and on a second read (their verification is recorded), and the bytes the driver process read while doing it
(``rchar`` of /proc/self/io after the imports and a warm-up Ray Data pipeline: every read() of the process, sockets
and lazily imported modules included, so it is an upper bound) next to the manifest's and the dataset's size. Prints measured figures; not a test.

    python benchmarks/time_to_first_batch.py [--sizes 1000 10000 50000] [--image-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

BUCKET = "ttfb"
CHILD = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
def rchar():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])
from pipelines.cluster import RayConfig, init_ray
init_ray(RayConfig(num_cpus=2))
import PIL.PngImagePlugin, pyarrow.fs, ray.data, torch, webdataset  # imports read files too: not counted
from pipelines.data import read_split
ray.data.range(4).map_batches(lambda b: b).iter_torch_batches(batch_size=2).__iter__().__next__()
t0, r0 = time.perf_counter(), rchar()
data = read_split({manifest!r}, "train", seed=0)
batch = next(iter(data.dataset.iter_torch_batches(batch_size=16)))
print(json.dumps({{"seconds": time.perf_counter() - t0, "driver_bytes": rchar() - r0,
                  "batch": list(batch["input"].shape)}}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto did not start")


def make_source(folder: str, n: int, size: int) -> None:
    """``n`` aligned A|B images (``size`` × 2·``size``): a blocky pattern, so PNGs stay small and decode fast."""
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "train"), exist_ok=True)
    for i in range(n):
        a = np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((size // 4, size // 4, 1), np.uint8))
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(os.path.join(folder, "train", f"{i:06d}.png"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    args = p.parse_args()
    moto, url = start_moto()
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": "us-east-1"}
    os.environ.update(env)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        import boto3

        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        from pipelines.cluster import RayConfig, init_ray
        from pipelines.manifest import read_manifest
        from pipelines.shard import ShardConfig, run_shard

        print(f"time to first batch, {args.image_size}px A|B samples, {args.samples_per_shard} per shard, S3 = moto "
              f"on 127.0.0.1; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
              f"{time.strftime('%Y-%m-%d')}", flush=True)
        init_ray(RayConfig(num_cpus=2))
        rows = []
        with tempfile.TemporaryDirectory() as work:
            for n in args.sizes:
                src = os.path.join(work, f"src{n}")
                make_source(src, n, args.image_size)
                out = f"s3://{BUCKET}/d{n}"
                run_shard(ShardConfig(source=src, output=out, load_size=args.image_size,
                                      samples_per_shard=args.samples_per_shard))
                m = read_manifest(out)
                reads = []
                for _ in range(2):  # first read: shards hashed; second: verification recorded
                    r = subprocess.run([sys.executable, "-c", CHILD.format(repo=repo, manifest=out)], env=env,
                                       capture_output=True, text=True, timeout=900)
                    if r.returncode:
                        raise RuntimeError(r.stderr[-3000:])
                    reads.append(json.loads(r.stdout.strip().splitlines()[-1]))
                manifest_bytes = len(m.model_dump_json(indent=1))
                data_bytes = sum(s.bytes for e in m.splits.values() for s in e.shards)
                rows.append((n, reads))
                print(f"{n:>7} samples, {len(m.splits['train'].shards):>3} shards, {data_bytes / 2**20:7.1f} MiB "
                      f"(manifest {manifest_bytes / 1024:.1f} KiB): first batch after {reads[0]['seconds']:6.2f} s "
                      f"(first read, hashing in tasks), {reads[1]['seconds']:6.2f} s (verified); the driver read "
                      f"{reads[0]['driver_bytes'] / 2**20:6.2f} / {reads[1]['driver_bytes'] / 2**20:6.2f} MiB",
                      flush=True)
        if len(rows) > 1:
            (n0, r0), (n1, r1) = rows[0], rows[-1]
            print(f"ratio {n1} / {n0} samples: first read {r1[0]['seconds'] / r0[0]['seconds']:.2f}×, "
                  f"verified {r1[1]['seconds'] / r0[1]['seconds']:.2f}×", flush=True)
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
